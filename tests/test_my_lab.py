"""The worked example examples/my_lab/: the lab's command trains as its README says, and each file
of the folder (optimizer, loss, callback, data generator) does what its docstring promises."""
from __future__ import annotations

import csv
import importlib.util
import json
import math
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import ROOT, cli, compose_config

LAB = ROOT / "examples" / "my_lab"
# measured: test/acc 0.960 and val/acc_best 0.983 with seed 0 (5 epochs); the bars leave a margin
TEST_ACC_BAR, VAL_ACC_BAR = 0.90, 0.93


def lab_module(name: str):
    """A file of the lab folder, imported under a name of its own (nothing added to sys.path)."""
    spec = importlib.util.spec_from_file_location(f"my_lab_{name}", LAB / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def lab_run(tmp_path_factory):
    """The README's command, from the repository root: python train.py --config-dir examples/my_lab experiment=lab3."""
    run_dir = tmp_path_factory.mktemp("lab3") / "run"
    out = cli(["--config-dir", "examples/my_lab", "experiment=lab3", f"hydra.run.dir={run_dir}",
               "trainer.device=cpu", "trainer.progress_bar=false"])
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return run_dir


def test_the_experiment_composes_with_the_lab_folder_on_the_search_path():
    cfg = compose_config([f"hydra.searchpath=[file://{LAB}]", "experiment=lab3"])
    assert cfg.model._target_ == "student_cnn.StudentCNN" and list(cfg.model.channels) == [16, 32]
    assert cfg.dataset.name == "tensors" and cfg.dataset.path == "examples/my_lab/shapes.npz"
    assert cfg.optim._target_ == "momentum_sgd.MomentumSGD" and cfg.optim.momentum == 0.9
    assert cfg.loss._target_ == "focal_loss.FocalLoss" and cfg.loss.kwargs.gamma == 2.0
    assert cfg.callbacks.norms._target_ == "callbacks.WeightNorms"


def test_the_lab_command_trains_the_students_cnn_above_the_measured_bar(lab_run):
    metrics = json.loads((lab_run / "metrics.json").read_text())
    assert metrics["epochs_run"] == 5
    assert metrics["test/acc"] >= TEST_ACC_BAR and metrics["val/acc_best"] >= VAL_ACC_BAR, metrics
    ckpt = torch.load(lab_run / "checkpoints" / "best.pt", weights_only=True)
    assert ckpt["config"]["loss"]["name"] == "focal_loss.FocalLoss" and ckpt["classes"] == ["circle", "square", "triangle"]
    assert str(LAB) in ckpt["code_dirs"]  # where the lab's _target_s were imported from


def global_norm(tensors) -> float:
    return math.sqrt(sum(float(t.double().pow(2).sum()) for t in tensors))


def test_the_callback_logs_the_weight_norms_that_the_checkpoints_hold(lab_run):
    with open(lab_run / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 5 and {"norms/weights", "norms/weights_rel", "norms/grad"} <= set(rows[0])
    last = torch.load(lab_run / "checkpoints" / "last.pt", weights_only=True)
    best = torch.load(lab_run / "checkpoints" / "best.pt", weights_only=True)
    # StudentCNN has no buffers: its state dict is its parameters, measured at the end of that epoch
    for ckpt in (last, best):
        row = rows[ckpt["state"]["epoch"] - 1]
        assert float(row["norms/weights"]) == pytest.approx(global_norm(ckpt["model"].values()), rel=1e-5)
    initial = last["callbacks"]["norms"]["initial_norm"]  # the callback's state, stored in the checkpoint
    for row in rows:
        assert float(row["norms/weights_rel"]) == pytest.approx(float(row["norms/weights"]) / initial, rel=1e-6)
        assert 0 < float(row["norms/grad"]) < 100
    assert float(rows[-1]["norms/weights_rel"]) > 1  # training moved the weights away from their start


def test_evaluate_script_reproduces_the_runs_test_accuracy(lab_run):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "scripts/evaluate.py", "--config-dir", str(LAB), str(lab_run)], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    evaluated = json.loads((lab_run / "eval" / "test" / "metrics.json").read_text())
    trained = json.loads((lab_run / "metrics.json").read_text())
    assert evaluated["acc"] == pytest.approx(trained["test/acc"], abs=1e-9)


def test_momentum_sgd_matches_torch_sgd_step_by_step():
    MomentumSGD = lab_module("momentum_sgd").MomentumSGD
    torch.manual_seed(0)
    ours = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    theirs = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    theirs.load_state_dict(ours.state_dict())

    def groups(model):  # weights decayed, biases not: as dlcourse builds them
        return [{"params": [p for n, p in model.named_parameters() if n.endswith("weight")], "weight_decay": 1e-2},
                {"params": [p for n, p in model.named_parameters() if n.endswith("bias")], "weight_decay": 0.0}]

    opt_ours = MomentumSGD(groups(ours), lr=0.1, momentum=0.9)
    opt_theirs = torch.optim.SGD(groups(theirs), lr=0.1, momentum=0.9)
    x, y = torch.randn(32, 5), torch.randint(0, 3, (32,))
    for _ in range(20):
        for model, opt in ((ours, opt_ours), (theirs, opt_theirs)):
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
        for a, b in zip(ours.parameters(), theirs.parameters()):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-7)


def test_focal_loss_with_gamma_0_is_cross_entropy_and_down_weights_easy_examples():
    FocalLoss = lab_module("focal_loss").FocalLoss
    torch.manual_seed(0)
    logits, target = torch.randn(64, 3, dtype=torch.float64) * 3, torch.randint(0, 3, (64,))
    torch.testing.assert_close(FocalLoss(gamma=0)(logits, target), F.cross_entropy(logits, target), rtol=0, atol=1e-12)
    p_t = F.softmax(logits, 1)[torch.arange(64), target]
    expected = (-(1 - p_t) ** 2 * p_t.log()).mean()
    torch.testing.assert_close(FocalLoss(gamma=2)(logits, target), expected)
    assert FocalLoss(gamma=2)(logits, target) < F.cross_entropy(logits, target)


def test_make_shapes_regenerates_the_committed_file(tmp_path):
    make_shapes = lab_module("make_shapes")
    make_shapes.save(make_shapes.arrays(), tmp_path / "shapes.npz")
    with zipfile.ZipFile(LAB / "shapes.npz") as committed, zipfile.ZipFile(tmp_path / "shapes.npz") as made:
        assert committed.namelist() == made.namelist()
        for name in committed.namelist():  # the .npy bytes themselves, whatever zlib compressed them to
            assert committed.read(name) == made.read(name), name
    data = np.load(LAB / "shapes.npz")
    assert data["x"].shape == (3000, 28, 28) and data["x"].dtype == np.uint8 and data["x_test"].shape == (1000, 28, 28)
    assert list(data["classes"]) == ["circle", "square", "triangle"] and np.bincount(data["y"]).min() > 900
