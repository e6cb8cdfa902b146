"""Course lab I: tasks, toy problems, the perceptron, MLP options, diagnostics in real runs,
run figures, full-batch training and start-up."""
from __future__ import annotations

import json
import os
import struct
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from conftest import ROOT, cli, compose_config, train
from dlcourse.errors import ConfigError
from dlcourse.losses import PerceptronCriterion, build_loss
from dlcourse.models import build_model
from dlcourse.models.layers import ACTIVATIONS
from dlcourse.tasks import Binary, Regression, make_task

QUIET = ["trainer.progress_bar=false"]


def png_size(path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


# tasks --------------------------------------------------------------------------------------
def test_regression_metrics_equal_scikit_learns():
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    g = torch.Generator().manual_seed(0)
    y = torch.randn(50, 2, generator=g)
    out = y + 0.3 * torch.randn(50, 2, generator=g)
    task = Regression(2)
    # statistics summed over two batches, as the engine does
    sums = (task.eval_stats(out[:20], y[:20]) + task.eval_stats(out[20:], y[20:])).tolist()
    m = task.metrics(sums, 50, "val")
    assert m["val/mse"] == pytest.approx(mean_squared_error(y, out), rel=1e-5)
    assert m["val/mae"] == pytest.approx(mean_absolute_error(y, out), rel=1e-5)
    assert m["val/r2"] == pytest.approx(r2_score(y, out), rel=1e-4)


def test_binary_accuracy_thresholds_the_logit_at_zero():
    out = torch.tensor([[-2.0], [0.5], [3.0], [-0.1]])
    y = torch.tensor([0, 0, 1, 1])
    assert Binary(2).train_stats(out, y).tolist() == [2.0]
    assert Binary(2).predict(out).tolist() == [0, 1, 1, 0]


def test_task_must_fit_the_dataset():
    assert make_task("binary", 2, "classification").num_outputs == 2
    assert make_task("classification", 2, "binary").num_outputs == 1
    with pytest.raises(ConfigError, match="task=binary does not fit dataset=spiral"):
        make_task("classification", 3, "binary", "spiral")
    with pytest.raises(ConfigError, match="task=classification does not fit"):
        make_task("regression", 1, "classification", "sine")


def test_a_loss_of_another_task_is_refused_by_name():
    with pytest.raises(ConfigError, match=r"loss=cross_entropy cannot train this regression task .*mse, mae, huber"):
        build_loss("cross_entropy", 1, task="regression")
    with pytest.raises(ConfigError, match="loss=perceptron cannot train this classification task"):
        build_loss("perceptron", 10, task="classification")


def test_loss_mismatch_on_the_command_line_is_one_paragraph(tmp_path):
    result = cli(["dataset=sine", "loss=cross_entropy", f"hydra.run.dir={tmp_path / 'run'}", *QUIET])
    assert result.returncode != 0
    err = result.stderr.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert "loss=cross_entropy cannot train this regression task" in err
    assert not (tmp_path / "run" / "checkpoints").exists()


# the perceptron ---------------------------------------------------------------------------------
def test_perceptron_criterion_makes_sgd_the_textbook_rule():
    torch.manual_seed(0)
    model = build_model("perceptron", (2,), 1)
    lin = model[1]
    for x, d in ((torch.tensor([[1.0, -2.0]]), 1), (torch.tensor([[0.5, 0.5]]), 0)):
        w, b = lin.weight.detach().clone(), lin.bias.detach().clone()
        y = float((x @ w.T + b).item() > 0)  # the Heaviside output before the update
        optimizer = torch.optim.SGD(model.parameters(), lr=0.3)
        optimizer.zero_grad()
        PerceptronCriterion()(model(x), torch.tensor([d])).backward()
        optimizer.step()
        assert torch.allclose(lin.weight, w + 0.3 * (d - y) * x)  # w <- w + lr (d - y) x
        assert torch.allclose(lin.bias, b + 0.3 * (d - y))
        assert model.fire(x).item() in (0.0, 1.0)


@pytest.mark.parametrize("gate", ["and", "or", "nand", "xor"])
def test_perceptron_learns_the_separable_gates_and_never_xor(tmp_path, gate):
    metrics = train(tmp_path / gate, ["experiment=perceptron_gates", f"dataset={gate}", "figures.enabled=false",
                                      "trainer.max_epochs=40"])
    history = pd.read_csv(tmp_path / gate / "history.csv")
    if gate == "xor":
        # accuracy during each online pass, and of the best epoch's final weights: never above 3/4
        assert metrics["train/acc_best"] == 0.75 and metrics["test/acc"] <= 0.75
    else:
        assert metrics["test/acc"] == 1.0 and history["train/acc"].iloc[-1] == 1.0
        assert history["train/loss"].iloc[-1] == 0.0  # no mistakes left: the rule stops changing w


# MLP options ---------------------------------------------------------------------------------
def test_mlp_width_and_depth_replace_hidden_sizes():
    model = build_model("mlp", (2,), 1, hidden_sizes=[256, 128], width=8, depth=3)
    assert [m.out_features for m in model if isinstance(m, nn.Linear)] == [8, 8, 8, 1]
    assert [m.out_features for m in build_model("mlp", (2,), 1, depth=0) if isinstance(m, nn.Linear)] == [1]
    with_dropout = build_model("mlp", (4,), 2, hidden_sizes=[3], input_dropout=0.2)
    assert isinstance(with_dropout[1], nn.Dropout) and with_dropout[1].p == 0.2


def test_every_activation_builds_and_its_keys_reach_it():
    x = torch.linspace(-2, 2, 9).view(-1, 1)
    for name in ACTIVATIONS:
        model = build_model("mlp", (1,), 1, hidden_sizes=[3], activation=name)
        assert model(x).shape == (9, 1)
    leaky = build_model("mlp", (1,), 1, hidden_sizes=[3], activation="leaky_relu", negative_slope=0.2)[2]
    elu = build_model("mlp", (1,), 1, hidden_sizes=[3], activation="elu", alpha=0.5)[2]
    assert leaky.negative_slope == 0.2 and elu.alpha == 0.5
    step = build_model("mlp", (1,), 1, hidden_sizes=[3], activation="step")[2]
    assert step(torch.tensor([-1.0, 0.0, 2.0])).tolist() == [0.0, 0.0, 1.0]


# real runs of each task ------------------------------------------------------------------------
def test_regression_fits_the_sine(tmp_path):
    run_dir = tmp_path / "sine"
    metrics = train(run_dir, ["experiment=sine_regression", "model.width=32", "model.depth=2",
                              "trainer.max_epochs=400"])
    assert metrics["test/mse"] < 0.03 and metrics["test/r2"] > 0.95  # noise std 0.1: the floor is 0.01
    assert metrics["test/loss"] == pytest.approx(metrics["test/mse"], rel=1e-5)  # loss=auto is the MSE
    # the test MSE recomputed from best.pt, outside the engine
    from dlcourse.evaluate import load

    run = load(run_dir)
    with torch.no_grad():
        pred = torch.cat([run.model(x) for x, _ in run.data.test])
    y = torch.cat([y for _, y in run.data.test])
    assert (pred - y).square().mean().item() == pytest.approx(metrics["test/mse"], rel=1e-4)
    assert png_size(run_dir / "figures" / "regression_fit.png")[0] > 400


def test_binary_task_on_moons_and_its_figures(tmp_path):
    run_dir = tmp_path / "moons"
    metrics = train(run_dir, ["dataset=moons", "model.width=16", "model.depth=2", "optim.lr=0.05",
                              "trainer.batch_size=null", "trainer.max_epochs=300", "trainer.val_every_n_epochs=25",
                              "figures.every_n_epochs=100"])
    assert metrics["test/acc"] > 0.93
    assert metrics["steps"] == 300  # full batch: one step per epoch
    cfg = json.loads(json.dumps(torch.load(run_dir / "checkpoints/best.pt", weights_only=True)["config"]))
    assert (cfg["task"], cfg["loss"]["name"], cfg["trainer"]["monitor"]) == ("binary", "bce", "val/acc")
    assert png_size(run_dir / "figures" / "decision_boundary.png") == (450, 420)
    assert png_size(run_dir / "figures" / "learning_curves.png")[1] == 400
    history = pd.read_csv(run_dir / "history.csv")
    validated = history.dropna(subset=["val/acc"])["epoch"].tolist()
    assert validated == list(range(25, 301, 25))
    assert metrics["best_epoch"] in validated


def test_checkpoints_every_n_epochs_and_after_the_last(tmp_path):
    run_dir = tmp_path / "r"
    train(run_dir, ["dataset=xor", "model.hidden_sizes=[4]", "trainer.batch_size=null", "trainer.max_epochs=7",
                    "trainer.checkpoint_every_n_epochs=5", "figures.enabled=false"])
    last = torch.load(run_dir / "checkpoints/last.pt", weights_only=True)
    assert last["state"]["epoch"] == 7 and len(pd.read_csv(run_dir / "history.csv")) == 7


def test_weight_norm_grows_on_separable_data_unless_cured(tmp_path):
    plain = train(tmp_path / "plain", ["experiment=logistic_separable", "trainer.max_epochs=200"])
    decayed = train(tmp_path / "wd", ["experiment=logistic_separable", "trainer.max_epochs=200",
                                      "optim.weight_decay=0.05"])
    norms = pd.read_csv(tmp_path / "plain" / "history.csv")["diag/weight_norm/total"].to_numpy()
    assert (np.diff(norms) > 0).all() and norms[-1] > 3 * norms[0]  # grows every epoch
    # the logged norm is the norm of the weights in the checkpoint
    ckpt = torch.load(tmp_path / "plain" / "checkpoints/last.pt", weights_only=True)["model"]
    assert norms[-1] == pytest.approx(torch.cat([v.flatten() for v in ckpt.values()]).norm().item(), rel=1e-5)
    wd = pd.read_csv(tmp_path / "wd" / "history.csv")["diag/weight_norm/total"].to_numpy()
    assert wd[-1] < 0.5 * norms[-1] and abs(wd[-1] - wd[-20]) < 0.01 * wd[-1]  # levels off
    assert plain["test/acc"] == 1.0 and decayed["test/acc"] == 1.0


def test_diagnostics_of_a_deep_net_reach_history_and_figures(tmp_path):
    run_dir = tmp_path / "deep"
    train(run_dir, ["experiment=init_depth", "init=xavier_normal", "trainer.max_epochs=1"])
    history = pd.read_csv(run_dir / "history.csv")
    for column in ("diag/act_std/act10", "diag/grad_norm/layer1", "diag/grad_norm/layer11", "diag/weight_norm/total"):
        assert column in history and np.isfinite(history[column]).all()
    assert png_size(run_dir / "figures" / "activations_by_depth.png")[0] > 400
    assert png_size(run_dir / "figures" / "gradients_by_depth.png")[0] > 400
    log = (run_dir / "train.log").read_text()
    # the per-layer summary: 28*28 inputs -> 10 hidden layers of 64 -> 10 classes
    total = 784 * 64 + 64 + 9 * (64 * 64 + 64) + 64 * 10 + 10
    assert f"Total params: {total:,}" in log and "Linear (1)" in log


def test_zeros_init_keeps_a_deep_net_at_chance(tmp_path):
    metrics = train(tmp_path / "z", ["experiment=init_depth", "init=zeros", "trainer.max_epochs=1"])
    assert metrics["test/acc"] < 0.2  # every unit computes the same thing: symmetric, no learning


# the sweep report ------------------------------------------------------------------------------
def test_sweep_report_shows_each_runs_boundary_and_depth_profiles(tmp_path):
    from dlcourse.reports import write_report
    from dlcourse.training import run

    for i, depth in enumerate((1, 2)):
        overrides = [f"model.depth={depth}"]
        cfg = compose_config(["experiment=depth_spiral", "trainer.max_epochs=20", "diagnostics=full", *overrides])
        run(cfg, tmp_path / f"{i}_model.depth={depth}", overrides)
    report = write_report(tmp_path, log=lambda *a: None)
    assert png_size(tmp_path / "report_decision_boundary.png")[0] > 500
    assert png_size(tmp_path / "report_depth.png")[0] > 500
    assert "report_decision_boundary.png" in report.read_text()


def test_a_configuration_keeps_its_colour_and_legend_entry_in_every_depth_panel(tmp_path, monkeypatch):
    """Dead units are measured for ReLU only: its curve in that panel has the ReLU colour of the other panels,
    and the shared legend names each configuration once, in the table's rank order, in its colour."""
    from dlcourse.reports import gallery, write_report
    from dlcourse.training import run

    for i, activation in enumerate(("sigmoid", "relu")):
        overrides = [f"model.activation={activation}"]
        cfg = compose_config(["experiment=activations_depth", "trainer.max_epochs=1", "dataset.subset=200",
                              "model.depth=3", "figures.enabled=false", *overrides])
        run(cfg, tmp_path / f"{i}_model.activation={activation}", overrides)
    drawn = {}
    monkeypatch.setattr(gallery.plt, "close", lambda fig: drawn.setdefault(fig.axes[0].get_title(), fig))
    write_report(tmp_path, log=lambda *a: None)
    fig = next(f for f in drawn.values() if any("dead" in ax.get_title() for ax in f.axes))
    table = list(__import__("pandas").read_csv(tmp_path / "report.csv")["configuration"])
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == [f"{i + 1}. {c}" for i, c in enumerate(table)]
    colour = {text.get_text().split(". ", 1)[1]: handle.get_color()
              for text, handle in zip(fig.legends[0].get_texts(), fig.legends[0].legend_handles)}
    dead = next(ax for ax in fig.axes if "dead" in ax.get_title())
    assert [line.get_color() for line in dead.lines] == [colour["model.activation=relu"]]
    for ax in fig.axes[:2]:
        assert sorted(line.get_color() for line in ax.lines) == sorted(colour.values())


# start-up ------------------------------------------------------------------------------------
def test_a_toy_run_imports_neither_torchvision_nor_scikit_learn(tmp_path):
    code = ("import runpy, sys\n"
            f"sys.argv = ['train.py', 'experiment=xor_mlp', 'trainer.max_epochs=20', 'hydra.run.dir={tmp_path / 'r'}']\n"
            "try:\n"
            f"    runpy.run_path({str(ROOT / 'train.py')!r}, run_name='__main__')\n"
            "except SystemExit:\n"
            "    pass\n"
            "print([m for m in ('torchvision', 'sklearn') if m in sys.modules])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_evaluating_twice_gives_the_same_metrics_on_vector_data():
    """Batches are normalised in place: the stored features must not be normalised again each time."""
    from dlcourse.builders import dataset_info, make_data, make_model, resolve_task
    from dlcourse.engine import Engine, Settings

    cfg = compose_config(["dataset=moons", "model.width=8", "model.depth=1"])
    info = dataset_info(cfg)
    task = resolve_task(cfg, info)
    data, _ = make_data(cfg, info, torch.device("cpu"))
    stored = data.val.images.clone()
    model, _ = make_model(cfg, info, torch.device("cpu"), task)
    engine = Engine(model, torch.optim.SGD(model.parameters(), lr=0.1), None, build_loss("bce", 2, task="binary"),
                    data, Settings(), torch.device("cpu"), None, ROOT, task=task)
    first, second = engine.evaluate(data.val, "val"), engine.evaluate(data.val, "val")
    assert first == second and torch.equal(data.val.images, stored)
