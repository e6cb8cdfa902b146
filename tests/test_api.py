"""The Python API (dlcourse.train / sweep / load / compose) runs the command line's runs through the same
path: the same results and files, objects of the caller's (a module class defined here, arrays) in place
of config options, errors as exceptions, and many runs in one process without leaks."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import dlcourse
from conftest import FAST, ROOT, cli
from dlcourse.config import path_safe
from dlcourse.errors import CheckpointError, ConfigError

QUICK = [*FAST, "trainer.max_epochs=2", "dataset.subset=300", "figures.enabled=false"]
XOR = [*FAST, "experiment=xor_mlp", "trainer.max_epochs=20", "trainer.val_every_n_epochs=10"]


class TinyNet(nn.Module):  # defined in the test module, not importable by a config
    def __init__(self, hidden: int = 16):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))

    def forward(self, x):
        return self.body(x)


def test_the_api_gives_the_command_lines_result_bit_for_bit(tmp_path):
    overrides = [*QUICK, "trainer.deterministic=true"]
    out = cli([*overrides, f"hydra.run.dir={tmp_path / 'cli'}"])
    assert out.returncode == 0, out.stderr
    run = dlcourse.train(*overrides, run_dir=tmp_path / "api")
    expected = json.loads((tmp_path / "cli" / "metrics.json").read_text())
    for key in ("test/acc", "test/loss", "val/acc_best", "epochs_run"):
        assert run.metrics[key] == expected[key], key
    timing = ["time_s", "train/images_per_s"]
    pd.testing.assert_frame_equal(run.history.drop(columns=timing),
                                  pd.read_csv(tmp_path / "cli" / "history.csv").drop(columns=timing))
    for name in ("config.yaml", "overrides.yaml"):
        assert (tmp_path / "api" / ".hydra" / name).is_file()
    assert run.model.training is False and list(run.history["epoch"]) == [1, 2]
    assert "mlp on digits" in repr(run) and "<b>Run</b>" in run._repr_html_()
    assert type(run.plot()).__name__ == "Figure"


def test_a_module_defined_here_trains_on_arrays_and_loads_again(tmp_path, capsys):
    from sklearn.datasets import load_digits

    digits = load_digits()
    x, y = digits.images.astype("float32") / 16, digits.target
    torch.manual_seed(0)  # its initial weights, whatever ran before in this process
    net = TinyNet()
    run = dlcourse.train(*FAST, "trainer.max_epochs=3", "figures.enabled=false", model=net, data=(x, y),
                         run_dir=tmp_path / "own")
    assert run.model is net and run.metrics["test/acc"] > 0.5
    assert run.config.model.given.endswith("TinyNet") and run.config.dataset.name == "tensors"
    assert "model=TinyNet(...)" in repr(run)
    with pytest.raises(CheckpointError, match=r"model=TinyNet\(\.\.\.\)"):
        dlcourse.load(run.dir).model
    again = dlcourse.load(run.dir, model=TinyNet())
    assert again.metrics == run.metrics
    pd.testing.assert_frame_equal(again.history, run.history)
    assert torch.equal(again.model.body[1].weight, net.body[1].weight)
    assert again.evaluate()["acc"] == pytest.approx(run.metrics["test/acc"])
    top = run.predict(x[:3])
    assert [p["top"][0]["index"] for p in top] == net(torch.from_numpy(x[:3])).argmax(1).tolist()


def test_a_second_run_in_the_process_prints_each_line_once(tmp_path, capsys):
    dlcourse.train(*XOR, run_dir=tmp_path / "one")
    capsys.readouterr()
    dlcourse.train(*XOR, run_dir=tmp_path / "two")
    out = capsys.readouterr().out.splitlines()
    epochs = [line for line in out if line.startswith("epoch ")]
    assert len(epochs) == 2 and len(set(epochs)) == 2
    log = (tmp_path / "two" / "train.log").read_text().splitlines()
    assert len([line for line in log if line.startswith("epoch ")]) == 2
    assert sum(line.startswith("Total params: 9") for line in out) == 1  # the model summary, once
    dlcourse.train(*XOR, "trainer.summary=false", run_dir=tmp_path / "quiet")
    out = capsys.readouterr().out
    assert "Total params" not in out and "epoch 20/20" in out
    assert "Total params: 9" in (tmp_path / "quiet" / "train.log").read_text()


def test_errors_are_exceptions_of_one_paragraph(tmp_path):
    with pytest.raises(ConfigError) as caught:
        dlcourse.train(*FAST, "optim.lr=-1", run_dir=tmp_path / "bad")
    assert "optim.lr=-1 is not valid" in str(caught.value) and "\n" not in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    assert not (tmp_path / "bad").exists()
    with pytest.raises(ConfigError, match="trainer.max_epoch"):
        dlcourse.compose("trainer.max_epoch=2")
    with pytest.raises(ConfigError, match="torch.nn.Module"):
        dlcourse.train(*FAST, model="lenet", run_dir=tmp_path / "bad2")
    # a sweep whose every job fails before it starts: that error, not an empty report
    with pytest.raises(ConfigError, match=r"every job of the sweep failed \(2\); the first \(optim.lr=0.1 .*model.no_such_key"):
        dlcourse.sweep({"optim.lr": [0.1, 0.2]}, *FAST, "model.no_such_key=1", sweep_dir=tmp_path / "sweep")
    assert not (tmp_path / "sweep").exists()


def test_an_experiments_own_run_directory_is_used_as_on_the_command_line(tmp_path, monkeypatch):
    """experiment=transfer_pretrain_fashion names outputs/pretrained/lenet_fashion_0-4 (where the few-shot
    experiment reads its weights): the API trains there too; run_dir= still wins."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "lab" / "experiment").mkdir(parents=True)
    (tmp_path / "lab" / "experiment" / "named.yaml").write_text(
        "# @package _global_\ndefaults:\n  - override /dataset: xor\nhydra:\n  run:\n    dir: outputs/named_run\n")
    run = dlcourse.train(*XOR, "experiment=named", config_dir=tmp_path / "lab")
    assert run.dir == Path("outputs/named_run") and (tmp_path / "outputs/named_run/metrics.json").is_file()
    other = dlcourse.train(*XOR, "experiment=named", config_dir=tmp_path / "lab", run_dir=tmp_path / "mine")
    assert other.dir == tmp_path / "mine"
    plain = dlcourse.train(*XOR)
    assert plain.dir.parent.parent == Path("outputs") and "hydra" not in plain.config


def test_a_key_is_deleted_with_a_tilde_as_on_the_command_line():
    assert "hidden_sizes" in dlcourse.compose("experiment=random_labels").model
    cfg = dlcourse.compose("experiment=random_labels", "model=lenet", "~model.hidden_sizes")
    assert cfg.model.name == "lenet" and "hidden_sizes" not in cfg.model
    with pytest.raises(Exception, match="'optim.lr' is not an override"):
        dlcourse.compose("optim.lr")


def test_compose_and_a_target_model_by_override(tmp_path, monkeypatch):
    (tmp_path / "apimodels.py").write_text(textwrap.dedent('''
        from torch import nn

        def two_layer(input_shape, num_outputs, hidden=8):
            return nn.Sequential(nn.Flatten(), nn.Linear(input_shape[0], hidden), nn.Tanh(), nn.Linear(hidden, num_outputs))
    '''))
    (tmp_path / "lab" / "model").mkdir(parents=True)
    (tmp_path / "lab" / "model" / "two.yaml").write_text("_target_: apimodels.two_layer\nhidden: 6\n")
    monkeypatch.chdir(tmp_path)
    cfg = dlcourse.compose("experiment=xor_mlp", {"optim.lr": 0.1, "model.hidden_sizes": [3]})
    assert cfg.optim.lr == 0.1 and list(cfg.model.hidden_sizes) == [3]
    assert dlcourse.compose("model=two", config_dir=tmp_path / "lab").model.hidden == 6
    run = dlcourse.train(*XOR, "model._target_=apimodels.two_layer", "+model.hidden=5")
    assert run.dir.parent.parent == Path("outputs") and run.model[1].out_features == 5


def test_a_sweep_writes_the_command_lines_directory_and_report(tmp_path, capsys):
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import report
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    result = dlcourse.sweep({"optim.lr": [0.5, 0.05]}, *XOR, seeds=2, sweep_dir=tmp_path / "sweep")
    names = sorted(p.name for p in (tmp_path / "sweep").iterdir() if p.is_dir())
    assert names[0] == "0_" + path_safe("experiment=xor_mlp,optim.lr=0.5,seed=0,trainer.device=cpu,trainer.max_epochs=20,"
                                        "trainer.progress_bar=false,trainer.val_every_n_epochs=10")
    assert len(result.runs) == 4 and not result.failed
    table = result.table
    assert list(table["n"]) == [2, 2] and f"{result.runs[0].monitor} mean" in table
    assert report.main([str(tmp_path / "sweep")]) == 0
    pd.testing.assert_frame_equal(table, pd.read_csv(tmp_path / "sweep" / "report.csv"))
    assert (tmp_path / "sweep" / "report.md").is_file() and type(result.plot()).__name__ == "Figure"
    for metric, best_first in (("test/loss", True), ("train/acc_last", False)):  # best on top, whichever metric
        ax = result.plot(metric).axes[0]
        top_down = [t.get_text() for t in sorted(ax.get_yticklabels(), key=lambda t: -t.get_position()[1])]
        expected = table.sort_values(f"{metric} mean", ascending=best_first)["configuration"].tolist()
        assert top_down == expected and ax.get_title().startswith(f"{metric} by configuration, best on top")


@pytest.mark.slow
def test_many_runs_in_one_process_do_not_grow(tmp_path):
    import gc
    import logging

    def rss() -> int:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    handlers = len(logging.getLogger("dlcourse").handlers)
    sizes = []
    for i in range(30):
        dlcourse.train(*XOR, "figures.enabled=true", run_dir=tmp_path / f"r{i}")
        gc.collect()
        sizes.append(rss())
    assert sizes[-1] <= 1.1 * sizes[2], [s >> 20 for s in sizes]
    assert len(logging.getLogger("dlcourse").handlers) == handlers
    import matplotlib.pyplot as plt

    assert plt.get_fignums() == []


@pytest.mark.slow
def test_a_wheel_installed_elsewhere_trains_from_another_directory(tmp_path):
    """A non-editable install (the wheel `pip install .` builds) on top of this environment's torch."""
    import shutil

    wheels, site, source = tmp_path / "wheels", tmp_path / "site", tmp_path / "source"
    for name in ("pyproject.toml", "README.md"):  # a copy, so that the build leaves nothing in the repository
        shutil.copy(ROOT / name, source / name) if source.is_dir() else (source.mkdir(), shutil.copy(ROOT / name, source))
    shutil.copytree(ROOT / "dlcourse", source / "dlcourse", ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels),
                    str(source)], check=True, timeout=300)
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site),
                    *map(str, wheels.glob("*.whl"))], check=True, timeout=300)
    work = tmp_path / "elsewhere"
    work.mkdir()
    code = ("import dlcourse; assert dlcourse.__file__.startswith(%r), dlcourse.__file__; "
            "r = dlcourse.train('trainer.max_epochs=1', 'trainer.device=cpu'); print(r.metrics['test/acc'])" % str(site))
    out = subprocess.run([sys.executable, "-c", code], cwd=work, env={**os.environ, "PYTHONPATH": str(site)},
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert float(out.stdout.strip().splitlines()[-1]) > 0.5 and list(work.glob("outputs/*/*/metrics.json"))


class MomentumSGD(torch.optim.Optimizer):  # a student's optimizer, defined here (no module a config could name)
    def __init__(self, params, lr, momentum=0.0, weight_decay=0.0):
        super().__init__(params, {"lr": lr, "momentum": momentum, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    d = p.grad + group["weight_decay"] * p
                    buf = self.state[p].get("buf")
                    self.state[p]["buf"] = buf = d.clone() if buf is None else buf.mul_(group["momentum"]).add_(d)
                    p.add_(buf, alpha=-group["lr"])


def test_an_optimizer_class_defined_here_trains_like_torchs_and_resumes_with_it(tmp_path):
    momentum = [*XOR, "+optim.momentum=0.9", "optim.lr=0.1", "trainer.deterministic=true"]
    torch_sgd = dlcourse.train(*momentum, run_dir=tmp_path / "torch")
    own = dlcourse.train(*momentum, optimizer=MomentumSGD, run_dir=tmp_path / "own")
    assert own.config.optim.given.endswith("MomentumSGD") and own.config.optim._target_ == own.config.optim.given
    assert own.history["train/loss"].tolist() == pytest.approx(torch_sgd.history["train/loss"].tolist(), rel=1e-5)
    assert own.metrics["test/loss"] == pytest.approx(torch_sgd.metrics["test/loss"], rel=1e-5)
    with pytest.raises(ConfigError, match=r"handed in from Python \(.*MomentumSGD\).*optimizer="):
        dlcourse.train(*momentum, "trainer.max_epochs=30", "resume=true", run_dir=tmp_path / "own")
    longer = dlcourse.train(*momentum, "trainer.max_epochs=30", "resume=true", optimizer=MomentumSGD,
                            run_dir=tmp_path / "own")
    straight = dlcourse.train(*momentum, "trainer.max_epochs=30", optimizer=MomentumSGD, run_dir=tmp_path / "straight")
    assert longer.history["train/loss"].tolist() == straight.history["train/loss"].tolist()  # exact resume
    with pytest.raises(ConfigError, match="not an instance"):
        dlcourse.train(*XOR, optimizer=MomentumSGD(TinyNet().parameters(), lr=0.1), run_dir=tmp_path / "bad")
    with pytest.raises(Exception, match=r"optimizer=MomentumSGD takes no argument 'betas'.*accepts: lr, momentum, weight_decay"):
        dlcourse.train(*XOR, "optim=adam", optimizer=MomentumSGD, run_dir=tmp_path / "bad")


def test_an_optimizer_class_serves_every_fold_and_the_lr_finder(tmp_path, monkeypatch):
    """optimizer= with cv.folds (each fold builds its own instance) and with lr_find.apply (the range test and
    the training both step the given class)."""
    calls = []
    original = MomentumSGD.step

    def counted(self, closure=None):
        calls.append(id(self))
        return original(self, closure)

    monkeypatch.setattr(MomentumSGD, "step", counted)
    folds = dlcourse.train(*QUICK, "optim=sgd", "cv.folds=2", optimizer=MomentumSGD, run_dir=tmp_path / "cv")
    assert len(set(calls)) == 2 and folds.metrics["cv/folds"] == 2  # one optimizer per fold
    for i in range(2):
        saved = torch.load(tmp_path / "cv" / f"fold_{i}" / "checkpoints" / "last.pt", weights_only=True)
        assert saved["config"]["optim"]["given"].endswith("MomentumSGD") and "buf" in saved["optimizer"]["state"][0]
    calls.clear()
    found = dlcourse.train(*QUICK, "optim=sgd", "lr_find=true", "lr_find.apply=true", "lr_find.num_steps=20",
                           optimizer=MomentumSGD, run_dir=tmp_path / "lr")
    assert len(calls) > 20 and found.config.optim.lr == json.loads((tmp_path / "lr" / "lr_find.json").read_text())["suggested_lr"]
