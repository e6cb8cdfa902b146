"""Building blocks shared by the models."""
from __future__ import annotations

from typing import Callable

from torch import nn

from dlcourse.errors import ConfigError

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": lambda: nn.LeakyReLU(0.01),
    "elu": nn.ELU,
    "selu": nn.SELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "identity": nn.Identity,
}

# The `nonlinearity` argument of torch.nn.init.calculate_gain / kaiming_* for each activation.
INIT_NONLINEARITY = {"relu": "relu", "leaky_relu": "leaky_relu", "elu": "relu", "selu": "selu",
                     "gelu": "relu", "silu": "relu", "tanh": "tanh", "sigmoid": "sigmoid",
                     "identity": "linear"}


def activation(name: str) -> nn.Module:
    """A fresh activation module by its textbook name."""
    try:
        return ACTIVATIONS[name]()
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
