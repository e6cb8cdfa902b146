"""Multi-layer perceptron: flatten, (input Dropout), then [Linear -> (BatchNorm) -> activation ->
(Dropout)] x depth -> Linear."""
from __future__ import annotations

import math
from typing import Optional, Sequence

from torch import nn

from dlcourse.models.layers import activation as make_activation


class MLP(nn.Sequential):
    def __init__(self, in_features: int, num_classes: int, hidden_sizes: Sequence[int] = (256, 128),
                 activation: str = "relu", dropout: float = 0.0, batch_norm: bool = False,
                 input_dropout: float = 0.0, negative_slope: float = 0.01, alpha: float = 1.0):
        layers: list[nn.Module] = [nn.Flatten()]
        if input_dropout > 0:
            layers.append(nn.Dropout(input_dropout))  # Srivastava et al.: 0.2 on the inputs, 0.5 on hidden units
        width = in_features
        for hidden in hidden_sizes:
            layers.append(nn.Linear(width, hidden, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm1d(hidden))
            layers.append(make_activation(activation, negative_slope, alpha))
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = hidden
        layers.append(nn.Linear(width, num_classes))
        super().__init__(*layers)
        self.activation = activation


def hidden_layers(hidden_sizes: Sequence[int], width: Optional[int], depth: Optional[int]) -> list[int]:
    """`model.width` and `model.depth` (hidden layers of equal width) override `model.hidden_sizes`;
    one of them alone keeps the other from hidden_sizes (its first width, or its length)."""
    if width is None and depth is None:
        return list(hidden_sizes)
    width = width if width is not None else (hidden_sizes[0] if hidden_sizes else 16)
    return [width] * (depth if depth is not None else len(hidden_sizes))


def mlp(input_shape, num_classes: int, hidden_sizes: Sequence[int] = (256, 128), width: Optional[int] = None,
        depth: Optional[int] = None, **kwargs) -> MLP:
    return MLP(math.prod(input_shape), num_classes, hidden_layers(hidden_sizes, width, depth), **kwargs)
