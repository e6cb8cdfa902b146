"""Weight-initialisation schemes: the statistics they promise, read back from a real run."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from conftest import train
from dlcourse.init import SCHEMES, expected_std, init_weights
from dlcourse.models import build_model


@pytest.mark.parametrize("scheme", ["kaiming_normal", "kaiming_uniform", "xavier_uniform", "xavier_normal"])
def test_first_layer_std_after_a_zero_lr_run(run_dir, scheme):
    train(run_dir, [f"init={scheme}", "optim.lr=0", "trainer.max_epochs=1", "model.hidden_sizes=[512,256]"])
    w = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["model"]["1.weight"]
    fan_out, fan_in = w.shape
    assert w.std().item() == pytest.approx(expected_std(scheme, fan_in, fan_out), rel=0.05)


def test_kaiming_takes_the_nonlinearity_from_the_model():
    tanh = build_model("mlp", (1, 28, 28), 10, hidden_sizes=[512], activation="tanh")
    init_weights(tanh, "kaiming_normal")
    # tanh's gain is 5/3: std = gain / sqrt(fan_in)
    assert tanh[1].weight.std().item() == pytest.approx(5 / 3 / math.sqrt(784), rel=0.05)


def test_biases_zero_and_norm_layers_left_as_built():
    model = build_model("mlp", (1, 8, 8), 10, hidden_sizes=[32], batch_norm=True)
    with torch.no_grad():
        model[2].weight.fill_(3.0)
    init_weights(model, "xavier_uniform")
    assert torch.all(model[-1].bias == 0)
    assert torch.all(model[2].weight == 3) and torch.all(model[2].bias == 0)


@pytest.mark.parametrize("scheme", [s for s in SCHEMES if s != "default"])
def test_zero_init_residual_survives_every_scheme(scheme):
    torch.manual_seed(0)
    model = build_model("resnet18", (3, 32, 32), 10, zero_init_residual=True)
    init_weights(model, scheme)
    last_bns = [block.bn2 for stage in (model.layer1, model.layer2, model.layer3, model.layer4) for block in stage]
    assert len(last_bns) == 8 and all(torch.all(bn.weight == 0) for bn in last_bns)
    assert torch.all(model.bn1.weight == 1) and torch.all(model.layer1[0].bn1.weight == 1)
    if scheme != "zeros":
        assert model.conv1.weight.std() > 0


def test_orthogonal_and_normal_and_zeros():
    model = build_model("mlp", (1, 8, 8), 10, hidden_sizes=[32])
    init_weights(model, "orthogonal")
    w = model[1].weight  # 32 x 64: orthonormal rows
    assert torch.allclose(w @ w.T, torch.eye(32), atol=1e-5)
    init_weights(model, "normal", std=0.02)
    assert model[1].weight.std().item() == pytest.approx(0.02, rel=0.2)
    init_weights(model, "zeros")
    assert all(torch.all(m.weight == 0) for m in model if isinstance(m, nn.Linear))


def test_zeros_init_shows_the_symmetry_problem(run_dir):
    train(run_dir, ["init=zeros", "trainer.max_epochs=2", "optim=sgd", "optim.lr=0.1"])
    w = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["model"]["1.weight"]
    assert torch.allclose(w, w[0].expand_as(w))  # every hidden unit is still the same unit


def test_default_keeps_the_model_initialisation():
    torch.manual_seed(0)
    a = build_model("lenet", (1, 28, 28), 10)
    torch.manual_seed(0)
    b = build_model("lenet", (1, 28, 28), 10)
    init_weights(b, "default")
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
