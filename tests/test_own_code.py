"""Your own code through the config: a model, loss, optimizer and callbacks of the user's, named by
`_target_` and imported from the launch directory or a --config-dir folder, train, resume exactly
and are evaluated like built-ins; bad code gets one paragraph naming the key, and a config or
checkpoint from elsewhere cannot make a run call anything but such objects."""
from __future__ import annotations

import json
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F

from conftest import ROOT, cli, needs_fashion_mnist, recompute_test_metrics, train
from dlcourse.errors import ConfigError

LAB = '''
import math
import torch
from torch import nn
from dlcourse.callbacks import Callback


class TinyCNN(nn.Module):
    def __init__(self, input_shape, num_outputs, channels=(8, 16)):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(input_shape[0], channels[0], 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(channels[0], channels[1], 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4))
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(channels[1] * 16, 64), nn.ReLU(),
                                        nn.Linear(64, num_outputs))

    def forward(self, x):
        return self.classifier(self.features(x))


def two_layer(input_shape, num_outputs, hidden=32):
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), hidden), nn.ReLU(), nn.Linear(hidden, num_outputs))


def five_logits(input_shape):
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), 5))


def not_a_model(input_shape):
    return "a string"


class Broken(nn.Module):
    def __init__(self, input_shape, num_outputs):
        super().__init__()
        raise ValueError("channels do not add up")


def focal(output, target, gamma=2.0):
    log_p = torch.log_softmax(output, 1).gather(1, target[:, None]).squeeze(1)
    return (-(1 - log_p.exp()) ** gamma * log_p).mean()


def per_sample(output, target):
    return torch.nn.functional.cross_entropy(output, target, reduction="none")


class Momentum(torch.optim.Optimizer):
    def __init__(self, params, lr=0.1, momentum=0.9):
        super().__init__(params, dict(lr=lr, momentum=momentum))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    v = self.state[p].setdefault("v", torch.zeros_like(p))
                    v.mul_(group["momentum"]).add_(p.grad)
                    p.add_(v, alpha=-group["lr"])


class CountSteps(Callback):
    def __init__(self, scale=1.0):
        self.scale, self.steps = scale, 0

    def on_step_start(self, engine, step):
        self.steps += 1

    def on_epoch_end(self, engine, epoch, metrics):
        metrics["steps_seen"] = self.steps * self.scale

    def state_dict(self):
        return {"steps": self.steps}

    def load_state_dict(self, state):
        self.steps = state["steps"]


class Typo(Callback):
    def on_epoch_ends(self, engine, epoch, metrics):
        pass
'''

QUICK = ["trainer.max_epochs=1", "trainer.limit_train_batches=3", "figures.enabled=false"]
USER = ["model._target_=labcode.TinyCNN", "+model.channels=[4,8]"]


@pytest.fixture
def lab(tmp_path, monkeypatch):
    """The user's file in the directory the command starts in."""
    folder = tmp_path / "lab"
    folder.mkdir()
    (folder / "labcode.py").write_text(textwrap.dedent(LAB))
    monkeypatch.chdir(folder)
    monkeypatch.setattr(sys, "path", list(sys.path))  # the launch directory put on it goes with the test
    sys.modules.pop("labcode", None)
    yield folder
    sys.modules.pop("labcode", None)


def test_a_user_cnn_trains_with_its_arguments_and_the_run_records_its_target(lab):
    metrics = train(lab / "run", [*USER, *QUICK])
    ckpt = torch.load(lab / "run" / "checkpoints" / "best.pt", weights_only=True)
    assert ckpt["model"]["features.0.weight"].shape == (4, 1, 3, 3)  # channels from +model.channels
    assert ckpt["model"]["classifier.3.weight"].shape == (10, 64)  # num_outputs from the dataset
    assert ckpt["config"]["model"] == {"_target_": "labcode.TinyCNN", "name": "labcode.TinyCNN",
                                       "channels": [4, 8], "weights": None}  # mlp's keys dropped
    assert ckpt["model_name"] == "labcode.TinyCNN" and str(lab) in ckpt["code_dirs"]
    assert metrics["test/acc"] == pytest.approx(recompute_test_metrics(lab / "run")["acc"], abs=1e-9)
    assert metrics["params"] == sum(t.numel() for t in ckpt["model"].values())


@needs_fashion_mnist
def test_a_user_cnn_learns_fashion_mnist(lab):
    metrics = train(lab / "run", [*USER, "dataset=fashion_mnist", "dataset.root=/usr/share/datasets/fashion-mnist",
                                  "dataset.subset=4000", "trainer.max_epochs=3", "figures.enabled=false",
                                  "optim.lr=0.003"])
    assert metrics["test/acc"] > 0.70  # 10 classes: chance is 0.10


def test_loss_optimizer_and_callback_of_the_user_train_and_resume_bit_identically(lab):
    own = [*USER, "loss._target_=labcode.focal", "+loss.kwargs.gamma=1.5", "optim=sgd",
           "optim._target_=labcode.Momentum", "+optim.momentum=0.8", "optim.lr=0.05",
           "+callbacks.count._target_=labcode.CountSteps", "+callbacks.count.scale=2",
           "trainer.limit_train_batches=4", "figures.enabled=false", "trainer.deterministic=true"]
    straight = train(lab / "straight", [*own, "trainer.max_epochs=2"])
    train(lab / "resumed", [*own, "trainer.max_epochs=1"])
    resumed = train(lab / "resumed", [*own, "trainer.max_epochs=2", "resume=true"])
    for key in ("test/acc", "test/loss", "val/loss_last", "train/loss_last"):
        assert resumed[key] == straight[key], key
    a = torch.load(lab / "straight" / "checkpoints" / "last.pt", weights_only=True)
    b = torch.load(lab / "resumed" / "checkpoints" / "last.pt", weights_only=True)
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert a["callbacks"] == b["callbacks"] == {"count": {"steps": 8}}  # the callback's state came back
    assert [h["steps_seen"] for h in b["state"]["history"]] == [8.0, 16.0]
    assert "v" in str(b["optimizer"]["state"])  # the hand-written optimizer's momentum buffers
    # the user's loss is the run's val/test loss: recompute it from best.pt
    data = recompute_test_metrics(lab / "resumed")
    assert 0 < resumed["test/loss"] < data["cross_entropy"]  # focal down-weights easy samples


def test_the_users_loss_gives_the_test_loss_the_evaluation_reproduces(lab):
    from dlcourse.evaluate import evaluate

    metrics = train(lab / "run", [*USER, "loss._target_=labcode.focal", *QUICK])
    result, _ = evaluate(lab / "run", "test")
    assert result["acc"] == pytest.approx(metrics["test/acc"], abs=1e-9)
    assert result["loss"] == pytest.approx(metrics["test/loss"], abs=1e-6)


def test_overfit_batches_drives_the_loss_to_zero_on_the_same_fixed_batches(lab):
    metrics = train(lab / "run", ["model._target_=labcode.two_layer", "+model.hidden=64", "trainer.overfit_batches=2",
                                  "trainer.batch_size=16", "trainer.max_epochs=60", "augment=standard",
                                  "figures.enabled=false", "optim.lr=0.01"])
    history = json.loads((lab / "run" / "metrics.json").read_text())
    assert metrics["train/loss_last"] < 0.01 and metrics["val/acc_last"] == 1.0
    assert history["val/loss_last"] == pytest.approx(metrics["train/loss_last"], rel=0.5)  # the same 32 images
    log = (lab / "run" / "train.log").read_text()
    assert "32 train / 32 val" in log and "augment none" in log


@pytest.mark.parametrize("how", ["--config-dir", "hydra.searchpath"])
def test_a_config_dir_lab_folder_brings_its_options_and_code(tmp_path, how):
    folder = tmp_path / "my_lab"
    (folder / "model").mkdir(parents=True)
    (folder / "experiment").mkdir()
    (folder / "labcode2.py").write_text(textwrap.dedent(LAB))
    (folder / "model" / "student.yaml").write_text("_target_: labcode2.two_layer\nhidden: 12\n")
    (folder / "experiment" / "lab1.yaml").write_text(
        "# @package _global_\ndefaults:\n  - override /model: student\ntrainer:\n  max_epochs: 1\n")
    where = ["--config-dir", str(folder)] if how == "--config-dir" else [f"hydra.searchpath=[file://{folder}]"]
    out = cli([*where, "experiment=lab1", "figures.enabled=false", "trainer.progress_bar=false",
               f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "best.pt", weights_only=True)
    assert ckpt["model"]["1.weight"].shape == (12, 784) and str(folder) in ckpt["code_dirs"]


def test_a_joblib_sweep_of_a_user_model(tmp_path):
    (tmp_path / "labcode3.py").write_text(textwrap.dedent(LAB))
    out = cli(["-m", "hydra/launcher=joblib", "model._target_=labcode3.two_layer", "+model.hidden=8,16", *QUICK,
               f"hydra.sweep.dir={tmp_path / 'sweep'}"], cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    sizes = sorted(torch.load(p, weights_only=True)["model"]["1.weight"].shape[0]
                   for p in (tmp_path / "sweep").glob("*/checkpoints/best.pt"))
    assert sizes == [8, 16]


@pytest.mark.slow
def test_a_user_model_under_torchrun(tmp_path):
    import subprocess

    (tmp_path / "labcode4.py").write_text(textwrap.dedent(LAB))
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                          str(ROOT / "train.py"), "trainer.strategy=ddp", "trainer.device=cpu", "trainer.progress_bar=false",
                          "model._target_=labcode4.two_layer", "+model.hidden=8", "+callbacks.count._target_=labcode4.CountSteps",
                          *QUICK, f"hydra.run.dir={tmp_path / 'run'}"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["model_name"] == "labcode4.two_layer" and ckpt["callbacks"] == {"count": {"steps": 3}}


@pytest.mark.parametrize("overrides, words", [
    (["model._target_=nosuchmodule.Net"], ["model._target_=nosuchmodule.Net: there is no module 'nosuchmodule'",
                                           "Looked in the directory the command was started in"]),
    (["model._target_=labcode.TinyCN"], ["labcode has no 'TinyCN'. It defines:", "TinyCNN", "two_layer"]),
    (["model._target_=labcode.Broken"], ["raised ValueError at", "labcode.py:", "channels do not add up"]),
    (["model._target_=labcode.not_a_model"], ["returned str, not a torch.nn.Module"]),
    (["model._target_=labcode.TinyCNN", "+model.chanels=[4,8]"], ["takes no argument 'chanels' (from model.chanels)",
                                                                  "It accepts: channels"]),
    (["model._target_=labcode.five_logits"], ["returns a tensor of shape (2, 5)", "needs (2, 10)",
                                              "num_outputs"]),
    (["loss._target_=labcode.per_sample"], ["loss._target_=labcode.per_sample returned a tensor of shape",
                                            "return loss.mean()"]),
    (["optim._target_=labcode.Momentum"], ["takes no argument 'betas' (from optim.betas", "optim=sgd"]),
    (["optim._target_=labcode.focal"], ["must be a torch.optim.Optimizer class"]),
    (["+callbacks.typo._target_=labcode.Typo"], ["on_epoch_ends are not hooks", "on_epoch_end"]),
    (["+callbacks.bad._target_=labcode.TinyCNN"], ["not a subclass of dlcourse.callbacks.Callback"]),
    (["model._target_=os.system"], ["refused before anything ran"]),
    (["loss._target_=builtins.eval"], ["refused before anything ran"]),
])
def test_errors_in_user_code_are_one_paragraph_naming_the_key_and_write_nothing(lab, overrides, words):
    with pytest.raises(ConfigError) as e:
        train(lab / "run", [*overrides, *QUICK])
    message = str(e.value)
    assert "\n" not in message and all(w in message for w in words), message
    assert not (lab / "run" / "checkpoints").exists() and not (lab / "run" / "metrics.json").exists()


def test_a_crafted_checkpoint_naming_os_system_runs_nothing(lab):
    from dlcourse.errors import UserError
    from dlcourse.evaluate import evaluate

    train(lab / "run", ["model._target_=labcode.two_layer", *QUICK])
    marker = lab / "marker"
    for path in ("best.pt", "last.pt"):
        file = lab / "run" / "checkpoints" / path
        ckpt = torch.load(file, weights_only=True)
        ckpt["config"]["model"] = {"_target_": "os.system", "name": "os.system", "command": f"touch {marker}",
                                   "weights": None}
        torch.save(ckpt, file)
    with pytest.raises(UserError, match="refused before anything ran"):
        evaluate(lab / "run", "test")
    with pytest.raises(UserError, match="refused before anything ran"):
        train(lab / "other", ["model._target_=os.system", "+model.command=touch marker", *QUICK])
    assert not marker.exists()


def test_a_stored_run_whose_code_is_gone_says_where_it_was(lab, tmp_path, monkeypatch):
    from dlcourse.errors import UserError
    from dlcourse.evaluate import evaluate

    train(lab / "run", ["model._target_=labcode.two_layer", *QUICK])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p != str(lab)])
    sys.modules.pop("labcode", None)
    with pytest.raises(UserError) as e:
        evaluate(lab / "run", "test")
    assert "there is no module 'labcode'" in str(e.value) and f"--config-dir {lab}" in str(e.value)
    from scripts.evaluate import main

    assert main(["--config-dir", str(lab), str(lab / "run")]) == 0  # run from elsewhere, given the folder


def test_weights_of_a_user_model_run_fine_tune_a_user_model(lab):
    train(lab / "source", [*USER, *QUICK])
    metrics = train(lab / "target", [*USER, *QUICK, f"model.weights={lab / 'source' / 'checkpoints' / 'best.pt'}",
                                     "finetune=feature_extractor", "dataset.classes=[0,1,2]"])
    source = torch.load(lab / "source" / "checkpoints" / "best.pt", weights_only=True)["model"]
    target = torch.load(lab / "target" / "checkpoints" / "best.pt", weights_only=True)["model"]
    assert torch.equal(source["features.0.weight"], target["features.0.weight"])  # the frozen backbone
    assert target["classifier.3.weight"].shape == (3, 64)  # a new head for 3 classes
    assert torch.equal(source["classifier.1.weight"], target["classifier.1.weight"])  # below the head: frozen
    assert metrics["epochs_run"] == 1


def test_a_model_that_names_its_head_is_split_there(lab):
    from torch import nn

    from dlcourse.transfer import head_modules

    class Named(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Linear(4, 8), nn.ReLU())
            self.head = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
            self.aux = nn.Linear(8, 1)  # the last Linear, but not the head

    assert head_modules(Named()) == ["head"]
    assert head_modules(nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 2))) == ["1"]


def test_a_sweeps_best_command_keeps_its_config_dir(tmp_path):
    from omegaconf import OmegaConf

    from dlcourse.reports import config_dirs

    sources = [{"path": "hydra.conf", "schema": "pkg", "provider": "hydra"},
               {"path": str(ROOT / "configs"), "schema": "file", "provider": "main"},
               {"path": "/labs/my_lab", "schema": "file", "provider": "command-line"}]
    OmegaConf.save({"hydra": {"runtime": {"config_sources": sources}}}, tmp_path / "multirun.yaml")
    assert config_dirs(tmp_path) == ["/labs/my_lab"]
    assert config_dirs(tmp_path / "missing") == []


def test_predict_and_diagnostics_work_on_a_user_model(lab):
    import numpy as np
    from PIL import Image

    from dlcourse.data import read_dataset
    from dlcourse.predict import predict

    metrics = train(lab / "run", [*USER, *QUICK, "diagnostics=full", "diagnostics.every_n_steps=1"])
    history = (lab / "run" / "history.csv").read_text().splitlines()[0].split(",")
    assert "diag/weight_norm/total" in history and any(c.startswith("diag/grad_norm/") for c in history)
    ckpt = torch.load(lab / "run" / "checkpoints" / "best.pt", weights_only=True)
    image = read_dataset("digits").test_images[0]  # uint8 [1, 28, 28], as the run's test set holds it
    Image.fromarray(image[0].numpy()).save(lab / "digit.png")
    model = __import__("labcode").TinyCNN((1, 28, 28), 10, channels=(4, 8))
    model.load_state_dict(ckpt["model"])
    model.eval()
    mean, std = (torch.tensor(ckpt["normalization"][k]).view(-1, 1, 1) for k in ("mean", "std"))
    with torch.no_grad():
        expected = F.softmax(model(((image.float() / 255 - mean) / std)[None]), 1)[0]
    result = predict(lab / "run", [lab / "digit.png"])[0]
    assert result["probabilities"] == pytest.approx(expected.tolist(), abs=1e-5)
    assert metrics["epochs_run"] == 1 and np.isfinite(metrics["test/loss"])
