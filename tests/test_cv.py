"""k-fold cross-validation: one switch, disjoint stratified folds, per-fold results and their mean."""
from __future__ import annotations

import json
import statistics

import pytest
import torch

from conftest import FAST, cli, compose_config, train
from dlcourse.builders import make_split
from dlcourse.callbacks import Callback
from dlcourse.data import Split, read_dataset
from dlcourse.errors import ConfigError


def test_folds_are_disjoint_cover_the_pool_and_keep_class_proportions():
    labels = read_dataset("digits").train_labels
    vals = [Split(folds=3, fold=i, seed=0).indices(labels)[1] for i in range(3)]
    for i in range(3):
        train_idx, val_idx = Split(folds=3, fold=i, seed=0).indices(labels)
        assert not set(train_idx.tolist()) & set(val_idx.tolist())
        assert len(train_idx) + len(val_idx) == len(labels)
        share = torch.bincount(labels[val_idx], minlength=10) / len(val_idx)
        assert torch.allclose(share, torch.bincount(labels, minlength=10) / len(labels), atol=0.01)
    assert sorted(torch.cat(vals).tolist()) == list(range(len(labels)))
    assert not torch.equal(vals[0], Split(folds=3, fold=0, seed=1).indices(labels)[1])


def test_the_config_selects_the_fold_and_checks_it():
    split = make_split(compose_config(["cv.folds=5", "cv.fold=2", "cv.seed=7"]))
    assert (split.folds, split.fold, split.seed, split.stratified) == (5, 2, 7, True)
    assert make_split(compose_config(["dataset.split_seed=4"])) == Split(0.1, 4)
    from dlcourse.config import validate
    with pytest.raises(ConfigError, match="cv.fold"):
        validate(compose_config(["cv.folds=3", "cv.fold=3"]))
    with pytest.raises(ConfigError, match="cv.folds"):
        validate(compose_config(["cv.folds=1"]))


def test_one_command_runs_every_fold_and_averages_them(run_dir):
    best = None
    from dlcourse.training import run
    best = run(compose_config(["cv.folds=3", "trainer.max_epochs=2"]), run_dir)
    folds = [json.loads((run_dir / f"fold_{i}" / "metrics.json").read_text()) for i in range(3)]
    cv = json.loads((run_dir / "cv_metrics.json").read_text())
    assert cv["folds"] == 3 and cv["per_fold"]["test/acc"] == [f["test/acc"] for f in folds]
    for key in ("test/acc", "val/acc_best", "test/loss"):
        assert cv["mean"][key] == pytest.approx(statistics.mean(f[key] for f in folds))
        assert cv["std"][key] == pytest.approx(statistics.stdev(f[key] for f in folds))
    assert best == pytest.approx(cv["mean"]["val/acc_best"])
    assert json.loads((run_dir / "metrics.json").read_text())["test/acc"] == cv["mean"]["test/acc"]
    # each fold validated on its own third of the pool, and the test set is the same for all
    vals = [torch.load(run_dir / f"fold_{i}" / "checkpoints" / "last.pt", weights_only=True) for i in range(3)]
    assert all(v["config"]["cv"]["fold"] == i for i, v in enumerate(vals))
    assert len({f["test/acc"] for f in folds}) > 1


def test_a_single_fold_is_one_ordinary_run(run_dir):
    metrics = train(run_dir, ["cv.folds=4", "cv.fold=1", "trainer.max_epochs=1"])
    assert not (run_dir / "cv_metrics.json").exists() and not (run_dir / "fold_1").exists()
    assert metrics["epochs_run"] == 1


class _StopInFold(Callback):
    """Ctrl-C after the first epoch of one fold (the engine stops at the next step)."""

    def __init__(self, fold: int):
        self.fold = fold

    def on_epoch_end(self, engine, epoch, metrics):
        if engine.extra["config"]["cv"]["fold"] == self.fold:
            engine.stop_requested = True


def test_an_interrupted_cross_validation_resumes_as_the_console_says(tmp_path, monkeypatch, capsys):
    import dlcourse.components as components
    import dlcourse.training as training

    cv_dir = tmp_path / "cv"
    overrides = ["cv.folds=3", "trainer.max_epochs=2", "trainer.limit_train_batches=2", "figures.enabled=false",
                 "optim.lr=0.01"]
    original = components.make_callbacks
    monkeypatch.setattr(components, "make_callbacks", lambda *a, **k: [*original(*a, **k), _StopInFold(1)])
    with pytest.raises(SystemExit):
        training.run(compose_config(overrides), cv_dir, [*FAST, *overrides])
    monkeypatch.undo()
    assert f"Continue with: python train.py resume=true hydra.run.dir={cv_dir}\n" in capsys.readouterr().out
    finished_0 = json.loads((cv_dir / "fold_0" / "metrics.json").read_text())["finished_at"]
    assert not (cv_dir / "fold_1" / "metrics.json").exists() and not (cv_dir / "fold_2").exists()

    one = cli(["resume=true", f"hydra.run.dir={cv_dir / 'fold_1'}"])  # the fold on its own
    assert one.returncode == 0, one.stderr
    assert json.loads((cv_dir / "fold_1" / "metrics.json").read_text())["epochs_run"] == 2
    assert f"python train.py resume=true hydra.run.dir={cv_dir}" in one.stdout
    whole = cli(["resume=true", f"hydra.run.dir={cv_dir}"])  # the rest of the job
    assert whole.returncode == 0, whole.stderr
    cv = json.loads((cv_dir / "cv_metrics.json").read_text())
    folds = [json.loads((cv_dir / f"fold_{i}" / "metrics.json").read_text()) for i in range(3)]
    assert cv["per_fold"]["test/acc"] == [f["test/acc"] for f in folds]
    assert folds[0]["finished_at"] == finished_0  # finished folds are kept, not trained again
    assert [f["epochs_run"] for f in folds] == [2, 2, 2]
    assert torch.load(cv_dir / "fold_2" / "checkpoints" / "last.pt", weights_only=True)["config"]["optim"]["lr"] == 0.01
