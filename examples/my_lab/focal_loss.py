"""Focal loss (Lin et al., 2017, "Focal Loss for Dense Object Detection").

    FL = -(1 - p_t)^gamma * log(p_t),   p_t = softmax(logits)[target]

It down-weights examples the model already gets right (p_t near 1), so training concentrates on
the hard ones. gamma=0 is plain cross-entropy. Named in the config as loss._target_ with
loss.kwargs.gamma; dlcourse calls forward(logits, target) and needs one number back.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class FocalLoss(nn.Module):
    def __init__(self, gamma: float = 2.0):
        super().__init__()
        if gamma < 0:
            raise ValueError(f"gamma must be >= 0, got {gamma}")
        self.gamma = gamma

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        log_p = F.log_softmax(logits, dim=1).gather(1, target[:, None]).squeeze(1)  # log p_t per sample
        weight = (1 - log_p.exp()) ** self.gamma  # (1 - p_t)^gamma; 0^0 = 1 gives cross-entropy
        return -(weight * log_p).mean()
