"""Loss functions by textbook name, for each task (dlcourse/tasks.py).

Classification losses all take the model's raw outputs (logits) and integer class labels; all but `hinge` also take
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


class BinaryCrossEntropy(nn.Module):
    """Binary cross-entropy of one logit per sample against 0/1 labels (BCE with logits)."""

    def forward(self, logit: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(logit.view(-1), target.to(logit.dtype))


class BinaryHinge(nn.Module):
    """The SVM hinge loss max(0, 1 - s * logit) with s = +1 for class 1 and -1 for class 0."""

    def forward(self, logit: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        sign = target.to(logit.dtype) * 2 - 1
        return F.relu(1 - sign * logit.view(-1)).mean()


class PerceptronCriterion(nn.Module):
    """The loss whose gradient step is Rosenblatt's learning rule. With the Heaviside output
    y = [w·x + b > 0] and the desired output d, L = -(d - y)(w·x + b) has dL/dw = -(d - y) x, so plain
    SGD with learning rate η makes w <- w + η (d - y) x: a change only on mistakes. With
    `trainer.batch_size=1` this is the textbook one-sample-at-a-time rule (a batch averages it)."""

    def forward(self, logit: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        net = logit.view(-1)
        error = target.to(net.dtype) - (net.detach() > 0).to(net.dtype)  # d - y, a constant
        return -(error * net).mean()


LOSSES = {"classification": ("cross_entropy", "nll", "mse", "mae", "hinge"),
          "binary": ("bce", "hinge", "perceptron"),
          "regression": ("mse", "mae", "huber")}
ALL_LOSSES = ("auto", *dict.fromkeys(n for names in LOSSES.values() for n in names))
SOFT_TARGETS = ("cross_entropy", "nll", "mse", "mae")  # losses that take class probabilities as targets


def build_loss(name: str, num_classes: int, label_smoothing: float = 0.0, task: str = "classification") -> nn.Module:
    """The criterion `name` (configs/loss/) for `task`; raises ConfigError for a name the task has
    not, or an unsupported option."""
    if name not in LOSSES[task]:
        fits = [t for t, names in LOSSES.items() if name in names]
        why = f"it is a {' / '.join(fits)} loss" if fits else "it is not a known loss"
        raise ConfigError(f"loss={name} cannot train this {task} task ({why}). Losses for {task}: "
                          f"{', '.join(LOSSES[task])}; or leave loss=auto, the task's own.")
    if label_smoothing and task != "classification":
        raise ConfigError(f"loss.label_smoothing={label_smoothing} smooths class labels: a {task} task has none. "
                          "Set loss.label_smoothing=0.")
    if task == "binary":
        return {"bce": BinaryCrossEntropy, "hinge": BinaryHinge, "perceptron": PerceptronCriterion}[name]()
    if task == "regression":
        return {"mse": nn.MSELoss, "mae": nn.L1Loss, "huber": nn.HuberLoss}[name]()
    if name == "cross_entropy":
        return nn.CrossEntropyLoss(label_smoothing=label_smoothing)
    if name in ("mse", "mae"):
        return ProbabilityRegression(name, num_classes, label_smoothing)
    if name in ("nll", "hinge"):
        if label_smoothing:
            raise ConfigError(f"loss.label_smoothing={label_smoothing} is not supported by loss={name}: "
                              "use loss=cross_entropy (or mse/mae) with label smoothing, or set it to 0.")
    return NLLOfLogSoftmax() if name == "nll" else nn.MultiMarginLoss()


class FunctionLoss(nn.Module):
    """A loss function of the user's, `fn(output, target) -> scalar`, as a module."""

    def __init__(self, fn, target: str, kwargs: dict):
        super().__init__()
        self.fn, self.target, self.kwargs = fn, target, kwargs

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.fn(output, target, **self.kwargs)

    def extra_repr(self) -> str:
        return self.target


class CheckedLoss(nn.Module):
    """The user's loss, checked on its first call: it must return a scalar tensor (one paragraph
    otherwise, naming the key); afterwards it is called as it is."""

    def __init__(self, loss: nn.Module, target: str):
        super().__init__()
        self.loss, self.target, self.checked = loss, target, False

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        value = self.loss(output, target)
        if not self.checked:
            if not isinstance(value, torch.Tensor) or value.dim() != 0:
                got = f"a tensor of shape {tuple(value.shape)}" if isinstance(value, torch.Tensor) else type(value).__name__
                raise ConfigError(f"loss._target_={self.target} returned {got}; a loss must return one number (a "
                                  "0-dim tensor), e.g. the mean over the batch: return loss.mean().")
            self.checked = True
        return value


def build_user_loss(target: str, kwargs: dict, num_classes: int, task: str) -> nn.Module:
    """The user's `loss._target_`: an nn.Module class (built with `kwargs`, plus `num_classes` / `task`
    where its signature names them) or a function (output, target) -> scalar (called with `kwargs`)."""
    import inspect

    from dlcourse.usercode import UserCodeError, call, locate, unknown_arguments

    key = "loss._target_"
    found = locate(target, key, "loss")
    if inspect.isclass(found):
        loss = call(found, key, target, kwargs, {"num_classes": num_classes, "task": task})
    else:
        unknown, names = unknown_arguments(found, kwargs)
        if unknown:
            raise UserCodeError(f"{target} takes no argument {', '.join(map(repr, unknown))} (from "
                                f"{', '.join('loss.kwargs.' + u for u in unknown)}). It accepts: "
                                f"{', '.join(sorted(names)) or 'only (output, target)'}.")
        loss = FunctionLoss(found, target, kwargs)
    return CheckedLoss(loss, target)
