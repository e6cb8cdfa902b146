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
