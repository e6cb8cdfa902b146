"""What the README promises of a run: checks before any data is read, the monitor, losses with
mixup, evaluation metrics, best.pt, the split seed, process-wide flags, train.log."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

import dlcourse.builders
from conftest import cli, compose_config, recompute_test_metrics, train
from dlcourse.data import Split, build_data, read_dataset
from dlcourse.errors import ConfigError
from dlcourse.losses import build_loss
from dlcourse.training import run

PRE_DATA_ERRORS = [
    (["model=vgg11", "model.small_input=false"], "layer 'features.20'"),  # too deep for 28x28
    (["+optim.betaz=[0.9,0.9]"], "optim"),
    (["+sched.eta_mn=0.1", "sched=cosine"], "sched.eta_mn"),
    (["loss=hinge", "loss.label_smoothing=0.1"], "loss.label_smoothing"),
    (["trainer.monitor=val/accuracy"], "trainer.monitor=val/accuracy"),
    (["loss=hinge", "augment.mixup_alpha=0.2"], "augment.mixup_alpha"),
]


CASES = [(d, o, c) for d in ("digits", "fashion_mnist", "cifar100") for o, c in PRE_DATA_ERRORS
         if not (d == "cifar100" and o[0] == "model=vgg11")]  # VGG fits 32x32


@pytest.mark.parametrize("dataset,overrides,culprit", CASES, ids=[f"{d} {' '.join(o)}" for d, o, _ in CASES])
def test_config_errors_come_before_any_data_is_read(tmp_path, monkeypatch, dataset, overrides, culprit):
    def no_reading(*args, **kwargs):
        raise AssertionError("the dataset was read before the config error was found")

    monkeypatch.setattr(dlcourse.builders, "read_dataset", no_reading)
    with pytest.raises(ConfigError, match=culprit.replace(".", r"\.").replace("[", r"\[")):
        run(compose_config([f"dataset={dataset}", *overrides]), tmp_path / "run")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("monitor,dataset,valid", [
    ("val/accuracy", [], "train/loss, train/acc, val/loss, val/acc, val/acc5"),
    ("val/acc5", ["dataset=synthetic", "dataset.num_classes=3"], "train/loss, train/acc, val/loss, val/acc."),
    ("val/loss", ["dataset.val_split=0"], "train/loss, train/acc."),
])
def test_monitor_must_be_a_logged_metric_and_the_error_lists_them(tmp_path, monitor, dataset, valid):
    with pytest.raises(ConfigError, match=f"Valid names here: {valid}"):
        run(compose_config([*dataset, f"trainer.monitor={monitor}", "trainer.early_stopping.patience=2"]),
            tmp_path / "run")


def test_monitor_error_from_the_command_line_is_one_paragraph(tmp_path):
    out = cli(["trainer.monitor=val/accuracy", "trainer.early_stopping.patience=1", f"hydra.run.dir={tmp_path}/r"])
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "trainer.monitor=val/accuracy" in out.stderr and "val/acc5" in out.stderr
    assert not (tmp_path / "r").exists()


def test_nll_takes_soft_targets_and_hinge_is_refused_with_mixing():
    logits, soft = torch.randn(6, 4), torch.softmax(torch.randn(6, 4), 1)
    assert build_loss("nll", 4)(logits, soft).item() == pytest.approx(F.cross_entropy(logits, soft).item())
    for loss in ("cross_entropy", "mse", "mae"):
        assert torch.isfinite(build_loss(loss, 4)(logits, soft))
    with pytest.raises(ConfigError, match=r"loss=hinge does not combine with augment\.cutmix_alpha=1\.0"):
        run(compose_config(["loss=hinge", "augment.cutmix_alpha=1.0"]))


def test_nll_with_mixup_trains(run_dir):
    metrics = train(run_dir, ["loss=nll", "augment.mixup_alpha=0.2", "trainer.max_epochs=3"])
    assert metrics["test/acc"] > 0.8


def test_validation_and_test_loss_are_the_unsmoothed_criterion(run_dir):
    metrics = train(run_dir, ["loss.label_smoothing=0.2", "trainer.max_epochs=3"])
    independent = recompute_test_metrics(run_dir)
    assert metrics["test/loss"] == pytest.approx(independent["cross_entropy"], rel=1e-4)
    assert metrics["test/acc"] == pytest.approx(independent["acc"])


def test_best_checkpoint_is_the_best_epoch_even_with_min_delta(run_dir):
    metrics = train(run_dir, ["trainer.max_epochs=5", "trainer.early_stopping.patience=100",
                              "trainer.early_stopping.min_delta=0.5", "optim.lr=0.0003"])
    history = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["state"]["history"]
    accs = [h["val/acc"] for h in history]
    best_epoch = accs.index(max(accs)) + 1
    assert best_epoch > 1  # the run improves, by less than min_delta per epoch
    best = torch.load(run_dir / "checkpoints" / "best.pt", weights_only=True)["state"]
    assert best["epoch"] == best_epoch == metrics["best_epoch"] and best["best"] == max(accs)


def test_min_delta_still_drives_early_stopping(run_dir):
    metrics = train(run_dir, ["trainer.max_epochs=10", "trainer.early_stopping.patience=2",
                              "trainer.early_stopping.min_delta=0.5"])
    assert metrics["stopped_early"] and metrics["epochs_run"] == 3  # epoch 1 sets the reference


def test_split_seed_fixes_the_split_whatever_the_seed():
    ds = read_dataset("digits")
    common = dict(batch_size=64, eval_batch_size=512, device=torch.device("cpu"))
    val = {(seed, split): build_data(ds, seed=seed, split=Split(0.2, split), **common).val.images
           for seed, split in ((0, 0), (1, 0), (0, 1))}
    assert torch.equal(val[0, 0], val[1, 0]) and not torch.equal(val[0, 0], val[0, 1])
    cfg = compose_config()
    assert cfg.dataset.split_seed == 0


def test_a_run_leaves_the_process_wide_torch_flags_as_it_found_them(run_dir):
    before = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark)
    train(run_dir, ["trainer.deterministic=true", "trainer.max_epochs=1"])
    assert (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark) == before
    train(run_dir.parent / "b", ["trainer.max_epochs=1"])
    assert (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark) == before


def test_train_log_holds_what_the_console_showed(tmp_path):
    out = cli(["trainer.max_epochs=2", f"hydra.run.dir={tmp_path}/run"])
    assert out.returncode == 0, out.stderr
    log = (tmp_path / "run" / "train.log").read_text()
    shown = [line for line in out.stdout.splitlines() if line.strip()]
    assert any(line.startswith("epoch 2/2") for line in shown) and any(line.startswith("test ") for line in shown)
    assert all(line in log for line in shown), [line for line in shown if line not in log]


def test_divergence_message_goes_to_train_log(run_dir, monkeypatch):
    from dlcourse.errors import DivergenceError

    with pytest.raises(DivergenceError):
        train(run_dir, ["optim=sgd", "optim.lr=1e6", "trainer.max_epochs=2", "trainer.log_every_n_steps=1"])
    assert "Error: The training loss became" in (run_dir / "train.log").read_text()
    assert json.loads((run_dir / "metrics.json").read_text())["diverged"] is True
