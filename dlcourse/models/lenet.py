"""LeNet-5 (LeCun et al., 1998): conv 6@5x5 -> pool -> conv 16@5x5 -> pool -> 120 -> 84 -> classes.

The original takes 32x32 inputs; smaller ones (28x28 MNIST) are padded by the first convolution
so the feature maps keep their classic sizes (28 -> 14 -> 10 -> 5). `channels` and `hidden` change the
widths (the "20/50 conv, 500 FC" variant: channels=[20, 50], hidden=[500]); `batch_norm` adds a
BatchNorm before each activation (and drops the biases it makes redundant).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from dlcourse.errors import ConfigError
from dlcourse.models.layers import activation as make_activation

POOLING = {"max": nn.MaxPool2d, "avg": nn.AvgPool2d}


def _widths(key: str, values: Sequence[int], allow_empty: bool) -> list[int]:
    ok = isinstance(values, (list, tuple)) and (allow_empty or len(values) > 0)
    if not ok or not all(isinstance(v, int) and v > 0 for v in values):
        raise ConfigError(f"model.{key}={values} must be a list of positive integers"
                          f"{'' if allow_empty else ' (at least one)'}.")
    return list(values)


class LeNet5(nn.Module):
    def __init__(self, in_channels: int = 1, num_classes: int = 10, image_size: int = 28,
                 activation: str = "relu", pooling: str = "max", dropout: float = 0.0,
                 channels: Sequence[int] = (6, 16), hidden: Sequence[int] = (120, 84), batch_norm: bool = False):
        super().__init__()
        if pooling not in POOLING:
            raise ConfigError(f"model.pooling={pooling!r} is not known: choose one of {', '.join(POOLING)}.")
        channels, hidden = _widths("channels", channels, False), _widths("hidden", hidden, True)
        pool = POOLING[pooling]
        self.activation = activation
        features: list[nn.Module] = []
        size, width = image_size, in_channels
        for i, out in enumerate(channels):
            padding = max(0, (32 - image_size) // 2) if i == 0 else 0
            features.append(nn.Conv2d(width, out, kernel_size=5, padding=padding, bias=not batch_norm))
            if batch_norm:
                features.append(nn.BatchNorm2d(out))
            features += [make_activation(activation), pool(2)]
            size, width = (size + 2 * padding - 4) // 2, out
            if size < 1:
                raise ConfigError(f"model=lenet cannot take {image_size}x{image_size} inputs with "
                                  f"{len(channels)} convolutions: use fewer model.channels or larger images.")
        self.features = nn.Sequential(*features)
        classifier: list[nn.Module] = [nn.Flatten()]
        width = width * size * size
        for out in hidden:
            classifier.append(nn.Linear(width, out, bias=not batch_norm))
            if batch_norm:
                classifier.append(nn.BatchNorm1d(out))
            classifier += [make_activation(activation), nn.Dropout(dropout)]
            width = out
        classifier.append(nn.Linear(width, num_classes))
        self.classifier = nn.Sequential(*classifier)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def lenet(input_shape, num_classes: int, **kwargs) -> LeNet5:
    c, h, w = input_shape
    if h != w:
        raise ConfigError(f"LeNet-5 expects square images, got {h}x{w}.")
    return LeNet5(c, num_classes, image_size=h, **kwargs)
