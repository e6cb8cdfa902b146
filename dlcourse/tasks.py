"""What is predicted, and how it is scored: `classification` (one logit per class, softmax),
`binary` (one logit, sigmoid, accuracy at 0) and `regression` (real-valued outputs of any
dimension). The engine, losses, checks and figures ask the task; none of them branches on it.

Per-batch statistics are sums kept on the device (no host sync per step); `metrics` turns the
summed statistics of an epoch or a split into the logged numbers.
"""
from __future__ import annotations

from typing import Optional

import torch

from dlcourse.errors import ConfigError

TOP5_MIN_CLASSES = 10  # top-5 accuracy is logged for datasets with at least this many classes


def lower_is_better(metric: str) -> bool:
    """Whether a smaller value of `metric` is better (losses and errors) — the one rule for best.pt,
    early stopping, the plateau schedule, sweep reports and searches."""
    return any(word in metric for word in ("loss", "mse", "mae"))


class Task:
    name = ""
    default_loss = ""
    losses: tuple[str, ...] = ()
    train_keys: tuple[str, ...] = ()  # per-step statistics (besides the loss) logged as train/<key>

    def __init__(self, num_classes: int):
        self.num_classes = num_classes  # classes, or the target dimension for regression

    @property
    def num_outputs(self) -> int:
        return self.num_classes

    def eval_keys(self) -> tuple[str, ...]:
        return self.train_keys

    def default_monitor(self, has_val: bool) -> str:
        """Validation accuracy; without a validation split the training loss (it keeps improving
        after the training accuracy reaches 100 %)."""
        return f"val/{self.train_keys[0]}" if has_val else "train/loss"

    def monitorable(self, has_val: bool) -> list[str]:
        names = ["train/loss", *(f"train/{k}" for k in self.train_keys)]
        if has_val:
            names += ["val/loss", *(f"val/{k}" for k in self.eval_keys())]
        return names

    def train_stats(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Sums over the batch, one per `train_keys`."""
        raise NotImplementedError

    def eval_stats(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.train_stats(out, y)

    def metrics(self, sums: list[float], n: float, prefix: str, train: bool = False) -> dict[str, float]:
        keys = self.train_keys if train else self.eval_keys()
        return {f"{prefix}/{k}": s / n for k, s in zip(keys, sums)}

    def predict(self, out: torch.Tensor) -> torch.Tensor:
        """Class indices (or values, for regression) from the model's outputs."""
        raise NotImplementedError


class Classification(Task):
    name, default_loss = "classification", "cross_entropy"
    losses = ("cross_entropy", "nll", "mse", "mae", "hinge")
    train_keys = ("acc",)

    def eval_keys(self) -> tuple[str, ...]:
        return ("acc", "acc5") if self.num_classes >= TOP5_MIN_CLASSES else ("acc",)

    def predict(self, out: torch.Tensor) -> torch.Tensor:
        return out.argmax(1)

    def train_stats(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (out.argmax(1) == y).sum().float().view(1)

    def eval_stats(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        correct = self.train_stats(out, y)
        if self.num_classes < TOP5_MIN_CLASSES:
            return correct
        top5 = (out.topk(5, dim=1).indices == y[:, None]).any(1).sum().float().view(1)
        return torch.cat([correct, top5])


class Binary(Task):
    """Two classes from one logit: p(class 1) = sigmoid(logit); the prediction is logit > 0."""

    name, default_loss = "binary", "bce"
    losses = ("bce", "hinge", "perceptron")
    train_keys = ("acc",)

    @property
    def num_outputs(self) -> int:
        return 1

    def predict(self, out: torch.Tensor) -> torch.Tensor:
        return (out.view(-1) > 0).long()

    def train_stats(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (self.predict(out) == y).sum().float().view(1)


class Regression(Task):
    """Real-valued targets [N, D]; r2 is averaged over the D outputs (scikit-learn's r2_score)."""

    name, default_loss = "regression", "mse"
    losses = ("mse", "mae", "huber")
    train_keys = ("mse",)

    def eval_keys(self) -> tuple[str, ...]:
        return ("mse", "mae", "r2")

    def default_monitor(self, has_val: bool) -> str:
        return f"{'val' if has_val else 'train'}/loss"

    def predict(self, out: torch.Tensor) -> torch.Tensor:
        return out

    def train_stats(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (out.detach().float() - y).square().mean(1).sum().view(1)

    def eval_stats(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        err = out.float() - y
        # per output: squared and absolute errors, and the sums that give the targets' variance
        return torch.cat([err.square().sum(0), err.abs().sum(0), y.sum(0), y.square().sum(0)])

    def metrics(self, sums: list[float], n: float, prefix: str, train: bool = False) -> dict[str, float]:
        if train:
            return super().metrics(sums, n, prefix, train)
        d = len(sums) // 4
        sse, sae, sy, syy = (sums[i * d:(i + 1) * d] for i in range(4))
        r2 = [1 - e / max(q - s * s / n, 1e-12) for e, s, q in zip(sse, sy, syy)]
        return {f"{prefix}/mse": sum(sse) / (n * d), f"{prefix}/mae": sum(sae) / (n * d),
                f"{prefix}/r2": sum(r2) / d}


TASKS = {"classification": Classification, "binary": Binary, "regression": Regression}
# which tasks a dataset of each kind can be trained as (two classes can be one logit or two)
COMPATIBLE = {"classification": ("classification",), "binary": ("binary", "classification"),
              "regression": ("regression",)}


def make_task(dataset_task: str, num_classes: int, requested: Optional[str] = None, dataset: str = "") -> Task:
    """The task of a run: `requested` (the `task` key) if the dataset allows it, else the dataset's own."""
    name = requested or dataset_task
    if name not in TASKS:
        raise ConfigError(f"task={name!r} is not known: choose one of {', '.join(TASKS)} (or leave it null for "
                          "the dataset's own task).")
    if dataset_task == "classification" and name == "binary" and num_classes == 2:
        return Binary(2)
    if name not in COMPATIBLE[dataset_task]:
        allowed = ", ".join(COMPATIBLE[dataset_task])
        raise ConfigError(f"task={name} does not fit dataset={dataset}, a {dataset_task} dataset "
                          f"({num_classes} {'outputs' if dataset_task == 'regression' else 'classes'}). "
                          f"Allowed here: {allowed}; leave task unset to use the dataset's own.")
    return TASKS[name](num_classes)
