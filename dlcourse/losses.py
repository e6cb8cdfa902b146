"""Loss functions for classification, by textbook name.

All take the model's raw outputs (logits) and integer class labels; all but `hinge` also take
class probabilities (the soft targets of mixup and cutmix). `mse` and `mae` compare the softmax
probabilities with one-hot targets (smoothed if `label_smoothing` > 0), the regression view of
classification that courses contrast with cross-entropy. Label smoothing is a training-time
regularizer: validation and test losses use the unsmoothed criterion (`build_loss(..., 0)`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dlcourse.errors import ConfigError


class NLLOfLogSoftmax(nn.Module):
    """Negative log-likelihood of log_softmax(logits): cross-entropy written as its two steps."""

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        log_p = F.log_softmax(logits, dim=1)
        if target.is_floating_point():  # class probabilities: the expected negative log-likelihood
            return -(target * log_p).sum(1).mean()
        return F.nll_loss(log_p, target)


class ProbabilityRegression(nn.Module):
    """A regression loss (MSE or L1) between softmax(logits) and one-hot targets."""

    def __init__(self, kind: str, num_classes: int, label_smoothing: float = 0.0):
        super().__init__()
        self.loss = F.mse_loss if kind == "mse" else F.l1_loss
        self.num_classes = num_classes
        self.label_smoothing = label_smoothing

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if target.is_floating_point():  # already class probabilities (mixup / cutmix)
            onehot = target.to(logits.dtype)
        else:
            onehot = F.one_hot(target, self.num_classes).to(logits.dtype)
        if self.label_smoothing:
            onehot = onehot * (1 - self.label_smoothing) + self.label_smoothing / self.num_classes
        return self.loss(F.softmax(logits, dim=1), onehot)


LOSSES = ("cross_entropy", "nll", "mse", "mae", "hinge")
SOFT_TARGETS = ("cross_entropy", "nll", "mse", "mae")  # losses that take class probabilities as targets


def build_loss(name: str, num_classes: int, label_smoothing: float = 0.0) -> nn.Module:
    """The criterion `name` (configs/loss/); raises ConfigError for an unknown name or option."""
    if name == "cross_entropy":
        return nn.CrossEntropyLoss(label_smoothing=label_smoothing)
    if name in ("mse", "mae"):
        return ProbabilityRegression(name, num_classes, label_smoothing)
    if name in ("nll", "hinge"):
        if label_smoothing:
            raise ConfigError(f"loss.label_smoothing={label_smoothing} is not supported by loss={name}: "
                              "use loss=cross_entropy (or mse/mae) with label smoothing, or set it to 0.")
        return NLLOfLogSoftmax() if name == "nll" else nn.MultiMarginLoss()
    raise ConfigError(f"loss.name={name!r} is not known: choose one of {', '.join(LOSSES)}.")
