"""A trained run rebuilt from its checkpoint alone: the model, its task, classes, input shape and the
input normalisation the run trained with (stored in the checkpoint: the dataset's per-channel or
per-pixel statistics, or those of pretrained weights), and on request its data. The one way
`scripts/evaluate.py`, `scripts/predict.py` and `scripts/visualize.py` see a run, so they agree."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
from omegaconf import DictConfig, OmegaConf

from dlcourse import checkpoint
from dlcourse.errors import CheckpointError
from dlcourse.usercode import UserCodeError, missing_code_hint
from dlcourse.tasks import Task


def checkpoint_path(path: Path | str) -> Path:
    """A run directory (its best.pt, else last.pt) or a checkpoint file."""
    path = Path(path)
    if path.is_dir():
        for name in ("best.pt", "last.pt"):
            if (path / "checkpoints" / name).is_file():
                return path / "checkpoints" / name
        raise CheckpointError(f"{path} holds no checkpoints/best.pt or last.pt: give a run directory of "
                              "dlcourse (outputs/<date>/<time>) or a checkpoint file.")
    if not path.exists():
        raise CheckpointError(f"{path} does not exist: give a run directory of dlcourse (outputs/<date>/<time>, "
                              "the folder that holds checkpoints/) or a checkpoint file (.pt) written by a run.")
    return path


@dataclass
class Rebuilt:
    """A run's model (eval mode), what it was trained on, and (with `data=True`) its loaders."""

    model: torch.nn.Module
    task: Task
    classes: list[str]
    image_shape: tuple[int, ...]  # [C, H, W] of images, [D] of feature vectors
    mean: torch.Tensor  # shaped to broadcast over a batch [N, *image_shape]
    std: torch.Tensor
    config: DictConfig
    path: Path
    data: object = None  # dlcourse.data.Data

    @property
    def images(self) -> bool:
        return len(self.image_shape) == 3

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def run_dir(self) -> Path:
        return self.path.parent.parent

    def inputs(self, raw: torch.Tensor) -> torch.Tensor:
        """Raw inputs [N, *image_shape] (images in [0, 1], features as they are) as the model's inputs."""
        return (raw.to(self.device, torch.float32) - self.mean) / self.std

    def raw(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.std + self.mean

    def class_logits(self, out: torch.Tensor) -> torch.Tensor:
        """One score per class, whose softmax is the class probabilities: a binary run's one logit l
        becomes [-l/2, l/2] (softmax [1 - sigmoid(l), sigmoid(l)], argmax = the prediction l > 0, and
        each class's score rises with the evidence for that class)."""
        return out * torch.tensor([-0.5, 0.5], device=out.device) if self.task.name == "binary" else out

    def class_scores(self, x: torch.Tensor) -> torch.Tensor:
        """`class_logits` of the model's outputs for the inputs x."""
        return self.class_logits(self.model(x))


def stored_statistics(ckpt: dict, image_shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """The checkpoint's normalisation as tensors [C, 1, 1] (per channel), [C, H, W] (per pixel) or
    [D] (per feature of vectors)."""
    norm = ckpt.get("normalization")
    if not norm:
        raise CheckpointError(f"the checkpoint stores no input normalisation (no 'normalization' entry), so its "
                              "inputs cannot be prepared as in training. Use a checkpoint written by a dlcourse run.")
    mean, std = torch.tensor(norm["mean"], dtype=torch.float32), torch.tensor(norm["std"], dtype=torch.float32)
    if len(image_shape) == 3:
        shape = image_shape if mean.numel() == math.prod(image_shape) and mean.numel() != image_shape[0] \
            else (-1, 1, 1)
        mean, std = mean.view(shape), std.view(shape)
    return mean, std


def _given_model(cfg: DictConfig, model: Optional[torch.nn.Module], path: Path, device) -> torch.nn.Module:
    """A run of a model handed in from Python (`model.given`) is rebuilt into a new instance of its class."""
    given = cfg.model.get("given") or cfg.model.get("_target_") or cfg.model.name
    if model is None:
        raise CheckpointError(f"{path}: this run trained a model handed in from Python ({given}), which its config "
                              f"cannot build. Give a new instance of that class: dlcourse.load(run_dir, "
                              f"model={cfg.model.name}(...)) (the weights come from the checkpoint).")
    return model.to(device)


def rebuild(path: Path | str, device: str = "cpu", data: bool = True, data_root: Optional[str] = None,
            batch_size: Optional[int] = None, model: Optional[torch.nn.Module] = None) -> Rebuilt:
    """Rebuild the run of `path` (a run directory or a checkpoint file) from its stored config; with
    `data`, its splits too, normalised with the stored statistics (the very inputs it was tested on).
    `model`: an instance to load the weights into, for runs of a model handed in from Python."""
    from dlcourse.builders import dataset_info, make_data, make_model, resolve_task, select_device
    from dlcourse.data import DatasetInfo

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
    try:  # the user's code named by the stored config is checked (and refused) before anything runs
        if cfg.dataset.name in ("imagefolder",):  # its class count is in the checkpoint, the folder may be gone
            info = DatasetInfo(tuple(ckpt["image_shape"]), len(ckpt["classes"]))
        else:
            info = dataset_info(cfg)
        task = resolve_task(cfg, info)
        model = _given_model(cfg, model, path, dev) if model is not None or cfg.model.get("given") else \
            make_model(cfg, info, dev, task)[0]
    except UserCodeError as e:
        target = next((str(n) for n in (cfg.model.get("_target_"), cfg.dataset.get("_target_"), cfg.loss.get("_target_"))
                       if n and f"={n}:" in str(e)), "")
        hint = missing_code_hint(ckpt.get("code_dirs") or [], target) if "there is no module" in str(e) and target else ""
        raise UserCodeError(f"{path}: {e}{hint}") from None
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise CheckpointError(f"{path}: its weights do not fit the model its config describes ({first}). The "
                              "file was changed, or written by another version of dlcourse.") from None
    model.eval()
    shape = tuple(ckpt.get("image_shape") or info.image_shape)
    mean, std = stored_statistics(ckpt, shape)
    run = Rebuilt(model, task, list(ckpt.get("classes") or []), shape, mean[None].to(dev), std[None].to(dev),
                  cfg, path)
    if data:
        run.data, _ = make_data(cfg, dataset_info(cfg), dev, stats=(mean.tolist(), std.tolist()))
        run.classes = run.classes or list(run.data.classes)
    return run
