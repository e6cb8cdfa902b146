"""Throughput of dlcourse's training loop against a bare PyTorch loop and a DataLoader + PIL pipeline.

The three pipelines train the same architecture from the same initial weights with the same
optimizer, batch size, precision and train/validation split. They run interleaved, epoch by epoch,
in one process, so that noise on a shared machine hits them alike; warm-up epochs are not counted.
"""
from __future__ import annotations

import contextlib
import os
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf

from dlcourse.builders import (compile_model, dataset_info, make_data, make_losses, make_model, make_optimizer, resolve_task,
                               make_schedule, make_settings, select_device)
from dlcourse.config import validate
from dlcourse.data import Data
from dlcourse.engine import Engine
from dlcourse.errors import ConfigError
from dlcourse.runlog import RunLogger


@dataclass
class Timing:
    """How to time: the training setup itself is a composed training config (`benchmarks.compose`)."""

    epochs: int = 3  # measured epochs
    warmup_epochs: int = 1
    dataloader: bool = True  # also time (c), the DataLoader + PIL pipeline
    workers: int = 2
    clock: str = "wall"  # wall | cpu (CPU time: steadier on a shared CPU machine)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Pipeline:
    """One way of training: a fresh model and optimizer, and an epoch of training and validation."""

    key, label = "", ""

    def __init__(self, cfg: DictConfig, timing: Timing, data: Data, device: torch.device, aug=None):
        self.cfg, self.timing, self.data, self.device, self.aug = cfg, timing, data, device, aug
        self.batch_size, self.eval_batch_size = cfg.trainer.batch_size, cfg.trainer.eval_batch_size
        torch.manual_seed(cfg.seed)  # the same initial weights in every pipeline
        info = dataset_info(cfg)
        self.task = resolve_task(cfg, info)
        self.model, _ = make_model(cfg, info, device, self.task)
        self.memory_format = torch.channels_last if cfg.trainer.channels_last else torch.contiguous_format
        # compile_model tries the compiled model on an example batch and falls back to eager
        self.forward = compile_model(self.model, next(iter(data.train))[0]) if cfg.trainer.compile else self.model
        self.optimizer = make_optimizer(cfg, self.model)
        precision = str(cfg.trainer.precision)
        dtype = torch.bfloat16 if precision == "bf16-mixed" else torch.float16
        self.amp = torch.autocast(device.type, dtype=dtype) if precision != "32" else contextlib.nullcontext()
        self.scaler = torch.amp.GradScaler(device.type) if precision == "16-mixed" else None
        self.images = 0  # training images per epoch

    def train(self, epoch: int) -> None:
        raise NotImplementedError

    def validate(self) -> float:
        """One validation pass; returns the accuracy (a sanity check that all pipelines learn alike)."""
        raise NotImplementedError

    def close(self) -> None:
        pass

    def step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """The textbook optimizer step, shared by (b) and (c)."""
        targets = y
        if self.aug is not None and self.aug.batch_transform is not None:
            x, targets = self.aug.batch_transform(x, y)
        with self.amp:
            loss = F.cross_entropy(self.forward(x), targets)
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is None:
            loss.backward()
            self.optimizer.step()
        else:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()

    def eval_batch(self, x: torch.Tensor, y: torch.Tensor, sums: torch.Tensor) -> None:
        """Adds the batch's summed loss and correct count to `sums` (on the device: no sync)."""
        with self.amp:
            out = self.forward(x)
            sums[0] += F.cross_entropy(out, y, reduction="sum").float()
        sums[1] += (out.argmax(1) == y).sum()


def diagnostics(cfg: DictConfig) -> list:
    """The run's diagnostics callback when `--set diagnostics=norms|full` asks for one (their cost)."""
    g = cfg.diagnostics
    if not (g.weight_norms or g.activations or g.gradients or g.histograms):
        return []
    from dlcourse.diagnostics import Diagnostics

    return [Diagnostics(g.weight_norms, g.activations, g.gradients, g.histograms, g.every_n_steps)]


class EngineRun(Pipeline):
    """(a) dlcourse's Engine over its TensorLoader, as `dlcourse.training.run` builds it."""

    key, label = "a", "dlcourse Engine"

    def __init__(self, cfg, timing, data, device, aug=None):
        super().__init__(cfg, timing, data, device, aug)
        settings = make_settings(cfg)
        schedule = make_schedule(cfg, self.optimizer, len(data.train), settings.mode)
        loss_fn, eval_loss_fn = make_losses(cfg, self.task)
        self.tmp = tempfile.TemporaryDirectory(prefix="dlcourse-bench-", ignore_cleanup_errors=True)
        self.logger = RunLogger(Path(self.tmp.name), progress_bar=False)
        self.engine = Engine(self.model, self.optimizer, schedule, loss_fn, data, settings, device, self.logger,
                             Path(self.tmp.name), eval_loss_fn=eval_loss_fn,
                             batch_transform=aug.batch_transform if aug is not None else None, task=self.task,
                             callbacks=diagnostics(cfg))
        # set here, not through forward_model=: Engine's `forward_model or model` calls len() on it,
        # which a torch.compile'd non-Sequential model does not support
        self.engine.forward = self.forward

    def train(self, epoch):
        before = self.engine.train_images
        self.engine.train_epoch(epoch)
        self.images = self.engine.train_images - before

    def validate(self):
        return self.engine.evaluate(self.data.val, "val")["val/acc"]

    def close(self):
        self.logger.close()
        self.tmp.cleanup()


class BareLoop(Pipeline):
    """(b) A bare loop over normalised float tensors already in memory: the limit to compare with."""

    key, label = "b", "bare PyTorch loop"

    def __init__(self, cfg, timing, data, device, aug=None):
        super().__init__(cfg, timing, data, device, aug)
        train, val, norm = data.train, data.val, data.normalize
        x = train.images.to(device).float().div_(255)
        # with augmentation the images stay in [0, 1]: augmentations work there, as in the TensorLoader
        self.X = x if aug is not None else norm(x).contiguous(memory_format=self.memory_format)
        self.Y = train.labels.to(device)
        self.Xv = norm(val.images.to(device).float().div_(255)).contiguous(memory_format=self.memory_format)
        self.Yv = val.labels.to(device)
        n, bs = len(self.Y), self.batch_size
        self.n = n - 1 if n % bs == 1 else n  # as the TensorLoader: no last batch of one image

    def train(self, epoch):
        X, Y, bs, norm = self.X, self.Y, self.batch_size, self.data.normalize
        self.forward.train()
        perm = torch.randperm(len(Y)).to(self.device)
        for i in range(0, self.n, bs):
            idx = perm[i:i + bs]
            x, y = X[idx], Y[idx]
            if self.aug is not None:
                x = norm(self.aug.transform(x) if self.aug.transform else x)
                x = x.contiguous(memory_format=self.memory_format)
            self.step(x, y)
        self.images = self.n

    @torch.inference_mode()
    def validate(self):
        self.forward.eval()
        sums, ebs = torch.zeros(2, device=self.device), self.eval_batch_size
        for i in range(0, len(self.Yv), ebs):
            self.eval_batch(self.Xv[i:i + ebs], self.Yv[i:i + ebs], sums)
        return float(sums[1]) / len(self.Yv)


class PILImages(torch.utils.data.Dataset):
    """uint8 images served as torchvision's MNIST/CIFAR classes serve them: a PIL image per item,
    through `transform` (what torchvision.datasets.FashionMNIST.__getitem__ does)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform):
        self.images, self.labels, self.transform = images.cpu(), labels.cpu(), transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        from PIL import Image

        img, target = self.images[index], int(self.labels[index])
        array = img[0].numpy() if img.shape[0] == 1 else img.permute(1, 2, 0).numpy()
        return self.transform(Image.fromarray(array)), target


class DataLoaderRun(Pipeline):
    """(c) The usual pipeline: Dataset of PIL images + ToTensor + Normalize, DataLoader with workers."""

    key, label = "c", "DataLoader + PIL transforms"

    def __init__(self, cfg, timing, data, device, aug=None):
        super().__init__(cfg, timing, data, device, aug=None)  # torchvision augmentations differ: none here
        from torchvision import transforms

        self.label = f"{self.label} ({timing.workers} workers)"
        norm = data.normalize
        tf = transforms.Compose([transforms.ToTensor(),
                                 transforms.Normalize(norm.mean.flatten().tolist(), norm.std.flatten().tolist())])
        common = dict(num_workers=timing.workers, pin_memory=device.type == "cuda")
        n, bs = data.train.num_samples, self.batch_size
        self.train_loader = torch.utils.data.DataLoader(
            PILImages(data.train.images, data.train.labels, tf), batch_size=bs, shuffle=True,
            drop_last=n % bs == 1, **common)  # as the TensorLoader: no last batch of one image
        self.val_loader = torch.utils.data.DataLoader(
            PILImages(data.val.images, data.val.labels, tf), batch_size=self.eval_batch_size, **common)

    def batches(self, loader):
        for x, y in loader:
            x = x.to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)
            yield x, y.to(self.device, non_blocking=True)

    def train(self, epoch):
        self.forward.train()
        self.images = 0
        for x, y in self.batches(self.train_loader):
            self.step(x, y)
            self.images += len(y)

    @torch.inference_mode()
    def validate(self):
        self.forward.eval()
        sums = torch.zeros(2, device=self.device)
        for x, y in self.batches(self.val_loader):
            self.eval_batch(x, y, sums)
        return float(sums[1]) / len(self.val_loader.dataset)


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (DataLoader workers are joined per epoch)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def timed(fn, device: torch.device, clock=time.perf_counter) -> tuple[float, object]:
    sync(device)
    start = clock()
    result = fn()
    sync(device)
    return clock() - start, result


def run_benchmark(cfg: DictConfig, timing: Timing, log=print) -> dict:
    """Time the pipelines on the run that `cfg` (a composed training config) describes, interleaved
    epoch by epoch; return the medians, ratios and settings."""
    validate(cfg)
    device = select_device(cfg.trainer.device)
    torch.backends.cudnn.benchmark = True  # as dlcourse.training.torch_flags does for non-deterministic runs
    if str(cfg.trainer.precision) == "16-mixed" and device.type != "cuda":
        raise ConfigError("--precision 16-mixed needs CUDA; use bf16-mixed or 32 here.")
    if timing.clock == "cpu" and device.type != "cpu":
        raise ConfigError("--clock cpu measures CPU time: it is meaningless on a GPU, use --clock wall.")
    if cfg.dataset.name == "imagefolder":
        raise ConfigError("The benchmark times in-memory datasets; image folders go through a DataLoader anyway.")
    clock = cpu_seconds if timing.clock == "cpu" else time.perf_counter
    data, aug = make_data(cfg, dataset_info(cfg), device)
    if aug.transform is None and aug.batch_transform is None:
        aug = None
    if data.val is None:
        raise ConfigError("The benchmark times a validation pass too: use a dataset.val_split > 0.")
    kinds = [EngineRun, BareLoop] + ([DataLoaderRun] if timing.dataloader else [])
    pipelines = [kind(cfg, timing, data, device, aug) for kind in kinds]
    times = {p.key: [] for p in pipelines}
    acc = {}
    try:
        for epoch in range(1, timing.warmup_epochs + timing.epochs + 1):
            shift = epoch % len(pipelines)  # rotate the order so no pipeline always runs first
            for p in pipelines[shift:] + pipelines[:shift]:
                train_s, _ = timed(lambda: p.train(epoch), device, clock)
                val_s, acc[p.key] = timed(p.validate, device, clock)
                if epoch > timing.warmup_epochs:
                    times[p.key].append((train_s, val_s))
                log(f"epoch {epoch}{' (warm-up)' if epoch <= timing.warmup_epochs else ''}  ({p.key}) "
                    f"train {train_s:.2f} s  val {val_s:.2f} s  val/acc {acc[p.key]:.4f}")
    finally:
        for p in pipelines:
            p.close()

    rows = []
    for p in pipelines:
        epochs = [t + v for t, v in times[p.key]]
        epoch_s = statistics.median(epochs)
        rows.append({"key": p.key, "pipeline": p.label, "epoch_s": epoch_s, "best_epoch_s": min(epochs),
                     "train_s": statistics.median(t for t, _ in times[p.key]),
                     "val_s": statistics.median(v for _, v in times[p.key]),
                     "images_per_s": p.images / epoch_s, "val_acc": acc[p.key], "epochs_s": epochs})
    a = rows[0]
    ratios = {f"a/{r['key']}": r["epoch_s"] / a["epoch_s"] for r in rows[1:]}
    best_ratios = {f"a/{r['key']}": r["best_epoch_s"] / a["best_epoch_s"] for r in rows[1:]}
    t, d = cfg.trainer, cfg.dataset
    options = {k: v for k, v in OmegaConf.to_container(cfg.model, resolve=True).items() if k != "name"}
    augment = {k: v for k, v in OmegaConf.to_container(cfg.augment, resolve=True).items() if v not in (0, 0.0, None)}
    return {"settings": {**asdict(timing), "model": cfg.model.name, "model_options": options,
                         "dataset": d.name, "batch_size": t.batch_size, "eval_batch_size": t.eval_batch_size,
                         "optim": cfg.optim._target_.rsplit(".", 1)[-1], "lr": cfg.optim.lr,
                         "precision": str(t.precision), "channels_last": t.channels_last, "compile": t.compile,
                         "augment": ", ".join(f"{k}={v}" for k, v in augment.items()), "device": str(device), "torch": torch.__version__,
                         "threads": torch.get_num_threads(), "cpus": os.cpu_count(),
                         "train_images": data.train.num_samples, "val_images": data.val.num_samples},
            "rows": rows, "ratios": ratios, "best_ratios": best_ratios}


def format_table(result: dict) -> str:
    """The results as a plain-text table with the ratios underneath."""
    s = result["settings"]
    opts = " ".join(f"{k}={v}" for k, v in s["model_options"].items())
    clock = "CPU time (process + DataLoader workers)" if s["clock"] == "cpu" else "wall-clock time"
    lines = [
        f"{s['model']}{' ' + opts if opts else ''} on {s['dataset']} ({s['train_images']:,} train / "
        f"{s['val_images']:,} val images), batch {s['batch_size']}, eval batch {s['eval_batch_size']}, "
        f"optim {s['optim']}, precision {s['precision']}"
        f"{', channels_last' if s['channels_last'] else ''}{', compile' if s['compile'] else ''}"
        f"{', augment ' + s['augment'] + ' (not in (c))' if s['augment'] else ''}",
        f"device {s['device']}, torch {s['torch']}, {s['threads']} threads, {s['cpus']} CPUs; {clock}, "
        f"median of {s['epochs']} epochs after {s['warmup_epochs']} warm-up; epoch = training + validation",
        "",
        f"{'pipeline':<42}{'epoch s':>9}{'best s':>8}{'train s':>9}{'val s':>7}{'images/s':>10}{'val acc':>9}",
    ]
    for r in result["rows"]:
        lines.append(f"({r['key']}) {r['pipeline']:<38}{r['epoch_s']:>9.2f}{r['best_epoch_s']:>8.2f}"
                     f"{r['train_s']:>9.2f}{r['val_s']:>7.2f}{r['images_per_s']:>10,.0f}{r['val_acc']:>9.4f}")
    lines.append("images/s: training images per second of an epoch (its training + validation time)")
    lines.append("")

    def ratio_line(ratios: dict) -> str:
        return "   ".join(f"({k.replace('/', ')/(')}) = {v:.2f}" for k, v in ratios.items())
    lines.append(f"speed ratios, median epochs: {ratio_line(result['ratios'])}")
    lines.append(f"speed ratios, best epochs:   {ratio_line(result['best_ratios'])}")
    return "\n".join(lines)
