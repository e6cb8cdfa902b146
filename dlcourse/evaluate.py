"""Ask a trained model questions: a checkpoint -> metrics on a split, per-class report, confusion
matrix, its most confident mistakes and its calibration (`scripts/evaluate.py`).

The checkpoint stores its config, classes and normalisation, so the model and the very split it
was validated and tested on are rebuilt from it; only where the data lives, the batch size and
the device may be overridden. Metrics come from scikit-learn."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from dlcourse import checkpoint
from dlcourse.errors import CheckpointError, ConfigError

SPLITS = ("test", "val", "train")
CALIBRATION_BINS = 15


def checkpoint_path(path: Path | str) -> Path:
    """A run directory (its best.pt, else last.pt) or a checkpoint file."""
    path = Path(path)
    if path.is_dir():
        for name in ("best.pt", "last.pt"):
            if (path / "checkpoints" / name).is_file():
                return path / "checkpoints" / name
        raise CheckpointError(f"{path} holds no checkpoints/best.pt or last.pt: give a run directory of "
                              "dlcourse (outputs/<date>/<time>) or a checkpoint file.")
    return path


@dataclass
class Loaded:
    """A checkpoint's model, ready on `device`, and the loaders of its data."""

    model: torch.nn.Module
    data: object  # dlcourse.data.Data
    classes: list[str]
    config: dict
    path: Path


def load_model(path: Path | str, device: str = "cpu", data_root: Optional[str] = None,
               batch_size: Optional[int] = None) -> tuple[torch.nn.Module, dict, object, Path]:
    """The checkpoint's model (eval mode, on `device`), the checkpoint, its config and its path."""
    from dlcourse.builders import dataset_info, make_model, resolve_task, select_device

    path = checkpoint_path(path)
    ckpt = checkpoint.load(path)
    if "config" not in ckpt:
        raise CheckpointError(f"{path} has no stored config (it is not a dlcourse run checkpoint), so its "
                              "model and data cannot be rebuilt.")
    cfg = OmegaConf.create(ckpt["config"])
    cfg.trainer.device, cfg.trainer.strategy = device, "auto"
    if data_root is not None:
        cfg.dataset.root = data_root
    if batch_size is not None:
        cfg.trainer.eval_batch_size = batch_size
    dev = select_device(device)
    if cfg.dataset.name in ("imagefolder",):  # its class count is in the checkpoint, the folder may be gone
        from dlcourse.data import DatasetInfo
        info = DatasetInfo(tuple(ckpt["image_shape"]), len(ckpt["classes"]))
    else:
        info = dataset_info(cfg)
    model, _ = make_model(cfg, info, dev, resolve_task(cfg, info))
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise CheckpointError(f"{path}: its weights do not fit the model its config describes ({first}). The "
                              "file was changed, or written by another version of dlcourse.") from None
    model.eval()
    return model, ckpt, cfg, path


def load(path: Path | str, data_root: Optional[str] = None, batch_size: Optional[int] = None,
         device: str = "cpu") -> Loaded:
    """Rebuild the checkpoint's model and data from its stored config."""
    from dlcourse.builders import dataset_info, make_data

    model, ckpt, cfg, path = load_model(path, device, data_root, batch_size)
    data, _ = make_data(cfg, dataset_info(cfg), next(model.parameters()).device)
    return Loaded(model, data, list(ckpt.get("classes") or data.classes),
                  OmegaConf.to_container(cfg, resolve=True), path)


@torch.inference_mode()
def predictions(model: torch.nn.Module, loader, tta: Optional[str] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Class probabilities [N, C] and labels [N] over `loader` (`tta="flip"`: averaged with the
    horizontally flipped images)."""
    probs, labels = [], []
    for x, y in loader:
        p = F.softmax(model(x).float(), dim=1)
        if tta == "flip":
            p = (p + F.softmax(model(x.flip(-1)).float(), dim=1)) / 2
        probs.append(p.cpu())
        labels.append(y.cpu())
    return torch.cat(probs), torch.cat(labels)


def calibration(confidence: np.ndarray, correct: np.ndarray, bins: int = CALIBRATION_BINS) -> dict:
    """Reliability-diagram bins and the expected calibration error (|accuracy - confidence|
    weighted by the share of predictions in each equal-width confidence bin)."""
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    rows, ece = [], 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            acc, conf = correct[mask].mean(), confidence[mask].mean()
            ece += mask.mean() * abs(acc - conf)
            rows.append({"low": edges[b], "high": edges[b + 1], "count": int(mask.sum()),
                         "accuracy": float(acc), "confidence": float(conf)})
    return {"ece": float(ece), "bins": rows}


def metrics(probs: torch.Tensor, labels: torch.Tensor, classes: list[str]) -> dict:
    """Loss, accuracy, top-5, per-class precision/recall/F1 and their macro averages, the
    confusion matrix and the calibration, computed with scikit-learn."""
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support, top_k_accuracy_score

    y, p = labels.numpy(), probs.numpy()
    pred = p.argmax(1)
    ids = list(range(len(classes)))
    precision, recall, f1, support = precision_recall_fscore_support(y, pred, labels=ids, zero_division=0)
    out = {"loss": float(F.nll_loss(probs.clamp_min(1e-12).log(), labels)), "acc": float((pred == y).mean()),
           "n": int(len(y)),
           "precision_macro": float(precision.mean()), "recall_macro": float(recall.mean()),
           "f1_macro": float(f1.mean()),
           "per_class": {c: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                             "support": int(support[i])} for i, c in enumerate(classes)},
           "confusion_matrix": confusion_matrix(y, pred, labels=ids).tolist()}
    if len(classes) >= 10:
        out["acc5"] = float(top_k_accuracy_score(y, p, k=5, labels=ids))
    cal = calibration(p.max(1), (pred == y).astype(float))
    out["ece"], out["calibration"] = cal["ece"], cal["bins"]
    return out


def evaluate(path: Path | str, split: str = "test", tta: Optional[str] = None, data_root: Optional[str] = None,
             batch_size: Optional[int] = None, device: str = "cpu", errors: int = 32) -> tuple[dict, Path]:
    """Evaluate a checkpoint on `split`; writes `<run>/eval/<split>/` and returns (metrics, folder)."""
    from dlcourse.eval_figures import confusion_figure, errors_figure, reliability_figure

    if split not in SPLITS:
        raise ConfigError(f"--split {split}: choose one of {', '.join(SPLITS)}.")
    if tta not in (None, "flip"):
        raise ConfigError(f"--tta {tta}: the test-time augmentation available is 'flip'.")
    run = load(path, data_root, batch_size, device)
    loader = getattr(run.data, split)
    if loader is None:
        raise ConfigError(f"The run has no {split} split (dataset.val_split=0?): use --split test.")
    if split == "train":  # the training images as evaluated: in order, without augmentation
        if not hasattr(loader, "images"):
            raise ConfigError("--split train is available for in-memory datasets; image folders: use val or test.")
        loader = type(loader)(loader.images, loader.labels, loader.batch_size, device=loader.device,
                              normalize=loader.normalize)
    probs, labels = predictions(run.model, loader, tta)
    result = metrics(probs, labels, run.classes)
    result.update({"split": split, "tta": tta, "checkpoint": str(run.path)})
    out = run.path.parent.parent / "eval" / split
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
    matrix = np.array(result["confusion_matrix"])
    header = "true\\predicted," + ",".join(run.classes)
    rows = [f"{c}," + ",".join(map(str, r)) for c, r in zip(run.classes, matrix)]
    (out / "confusion_matrix.csv").write_text("\n".join([header, *rows]) + "\n")
    figures = [confusion_figure(matrix, run.classes, out / "confusion_matrix.png", split),
               reliability_figure(result["calibration"], result["ece"], out / "reliability.png", split)]
    wrong = _confident_errors(probs, labels, errors)
    if len(wrong):
        images = torch.stack([_image(loader, int(i)) for i in wrong])
        figures.append(errors_figure(images, labels[wrong], probs[wrong], run.classes, out / "errors.png", split))
    _to_tensorboard(run.path.parent.parent, split, result, figures)
    return result, out


def _confident_errors(probs: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    conf, pred = probs.max(1)
    wrong = (pred != labels).nonzero().flatten()
    return wrong[conf[wrong].argsort(descending=True)[:k]]


def _image(loader, index: int) -> torch.Tensor:
    """Image `index` of a loader in [0, 1], before normalisation."""
    if hasattr(loader, "images"):  # in memory: uint8
        return loader.images[index].to(torch.float32).div(255).cpu()
    return loader.loader.dataset[index][0].as_subclass(torch.Tensor)  # image folder: the evaluation transform


def _to_tensorboard(run_dir: Path, split: str, result: dict, figures: list[Path]) -> None:
    import matplotlib.image as mpimg
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(log_dir=str(run_dir / "eval" / split)) as writer:
        for key in ("acc", "loss", "acc5", "f1_macro", "ece"):
            if key in result:
                writer.add_text(f"eval/{split}/{key}", f"{result[key]:.4f}", 0)
        for png in figures:
            writer.add_image(f"eval/{split}/{png.stem}", mpimg.imread(png)[..., :3], 0, dataformats="HWC")
