"""Building blocks shared by the models."""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from dlcourse.errors import ConfigError


class Step(nn.Module):
    """Heaviside step: 1 where x > 0, else 0 (the formal neuron's output). Its derivative is 0
    almost everywhere, so no gradient flows through it: the reason backpropagation needs smooth units."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x > 0).to(x.dtype)


class Sign(nn.Module):
    """sign(x) in {-1, 0, 1}; like `Step`, it passes no gradient."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sign(x)


# name -> factory(negative_slope, alpha); the two keys are model.negative_slope and model.alpha
ACTIVATIONS: dict[str, Callable[[float, float], nn.Module]] = {
    "relu": lambda slope, alpha: nn.ReLU(),
    "leaky_relu": lambda slope, alpha: nn.LeakyReLU(slope),
    "prelu": lambda slope, alpha: nn.PReLU(init=slope if slope else 0.25),  # the slope is learned
    "elu": lambda slope, alpha: nn.ELU(alpha),
    "selu": lambda slope, alpha: nn.SELU(),
    "gelu": lambda slope, alpha: nn.GELU(),
    "gelu_tanh": lambda slope, alpha: nn.GELU(approximate="tanh"),
    "silu": lambda slope, alpha: nn.SiLU(),
    "softplus": lambda slope, alpha: nn.Softplus(),
    "tanh": lambda slope, alpha: nn.Tanh(),
    "hardtanh": lambda slope, alpha: nn.Hardtanh(),
    "softsign": lambda slope, alpha: nn.Softsign(),
    "sigmoid": lambda slope, alpha: nn.Sigmoid(),
    "step": lambda slope, alpha: Step(),
    "sign": lambda slope, alpha: Sign(),
    "identity": lambda slope, alpha: nn.Identity(),
}

# The `nonlinearity` argument of torch.nn.init.calculate_gain / kaiming_* for each activation.
INIT_NONLINEARITY = {"relu": "relu", "leaky_relu": "leaky_relu", "prelu": "leaky_relu", "elu": "relu",
                     "selu": "selu", "gelu": "relu", "gelu_tanh": "relu", "silu": "relu", "softplus": "relu",
                     "tanh": "tanh", "hardtanh": "tanh", "softsign": "tanh", "sigmoid": "sigmoid",
                     "step": "linear", "sign": "linear", "identity": "linear"}


def activation(name: str, negative_slope: float = 0.01, alpha: float = 1.0) -> nn.Module:
    """A fresh activation module by its textbook name."""
    try:
        return ACTIVATIONS[name](negative_slope, alpha)
    except KeyError:
        raise ConfigError(f"model.activation={name!r} is not known: choose one of "
                          f"{', '.join(ACTIVATIONS)}.") from None


SMALL_INPUT = 64  # images narrower than this (pixels, either side) get a model's small-image variant


def is_small_input(h: int, w: int, small_input: bool | None = None) -> bool:
    """Whether to build the small-image (CIFAR-style) variant; `small_input` overrides the size rule."""
    return min(h, w) < SMALL_INPUT if small_input is None else bool(small_input)


def replace_relu(modules: list[nn.Sequential], name: str) -> None:
    """Swap every nn.ReLU in `modules` for activation `name` (torchvision's in-place ReLUs stay for relu)."""
    if name == "relu":
        return
    for layers in modules:
        for i, layer in enumerate(layers):
            if isinstance(layer, nn.ReLU):
                layers[i] = activation(name)
