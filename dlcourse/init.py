"""Weight-initialisation schemes (torch.nn.init) applied to every conv and linear layer.

Weights follow the scheme and biases start at zero. Normalisation layers keep what the model
built (weight 1 and bias 0, or 0 for the last batch norm of each residual branch with
`model.zero_init_residual=true`). `default` keeps the model's own initialisation: PyTorch's per-layer defaults (Kaiming-uniform with
a = sqrt(5)), or torchvision's scheme for VGG and ResNet.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from dlcourse.errors import ConfigError
from dlcourse.models.layers import INIT_NONLINEARITY

WEIGHTED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d)


def _init_weight(w: torch.Tensor, scheme: str, gain: float, std: float, nonlinearity: str) -> None:
    neg_slope = 0.01 if nonlinearity == "leaky_relu" else 0.0
    if scheme == "xavier_uniform":
        nn.init.xavier_uniform_(w, gain=gain)
    elif scheme == "xavier_normal":
        nn.init.xavier_normal_(w, gain=gain)
    elif scheme == "kaiming_uniform":
        nn.init.kaiming_uniform_(w, a=neg_slope, mode="fan_in", nonlinearity=nonlinearity)
    elif scheme == "kaiming_normal":
        nn.init.kaiming_normal_(w, a=neg_slope, mode="fan_in", nonlinearity=nonlinearity)
    elif scheme == "orthogonal":
        nn.init.orthogonal_(w, gain=gain)
    elif scheme == "normal":
        nn.init.normal_(w, mean=0.0, std=std)
    elif scheme == "zeros":
        nn.init.zeros_(w)


SCHEMES = ("default", "xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal",
           "orthogonal", "normal", "zeros")


@torch.no_grad()
def init_weights(model: nn.Module, scheme: str = "default", gain: float = 1.0, std: float = 0.01,
                 activation: str | None = None) -> None:
    """Re-initialise `model` in place. Kaiming's nonlinearity comes from `activation` (or the model's)."""
    if scheme not in SCHEMES:
        raise ConfigError(f"init.name={scheme!r} is not known: choose one of {', '.join(SCHEMES)}.")
    if scheme == "default":
        return
    activation = activation or getattr(model, "activation", "relu")
    nonlinearity = INIT_NONLINEARITY.get(activation, "relu")
    for m in model.modules():
        if isinstance(m, WEIGHTED):
            _init_weight(m.weight, scheme, gain, std, nonlinearity)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def expected_std(scheme: str, fan_in: int, fan_out: int, gain: float = 1.0) -> float:
    """The weight standard deviation a scheme aims for (for checks and plots)."""
    return {
        "xavier_uniform": gain * math.sqrt(2.0 / (fan_in + fan_out)),
        "xavier_normal": gain * math.sqrt(2.0 / (fan_in + fan_out)),
        "kaiming_uniform": math.sqrt(2.0 / fan_in),
        "kaiming_normal": math.sqrt(2.0 / fan_in),
    }[scheme]
