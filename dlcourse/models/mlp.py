"""Multi-layer perceptron: flatten, then [Linear -> (BatchNorm) -> activation -> (Dropout)] x n -> Linear."""
from __future__ import annotations

from typing import Sequence

from torch import nn

from dlcourse.models.layers import activation as make_activation


class MLP(nn.Sequential):
    def __init__(self, in_features: int, num_classes: int, hidden_sizes: Sequence[int] = (256, 128),
                 activation: str = "relu", dropout: float = 0.0, batch_norm: bool = False):
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for hidden in hidden_sizes:
            layers.append(nn.Linear(width, hidden, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm1d(hidden))
            layers.append(make_activation(activation))
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = hidden
        layers.append(nn.Linear(width, num_classes))
        super().__init__(*layers)
        self.activation = activation


def mlp(input_shape, num_classes: int, **kwargs) -> MLP:
    c, h, w = input_shape
    return MLP(c * h * w, num_classes, **kwargs)
