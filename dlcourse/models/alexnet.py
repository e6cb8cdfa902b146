"""AlexNet (Krizhevsky et al., 2012) on torchvision's builder, so torchvision weights load at 224x224 RGB.

The 11x11 stride-4 first convolution and three poolings need 63 px or more. Images under 64 px get a
small-image variant: a 3x3 stride-1 first convolution (28 px -> 13 -> 6 -> 2 after the poolings), the last
feature map averaged to 1x1, and a 256 -> 512 -> 512 classifier (same layout, same dropout).
"""
from __future__ import annotations

import torch
from torch import nn
from torchvision import models
from torchvision.models import AlexNet

from dlcourse.models.layers import is_small_input, replace_relu

SMALL_HIDDEN = 512  # width of the small variant's hidden layers


def alexnet(input_shape, num_classes: int, *, dropout: float = 0.5, activation: str = "relu",
            small_input: bool | None = None) -> AlexNet:
    """torchvision's AlexNet adapted to the images; `small_input=None` decides by size."""
    c, h, w = input_shape
    small = is_small_input(h, w, small_input)
    # Built on the meta device (no memory, no initialisation), then materialised: building the ImageNet
    # classifier for real takes a second, wasted when the small variant replaces it.
    with torch.device("meta"):
        model = models.alexnet(weights=None, num_classes=num_classes, dropout=dropout)
        if small:
            model.features[0] = nn.Conv2d(c, 64, kernel_size=3, stride=1, padding=1)
            model.avgpool = nn.AdaptiveAvgPool2d(1)
            model.classifier = nn.Sequential(
                nn.Dropout(dropout), nn.Linear(256, SMALL_HIDDEN), nn.ReLU(inplace=True),
                nn.Dropout(dropout), nn.Linear(SMALL_HIDDEN, SMALL_HIDDEN), nn.ReLU(inplace=True),
                nn.Linear(SMALL_HIDDEN, num_classes),
            )
        elif c != 3:
            model.features[0] = nn.Conv2d(c, 64, kernel_size=11, stride=4, padding=2)
    model.to_empty(device=torch.get_default_device())  # CPU unless set otherwise
    for m in model.modules():  # torchvision's AlexNet keeps PyTorch's default initialisation
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            m.reset_parameters()
    replace_relu([model.features, model.classifier], activation)
    model.activation = activation  # read by dlcourse.init for Kaiming's gain
    return model
