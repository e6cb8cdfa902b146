"""k-fold cross-validation: one switch, disjoint stratified folds, per-fold results and their mean."""
from __future__ import annotations

import json
import statistics

import pytest
import torch

from conftest import compose_config, train
from dlcourse.builders import make_split
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
    from dlcourse.train import run
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
