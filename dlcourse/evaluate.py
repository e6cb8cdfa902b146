"""Ask a trained model questions: a checkpoint -> metrics on a split and figures, per task
(`dlcourse/eval_tasks.py`): classification and binary runs get a per-class report, confusion matrix,
calibration and their most confident mistakes (binary also ROC and precision-recall curves);
regression runs MSE, MAE, R², residual and fit plots (`scripts/evaluate.py`).

The checkpoint stores its config, classes and normalisation, so the model and the very split it
was validated and tested on are rebuilt from it; only where the data lives, the batch size and
the device may be overridden. Metrics come from scikit-learn."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F

from dlcourse.errors import ConfigError
from dlcourse.eval_tasks import REPORTS, calibration, metrics  # noqa: F401 (calibration, metrics: re-exported)
from dlcourse.rebuild import Rebuilt, rebuild

SPLITS = ("test", "val", "train")


def load(path: Path | str, data_root: Optional[str] = None, batch_size: Optional[int] = None,
         device: str = "cpu", model: Optional[torch.nn.Module] = None) -> Rebuilt:
    """The checkpoint's model and data, rebuilt from its stored config and normalisation."""
    return rebuild(path, device, data=True, data_root=data_root, batch_size=batch_size, model=model)


@torch.inference_mode()
def outputs(model: torch.nn.Module, loader, flip: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """The model's raw outputs [N, K] and the targets over `loader` (`flip`: of the horizontally
    flipped images)."""
    outs, targets = [], []
    for x, y in loader:
        outs.append(model(x.flip(-1) if flip else x).float().cpu())
        targets.append(y.cpu())
    return torch.cat(outs), torch.cat(targets)


def evaluate(path: Path | str, split: str = "test", tta: Optional[str] = None, data_root: Optional[str] = None,
             batch_size: Optional[int] = None, device: str = "cpu", errors: int = 32,
             model: Optional[torch.nn.Module] = None, loss=None) -> tuple[dict, Path]:
    """Evaluate a checkpoint on `split`; writes `<run>/eval/<split>/` and returns (metrics, folder).
    The loss is the run's own evaluation loss (with `tta`, the negative log-likelihood of the
    averaged probabilities). `model`, `loss`: the objects of a run that was handed them from Python."""
    from dlcourse.builders import make_losses

    if split not in SPLITS:
        raise ConfigError(f"--split {split}: choose one of {', '.join(SPLITS)}.")
    if tta not in (None, "flip"):
        raise ConfigError(f"--tta {tta}: the test-time augmentation available is 'flip'.")
    run = load(path, data_root, batch_size, device, model)
    if tta and (not run.images or run.task.name == "regression"):
        raise ConfigError(f"--tta {tta} flips images: this run's inputs are {run.task.name} vectors of "
                          f"{run.image_shape[0]} features. Evaluate it without --tta.")
    loader = getattr(run.data, split)
    if loader is None:
        raise ConfigError(f"The run has no {split} split (dataset.val_split=0?): use --split test.")
    if split == "train":  # the training images as evaluated: in order, without augmentation
        if not hasattr(loader, "images"):
            raise ConfigError("--split train is available for in-memory datasets; image folders: use val or test.")
        loader = type(loader)(loader.images, loader.labels, loader.batch_size, device=loader.device,
                              normalize=loader.normalize)
    report = REPORTS[run.task.name]
    out, targets = outputs(run.model, loader)
    scores = report.probabilities(run, out)
    if tta == "flip":
        scores = (scores + report.probabilities(run, outputs(run.model, loader, flip=True)[0])) / 2
    result = report.metrics(run, scores, targets)
    if tta:
        result["loss"] = float(F.nll_loss(scores.clamp_min(1e-12).log(), targets))
    else:
        eval_loss = loss if loss is not None else make_losses(run.config, run.task)[1]
        result["loss"] = float(eval_loss(out, targets))
    result.update({"split": split, "tta": tta, "checkpoint": str(run.path), "task": run.task.name})
    folder = run.run_dir / "eval" / split
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
    figures = report.files(run, result, scores, targets, loader, folder, split, errors)
    _to_tensorboard(run.run_dir, split, result, figures, report.keys)
    return result, folder


def _to_tensorboard(run_dir: Path, split: str, result: dict, figures: list[Path], keys: tuple[str, ...]) -> None:
    from dlcourse.runlog import tensorboard_pictures

    tensorboard_pictures(run_dir / "eval" / split, {f"eval/{split}/{png.stem}": png for png in figures},
                         {f"eval/{split}/{k}": f"{result[k]:.4f}" for k in keys if result.get(k) is not None})
