"""Optimizers, schedules, weight decay groups, penalties and clipping."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from conftest import CONFIGS, compose_config, train
from dlcourse.errors import ConfigError
from dlcourse.losses import build_loss
from dlcourse.optim import adaptive_clip_, build_optimizer, clip_gradients, l1_penalty, param_groups

OPTIMS = sorted(p.stem for p in (CONFIGS / "optim").glob("*.yaml"))


def tiny():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))


@pytest.mark.parametrize("optim", OPTIMS)
def test_every_optimizer_trains(run_dir, optim):
    metrics = train(run_dir, [f"optim={optim}", "trainer.max_epochs=3"])
    assert metrics["test/acc"] > 0.5, optim


def test_weight_decay_skips_biases_and_norm_parameters():
    model = tiny()
    decay, no_decay = param_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert {p.ndim for p in decay["params"]} == {2} and {p.ndim for p in no_decay["params"]} == {1}
    assert len(param_groups(model, 0.1, decay_bias_and_norm=True)) == 1


def test_bad_optimizer_argument_is_a_config_error():
    with pytest.raises(ConfigError, match="optim"):
        build_optimizer(tiny(), torch.optim.Adam, lr=0.1, betas=[2.0, 0.9])


def test_l1_penalty_drives_weights_toward_zero(tmp_path):
    plain = train(tmp_path / "a", ["trainer.max_epochs=3"])
    sparse = train(tmp_path / "b", ["trainer.max_epochs=3", "regularization.l1=1e-3"])
    w = {k: torch.load(tmp_path / k / "checkpoints/last.pt", weights_only=True)["model"]["1.weight"]
         for k in "ab"}
    assert w["b"].abs().mean() < 0.5 * w["a"].abs().mean()
    assert (w["b"].abs() < 1e-3).float().mean() > (w["a"].abs() < 1e-3).float().mean()
    assert sparse["test/acc"] > 0.5 and plain["test/acc"] > 0.5


def test_l1_penalty_value():
    model = nn.Linear(2, 2)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, -2.0], [0.5, 0.0]]))
    assert l1_penalty(model).item() == pytest.approx(3.5)  # biases are not penalised


def grads(model):
    x, y = torch.randn(16, 4) * 100, torch.randint(0, 3, (16,))
    model.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    return [p for p in model.parameters()]


def total_norm(params):
    return torch.norm(torch.stack([p.grad.norm() for p in params])).item()


def test_clipping_by_norm_value_and_adaptive():
    params = grads(tiny())
    assert total_norm(params) > 0.1
    clip_gradients(params, norm=0.1)
    assert total_norm(params) == pytest.approx(0.1, rel=1e-4)
    params = grads(tiny())
    clip_gradients(params, value=0.01)
    assert max(p.grad.abs().max().item() for p in params) <= 0.01 + 1e-9
    model = tiny()
    params = grads(model)
    adaptive_clip_(params, 0.01)
    w = model[0].weight
    ratio = w.grad.norm(dim=1) / w.norm(dim=1).clamp_min(1e-3)
    assert ratio.max().item() <= 0.01 + 1e-6


def test_clipping_in_a_run_bounds_the_step(run_dir):
    metrics = train(run_dir, ["optim=sgd", "optim.lr=2.0", "regularization.clip_grad_norm=0.5",
                              "trainer.max_epochs=2"])
    assert metrics["diverged"] is False and math.isfinite(metrics["test/loss"])


def test_label_smoothing_changes_the_loss():
    logits, y = torch.tensor([[4.0, 0.0, 0.0]]), torch.tensor([0])
    hard = build_loss("cross_entropy", 3)(logits, y)
    smooth = build_loss("cross_entropy", 3, label_smoothing=0.1)(logits, y)
    assert smooth > hard
    with pytest.raises(ConfigError, match="label_smoothing"):
        build_loss("hinge", 3, label_smoothing=0.1)


def test_regression_losses_take_soft_targets():
    logits = torch.zeros(2, 4)
    soft = torch.full((2, 4), 0.25)
    assert build_loss("mse", 4)(logits, soft).item() == pytest.approx(0.0)


def test_config_exposes_regularizers_as_plain_keys():
    cfg = compose_config(["regularization.l1=0.001", "regularization.clip_grad_norm=1.0",
                          "loss.label_smoothing=0.1", "optim.weight_decay=5e-4"])
    assert cfg.regularization.l1 == 0.001 and cfg.loss.label_smoothing == 0.1
