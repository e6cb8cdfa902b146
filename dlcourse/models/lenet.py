"""LeNet-5 (LeCun et al., 1998): conv 6@5x5 -> pool -> conv 16@5x5 -> pool -> 120 -> 84 -> classes.

The original takes 32x32 inputs; smaller ones (28x28 MNIST) are padded by the first convolution
so the feature maps keep their classic sizes (28 -> 14 -> 10 -> 5).
"""
from __future__ import annotations

import torch
from torch import nn

from dlcourse.errors import ConfigError
from dlcourse.models.layers import activation as make_activation

POOLING = {"max": nn.MaxPool2d, "avg": nn.AvgPool2d}


class LeNet5(nn.Module):
    def __init__(self, in_channels: int = 1, num_classes: int = 10, image_size: int = 28,
                 activation: str = "relu", pooling: str = "max", dropout: float = 0.0):
        super().__init__()
        if pooling not in POOLING:
            raise ConfigError(f"model.pooling={pooling!r} is not known: choose one of {', '.join(POOLING)}.")
        pool = POOLING[pooling]
        padding = max(0, (32 - image_size) // 2)
        self.activation = activation
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, kernel_size=5, padding=padding), make_activation(activation), pool(2),
            nn.Conv2d(6, 16, kernel_size=5), make_activation(activation), pool(2),
        )
        with torch.no_grad():
            flat = self.features(torch.zeros(1, in_channels, image_size, image_size)).numel()
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(flat, 120), make_activation(activation), nn.Dropout(dropout),
            nn.Linear(120, 84), make_activation(activation), nn.Dropout(dropout),
            nn.Linear(84, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def lenet(input_shape, num_classes: int, **kwargs) -> LeNet5:
    c, h, w = input_shape
    if h != w:
        raise ConfigError(f"LeNet-5 expects square images, got {h}x{w}.")
    return LeNet5(c, num_classes, image_size=h, **kwargs)
