"""The student's CNN: two conv blocks (features) and a small MLP (classifier).

dlcourse builds it from model/student_cnn.yaml and passes `input_shape` (C, H, W) and
`num_outputs` (the number of classes) itself; the other arguments come from the config.
The last nn.Linear is the head: finetune.head=reset (transfer learning) replaces that one.
"""
from __future__ import annotations

import torch
from torch import nn


class StudentCNN(nn.Module):
    def __init__(self, input_shape, num_outputs, channels=(16, 32), hidden=64, dropout=0.0):
        super().__init__()
        blocks, c_in = [], input_shape[0]
        for c_out in channels:  # each block: conv 3x3 -> ReLU -> halve the resolution
            blocks += [nn.Conv2d(c_in, c_out, kernel_size=3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
            c_in = c_out
        self.features = nn.Sequential(*blocks)
        side_h, side_w = (s // 2 ** len(channels) for s in input_shape[1:])
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c_in * side_h * side_w, hidden), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(hidden, num_outputs),  # the head: one logit per class
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))
