"""ResNet-18/34/50 (He et al., 2016) on torchvision's builders, so torchvision weights load at 224x224 RGB.

Images under 64 px get the stem usual for CIFAR: a 3x3 stride-1 first convolution and no max-pool, so the
four stages see 32/16/8/4-pixel feature maps from 32x32 inputs instead of 8/4/2/1.
"""
from __future__ import annotations

from typing import Callable

from torch import nn
from torchvision import models

from dlcourse.models.layers import is_small_input
from torchvision.models import ResNet



def _resnet(builder: Callable[..., ResNet], input_shape, num_classes: int, *,
            zero_init_residual: bool = False, small_input: bool | None = None) -> ResNet:
    """torchvision's ResNet with the stem adapted to the images; `small_input=None` decides by size."""
    c, h, w = input_shape
    small = is_small_input(h, w, small_input)
    model = builder(weights=None, num_classes=num_classes, zero_init_residual=zero_init_residual)
    if small:
        model.conv1 = nn.Conv2d(c, 64, kernel_size=3, stride=1, padding=1, bias=False)
        model.maxpool = nn.Identity()
    elif c != 3:
        model.conv1 = nn.Conv2d(c, 64, kernel_size=7, stride=2, padding=3, bias=False)
    if small or c != 3:  # initialise the new stem as torchvision initialises its convolutions
        nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    model.activation = "relu"  # read by dlcourse.init for Kaiming's gain
    return model


def resnet18(input_shape, num_classes: int, **options) -> ResNet:
    """ResNet-18: basic blocks, [2, 2, 2, 2] per stage."""
    return _resnet(models.resnet18, input_shape, num_classes, **options)


def resnet34(input_shape, num_classes: int, **options) -> ResNet:
    """ResNet-34: basic blocks, [3, 4, 6, 3] per stage."""
    return _resnet(models.resnet34, input_shape, num_classes, **options)


def resnet50(input_shape, num_classes: int, **options) -> ResNet:
    """ResNet-50: bottleneck blocks, [3, 4, 6, 3] per stage."""
    return _resnet(models.resnet50, input_shape, num_classes, **options)
