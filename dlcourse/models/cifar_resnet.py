"""The CIFAR ResNets of He et al., 2016 ("Deep Residual Learning for Image Recognition", section 4.2).

A 3x3 convolution with `width` filters, then three stages of n basic blocks with width, 2*width and
4*width filters (the 2nd and 3rd start with stride 2), global average pooling and a linear layer:
depth = 6n + 2 (20, 32, 44, 56, 110). Shortcuts are the paper's option A, parameter free: identity, or
stride-2 subsampling with zero-padded extra channels, so ResNet-20 has 0.27 M parameters. `skip=False`
gives the "plain" net of the same layers without the shortcut additions.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dlcourse.errors import ConfigError
from dlcourse.models.layers import activation as make_activation


class ZeroPadShortcut(nn.Module):
    """Option A: keep every `stride`-th pixel and append zero channels up to `out_channels`."""

    def __init__(self, stride: int, out_channels: int):
        super().__init__()
        self.stride, self.out_channels = stride, out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, ::self.stride, ::self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.out_channels - x.shape[1]))


class BasicBlock(nn.Module):
    """conv3x3-BN-act-conv3x3-BN, plus the shortcut when `skip`, then act."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, activation: str, skip: bool):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.act1 = make_activation(activation)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.act2 = make_activation(activation)
        self.skip = skip
        changes = stride != 1 or in_channels != out_channels
        self.shortcut = ZeroPadShortcut(stride, out_channels) if skip and changes else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.act1(self.bn1(self.conv1(x)))))
        if self.skip:
            out = out + self.shortcut(x)
        return self.act2(out)


class CifarResNet(nn.Module):
    def __init__(self, in_channels: int, num_classes: int, blocks: int, width: int = 16, skip: bool = True,
                 activation: str = "relu", zero_init_residual: bool = False):
        super().__init__()
        self.activation = activation  # read by dlcourse.init for Kaiming's gain
        self.conv1 = nn.Conv2d(in_channels, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.act = make_activation(activation)
        stages, channels = [], width
        for i, out in enumerate((width, 2 * width, 4 * width)):
            layers = []
            for j in range(blocks):
                layers.append(BasicBlock(channels, out, 2 if i > 0 and j == 0 else 1, activation, skip))
                channels = out
            stages.append(nn.Sequential(*layers))
        self.layer1, self.layer2, self.layer3 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):  # as in the paper and torchvision
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        if zero_init_residual:  # each block starts as its shortcut (Goyal et al., 2017)
            for m in self.modules():
                if isinstance(m, BasicBlock):
                    nn.init.zeros_(m.bn2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def cifar_resnet(input_shape, num_classes: int, depth: int = 20, skip: bool = True, width: int = 16,
                 activation: str = "relu", zero_init_residual: bool = False) -> CifarResNet:
    """ResNet-`depth` (plain-`depth` with skip=False) for small images of any channel count."""
    if not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
        raise ConfigError(f"model.depth={depth!r} is not a CIFAR ResNet depth: it must be 6n + 2 with n >= 1 "
                          "(20, 32, 44, 56, 110, ...).")
    if not isinstance(width, int) or width < 1:
        raise ConfigError(f"model.width={width!r} must be a positive integer (the first stage's filters).")
    return CifarResNet(input_shape[0], num_classes, (depth - 2) // 6, width, skip, activation, zero_init_residual)
