"""What a run reports: TensorBoard scalars, images and hparams; console progress and its copy in
train.log; metrics.json."""
from __future__ import annotations

import csv
import json
import logging
import math
import struct
import sys
from pathlib import Path
from contextlib import contextmanager
from typing import Any, Iterable, Optional

import torch
from tqdm.auto import tqdm


def in_notebook() -> bool:
    """A Jupyter kernel with ipywidgets: tqdm.auto draws one widget bar per epoch (elsewhere without a
    terminal, e.g. a log file, only the epoch lines are printed)."""
    shell = sys.modules.get("IPython") and sys.modules["IPython"].get_ipython()
    if shell is None or type(shell).__name__ != "ZMQInteractiveShell":
        return False
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}; lists become strings (TensorBoard hparams take scalars only)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        elif v is None or isinstance(v, (list, tuple)):
            out[key] = str(v)
        else:
            out[key] = v
    return out


def format_metrics(metrics: dict[str, float]) -> str:
    parts = []
    for k, v in metrics.items():
        if isinstance(v, float):
            parts.append(f"{k} {v:.4f}" if abs(v) < 1e4 else f"{k} {v:.3g}")
        else:
            parts.append(f"{k} {v}")
    return "  ".join(parts)


class _Nothing:
    """Stands in for the TensorBoard writer where nothing is written."""

    def __getattr__(self, name: str) -> "_Nothing":
        return self

    def __call__(self, *args, **kwargs) -> "_Nothing":
        return self


@contextmanager
def collect_warnings():
    """The messages dlcourse's modules log meanwhile, as a list of lines (for train.log)."""
    lines: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())
    package = logging.getLogger("dlcourse")
    package.addHandler(handler)
    try:
        yield lines
    finally:
        package.removeHandler(handler)


class RunLogger:
    """TensorBoard writer and console output of one run (nothing here syncs the device per step)."""

    def __init__(self, run_dir: Path, progress_bar: bool = True, earlier: Iterable[str] = (), enabled: bool = True):
        from torch.utils.tensorboard import SummaryWriter

        self.run_dir, self.enabled = Path(run_dir), enabled  # disabled: a data-parallel rank other than 0
        # event files in the run directory itself, so TensorBoard names each run by its directory
        self.writer = SummaryWriter(log_dir=str(self.run_dir)) if enabled else _Nothing()
        self.writer.add_custom_scalars(CHARTS)
        self.progress_bar = enabled and progress_bar and (sys.stderr.isatty() or in_notebook())
        self._bar: Optional[tqdm] = None
        # train.log: every console line of the run, and the warnings of dlcourse's modules
        self._file = logging.FileHandler(self.run_dir / "train.log", encoding="utf-8") if enabled else logging.NullHandler()
        self._file.setFormatter(logging.Formatter("%(message)s"))
        self._package = logging.getLogger("dlcourse")
        self._package.addHandler(self._file)
        for line in earlier:  # warnings from before the run directory existed
            self.to_file(line)

    # console --------------------------------------------------------------------------------
    def info(self, message: str) -> None:
        if self.enabled:
            print(message, flush=True)
            self.to_file(message)

    def to_file(self, message: str) -> None:
        """A line for train.log only (e.g. the error that the command line prints itself)."""
        self._file.emit(logging.makeLogRecord({"msg": message, "levelno": logging.INFO}))

    def start_epoch(self, epoch: int, max_epochs: int, num_batches: int) -> None:
        if self.progress_bar:
            self._bar = tqdm(total=num_batches, desc=f"epoch {epoch}/{max_epochs}", leave=False,
                             dynamic_ncols=True, file=sys.stderr)

    def advance(self, steps: int, loss: Optional[float] = None) -> None:
        """Move the bar by `steps` batches (called once per log interval, not per step)."""
        if self._bar is not None:
            self._bar.update(steps)
            if loss is not None:
                self._bar.set_postfix(loss=f"{loss:.4f}", refresh=False)

    def end_epoch(self, epoch: int, max_epochs: int, metrics: dict[str, float], step: int, show: bool = True) -> None:
        """Log the epoch's metrics to TensorBoard; print its line when `show` (validated epochs)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        self.scalars({TAGS.get(k, k): v for k, v in metrics.items() if isinstance(v, (int, float)) and math.isfinite(v)},
                     epoch)
        if not show:
            return
        shown = {k: v for k, v in metrics.items() if k in SUMMARY_KEYS}
        self.info(f"epoch {epoch}/{max_epochs}  {format_metrics(shown)}")

    def history(self, rows: list[dict[str, Any]]) -> None:
        """history.csv: one row per epoch with every logged metric (rewritten whole, so a resumed
        run's file matches its checkpoint)."""
        if self.enabled:
            write_csv(self.run_dir / "history.csv", rows)

    # TensorBoard ----------------------------------------------------------------------------
    def scalars(self, values: dict[str, float], step: int) -> None:
        """Several scalars of one step as one event: TensorBoard reads them as separate curves, and one
        event a step instead of one a value is what keeps a 2,000-epoch toy run's logging cheap."""
        from tensorboard.compat.proto.summary_pb2 import Summary

        if values and self.enabled:
            summary = Summary(value=[Summary.Value(tag=k, simple_value=float(v)) for k, v in values.items()])
            self.writer.file_writer.add_summary(summary, step)

    def images(self, tag: str, images: torch.Tensor, nrow: int = 8) -> None:
        """A grid of images in [0, 1] (shape [N, C, H, W])."""
        from torchvision.utils import make_grid

        grid = make_grid(images.detach().float().cpu().clamp(0, 1), nrow=nrow, padding=1)
        self.writer.add_image(tag, grid, 0)

    def hparams(self, config: dict, overrides: Iterable[str], metric_tags: Iterable[str]) -> None:
        """An HParams-dashboard entry for this run: the model, dataset, optimizer, LR and batch size,
        plus every key set on the command line (what a sweep varies), and metrics that point at
        scalars the run already logged (no one-point charts)."""
        from torch.utils.tensorboard.summary import hparams as hparams_summary

        flat = flatten(config)
        chosen = {k: flat[k] for k in HPARAM_KEYS if k in flat}
        for override in overrides:
            key, _, value = override.partition("=")
            key = key.lstrip("+~")
            if not key.startswith("hydra.") and key != "resume":
                chosen[key] = flat.get(key, value)  # a group choice (optim=adam) keeps its name
        chosen = {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in chosen.items()}
        for summary in hparams_summary(chosen, {tag: 0.0 for tag in metric_tags}):
            self.writer.file_writer.add_summary(summary)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        self.writer.close()
        self._package.removeHandler(self._file)
        self._file.close()


def add_png(writer, tag: str, path: Path, step: int = 0) -> None:
    """A PNG file as a TensorBoard image, its bytes as they are (decoding and re-encoding it, as
    add_image would, measured 20-40 ms a figure)."""
    from tensorboard.compat.proto.summary_pb2 import Summary

    data = Path(path).read_bytes()
    width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk
    colour = {2: 3, 6: 4, 0: 1, 4: 2}.get(data[25], 4)  # PNG colour type -> channels
    image = Summary.Image(height=height, width=width, colorspace=colour, encoded_image_string=data)
    writer.file_writer.add_summary(Summary(value=[Summary.Value(tag=tag, image=image)]), step)


def tensorboard_pictures(log_dir: Path, pngs: dict[str, Path], texts: Optional[dict[str, str]] = None) -> None:
    """PNG files (by tag) and texts into a TensorBoard folder of their own, at step 0: what evaluate,
    visualize and the sweep report show beside the runs' curves."""
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(log_dir=str(log_dir)) as writer:
        for tag, text in (texts or {}).items():
            writer.add_text(tag, text, 0)
        for tag, png in pngs.items():
            add_png(writer, tag, png)


# TensorBoard tags of the epoch metrics that have no train/ or val/ prefix of their own, so that
# the dashboard shows two sections, train and val, and nothing before them.
TAGS = {"lr": "train/lr", "lr_backbone": "train/lr_backbone", "time_s": "train/epoch_time_s"}
HPARAM_KEYS = ("model.name", "dataset.name", "optim._target_", "optim.lr", "trainer.batch_size")
# Train and validation curves of one metric in one chart (TensorBoard's Custom Scalars tab).
CHARTS = {"train vs val": {"loss": ["Multiline", ["^train/loss$", "^val/loss$"]],
                           "accuracy": ["Multiline", ["^train/acc$", "^val/acc$"]]}}
SUMMARY_KEYS = ("train/loss", "train/acc", "train/mse", "val/loss", "val/acc", "val/acc5", "val/mse", "val/r2", "lr",
                "time_s")


def write_metrics(path: Path, metrics: dict[str, Any]) -> None:
    """metrics.json: the run's final numbers, for scripts and sweep reports."""
    clean = {k: (v if not isinstance(v, float) or math.isfinite(v) else str(v)) for k, v in metrics.items()}
    tmp = Path(path).with_suffix(".json.tmp")
    tmp.write_text(json.dumps(clean, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    """`rows` as a CSV file with a column for every key (in order of appearance), written atomically."""
    columns = list(dict.fromkeys(k for row in rows for k in row))
    tmp = Path(path).with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)


def write_hydra_files(cfg, run_dir: Path, overrides: Optional[list[str]]) -> None:
    """`.hydra/config.yaml` and `overrides.yaml` in the run directory, written once the config is known to be valid."""
    from omegaconf import OmegaConf

    hydra_dir = Path(run_dir) / ".hydra"
    hydra_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, hydra_dir / "config.yaml")
    if overrides is not None:
        OmegaConf.save(OmegaConf.create(list(overrides)), hydra_dir / "overrides.yaml")
