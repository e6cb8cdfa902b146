"""VGG-11/13/16/19 (Simonyan & Zisserman, 2015) on torchvision's builders, so torchvision weights load at
224x224 RGB; `batch_norm=True` picks the `_bn` variants.

Images under 64 px get a small-image variant (the usual CIFAR VGG): the feature map after the fifth pooling
is 1x1, so the 7x7x512 -> 4096 -> 4096 classifier becomes 512 -> 512 -> 512 (same layout, same dropout).
Under 32 px the first convolution also pads the image up to 32x32, so the five poolings still fit.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn
from torchvision import models
from torchvision.models import VGG

from dlcourse.models.layers import is_small_input, replace_relu

SMALL_HIDDEN = 512  # width of the small variant's hidden layers
MIN_SIZE = 32  # five 2x2 poolings need 32 pixels


def _init_like_torchvision(model: VGG) -> None:
    """torchvision's VGG initialisation, which the meta device skipped; batch-norm statistics start afresh."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            m.reset_parameters()  # weight 1, bias 0, running mean 0 and variance 1
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)


def _vgg(builder: Callable[..., VGG], builder_bn: Callable[..., VGG], input_shape, num_classes: int, *,
         batch_norm: bool = False, dropout: float = 0.5, activation: str = "relu",
         small_input: bool | None = None) -> VGG:
    """torchvision's VGG adapted to the images; `small_input=None` decides by size."""
    c, h, w = input_shape
    small = is_small_input(h, w, small_input)
    # Built on the meta device (no memory, no initialisation), then materialised: building the ImageNet
    # classifier for real takes seconds, wasted when the small variant replaces it.
    with torch.device("meta"):
        model = (builder_bn if batch_norm else builder)(weights=None, num_classes=num_classes, dropout=dropout)
        if small:  # images under 32 px are padded up to 32 px
            padding = tuple(1 + max(0, math.ceil((MIN_SIZE - s) / 2)) for s in (h, w))
            model.features[0] = nn.Conv2d(c, 64, kernel_size=3, padding=padding)
            model.avgpool = nn.AdaptiveAvgPool2d(1)
            model.classifier = nn.Sequential(
                nn.Linear(512, SMALL_HIDDEN), nn.ReLU(inplace=True), nn.Dropout(dropout),
                nn.Linear(SMALL_HIDDEN, SMALL_HIDDEN), nn.ReLU(inplace=True), nn.Dropout(dropout),
                nn.Linear(SMALL_HIDDEN, num_classes),
            )
        elif c != 3:
            model.features[0] = nn.Conv2d(c, 64, kernel_size=3, padding=1)
    model.to_empty(device=torch.get_default_device())  # CPU unless set otherwise
    _init_like_torchvision(model)
    replace_relu([model.features, model.classifier], activation)
    model.activation = activation  # read by dlcourse.init for Kaiming's gain
    return model


def vgg11(input_shape, num_classes: int, **options) -> VGG:
    """VGG-11 (configuration A): 8 convolutions."""
    return _vgg(models.vgg11, models.vgg11_bn, input_shape, num_classes, **options)


def vgg13(input_shape, num_classes: int, **options) -> VGG:
    """VGG-13 (configuration B): 10 convolutions."""
    return _vgg(models.vgg13, models.vgg13_bn, input_shape, num_classes, **options)


def vgg16(input_shape, num_classes: int, **options) -> VGG:
    """VGG-16 (configuration D): 13 convolutions."""
    return _vgg(models.vgg16, models.vgg16_bn, input_shape, num_classes, **options)


def vgg19(input_shape, num_classes: int, **options) -> VGG:
    """VGG-19 (configuration E): 16 convolutions."""
    return _vgg(models.vgg19, models.vgg19_bn, input_shape, num_classes, **options)
