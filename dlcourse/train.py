"""From a composed Hydra config to a finished run: `run(cfg)` is what `train.py` calls."""
from __future__ import annotations

import dataclasses
import os
import random
import signal
import sys
import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

from dlcourse import checkpoint
from dlcourse.config import validate
from dlcourse.data import FILE_DATASETS, Data, build_data, build_folder_data, read_dataset
from dlcourse.data.augment import Augmentation, build_augmentation, folder_transforms
from dlcourse.engine import Engine, Interrupted, Settings
from dlcourse.errors import CheckpointError, ConfigError, DivergenceError
from dlcourse.init import init_weights
from dlcourse.logging import RunLogger, write_metrics
from dlcourse.losses import build_loss
from dlcourse.models import build_model
from dlcourse.optim import build_optimizer, build_schedule


def select_device(name: str) -> torch.device:
    """`auto` picks CUDA, then MPS, then CPU; an explicit device must exist."""
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "mps" if mps else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("trainer.device=cuda but this machine has no usable CUDA GPU (torch.cuda."
                          "is_available() is False). Use trainer.device=auto or trainer.device=cpu.")
    if name == "mps" and not mps:
        raise ConfigError("trainer.device=mps but MPS is not available here. Use trainer.device=auto.")
    return torch.device(name)


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    else:
        torch.backends.cudnn.benchmark = True


def resume_path(resume, run_dir: Path) -> Optional[Path]:
    """null -> fresh run; true -> this run directory's last.pt; a string -> that file."""
    if resume is None or resume is False:
        last = run_dir / "checkpoints" / "last.pt"
        if last.exists():
            raise ConfigError(f"{run_dir} already holds a run (checkpoints/last.pt) and resume is not set. "
                              "Continue it with resume=true, or start a fresh run in another directory "
                              "(leave hydra.run.dir at its default).")
        return None
    if resume is True or str(resume).lower() == "true":
        last = run_dir / "checkpoints" / "last.pt"
        if not last.exists():
            raise CheckpointError(f"resume=true but {last} does not exist. Point Hydra at the run to continue: "
                                  "python train.py resume=true hydra.run.dir=outputs/<date>/<time>, "
                                  "or give a file: resume=path/to/last.pt.")
        return last
    return Path(str(resume))


def write_hydra_files(cfg: DictConfig, run_dir: Path) -> None:
    """`.hydra/` in the run directory, written once the config is known to be valid."""
    from hydra.core.hydra_config import HydraConfig

    hydra_dir = run_dir / ".hydra"
    hydra_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, hydra_dir / "config.yaml")
    if HydraConfig.initialized():
        hc = HydraConfig.get()
        OmegaConf.save(OmegaConf.create(list(hc.overrides.task)), hydra_dir / "overrides.yaml")


class _StopOnSignal:
    """SIGINT/SIGTERM ask the engine to stop after the current step instead of killing it mid-write."""

    def __init__(self, engine: Engine):
        self.engine, self.previous = engine, {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self.previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                pass
        return self

    def _handle(self, signum, frame):
        self.engine.stop_requested = True
        self.signum = signum

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def make_data(cfg: DictConfig, device: torch.device) -> tuple[Data, Augmentation]:
    """The dataset as loaders on `device`, with the training augmentation."""
    t, d = cfg.trainer, cfg.dataset
    augment = OmegaConf.to_container(cfg.augment, resolve=True)
    if d.name in FILE_DATASETS:  # files read by DataLoader workers, not held in memory
        size = d.image_size or 64
        data = build_folder_data(d.root, image_size=size, batch_size=t.batch_size,
                                 eval_batch_size=t.eval_batch_size, val_split=d.val_split, seed=cfg.seed,
                                 device=device, num_workers=d.num_workers,
                                 train_transform=folder_transforms(size, train=True, **augment),
                                 limit_train_batches=t.limit_train_batches, channels_last=t.channels_last)
        # per-image ops run in the workers (folder_transforms); only mixup/cutmix stay on the batch
        augmentation = build_augmentation(data.num_classes, device, cfg.seed, **augment)
        return data, dataclasses.replace(augmentation, transform=None)
    dataset = read_dataset(d.name, root=d.root, download=d.download, seed=cfg.seed,
                           image_shape=d.image_shape, num_classes=d.num_classes, size=d.size,
                           image_size=d.image_size)
    augmentation = build_augmentation(len(dataset.classes), device, cfg.seed, **augment)
    data = build_data(dataset, batch_size=t.batch_size, eval_batch_size=t.eval_batch_size,
                      val_split=d.val_split, seed=cfg.seed, device=device, subset=d.subset,
                      train_transform=augmentation.transform, limit_train_batches=t.limit_train_batches,
                      channels_last=t.channels_last)
    return data, augmentation


def make_model(cfg: DictConfig, data: Data, device: torch.device) -> tuple[torch.nn.Module, str]:
    """The configured model, initialised, on `device`."""
    options = OmegaConf.to_container(cfg.model, resolve=True)
    name = options.pop("name")
    model = build_model(name, data.image_shape, data.num_classes, **options)
    init_weights(model, cfg.init.name, gain=cfg.init.gain, std=cfg.init.std)
    model.to(device)
    if cfg.trainer.channels_last:
        model.to(memory_format=torch.channels_last)
    return model, name


def make_settings(cfg: DictConfig) -> Settings:
    t, r = cfg.trainer, cfg.regularization
    return Settings(max_epochs=t.max_epochs, monitor=t.monitor, patience=t.early_stopping.patience,
                    min_delta=t.early_stopping.min_delta, precision=str(t.precision),
                    log_every_n_steps=t.log_every_n_steps, l1=r.l1, clip_grad_norm=r.clip_grad_norm,
                    clip_grad_value=r.clip_grad_value, agc=r.agc)


def run(cfg: DictConfig, run_dir: Optional[Path] = None) -> float:
    """Train, evaluate the best checkpoint on the test set, write metrics.json; return the best
    value of `trainer.monitor` (for Hydra sweepers)."""
    started = time.perf_counter()
    validate(cfg)
    t, d = cfg.trainer, cfg.dataset
    device = select_device(t.device)
    if t.precision == "16-mixed" and device.type != "cuda":
        raise ConfigError("trainer.precision=16-mixed needs a CUDA GPU (float16 autocast with GradScaler); "
                          "on this device use trainer.precision=bf16-mixed or 32.")
    if run_dir is None:
        from hydra.core.hydra_config import HydraConfig
        run_dir = Path(HydraConfig.get().runtime.output_dir)
    run_dir = Path(run_dir)
    ckpt_path = resume_path(cfg.resume, run_dir)
    resumed = checkpoint.load(ckpt_path) if ckpt_path else None

    seed_everything(cfg.seed, t.deterministic)
    data, augmentation = make_data(cfg, device)
    if data.val is None and t.monitor.startswith("val/"):
        raise ConfigError(f"trainer.monitor={t.monitor} needs a validation split, but dataset.val_split=0. "
                          "Set dataset.val_split>0 or monitor a training metric (trainer.monitor=train/loss).")
    model, model_name = make_model(cfg, data, device)
    forward_model = compile_model(model, next(iter(data.train))[0]) if t.compile else model
    optim_opts = OmegaConf.to_container(cfg.optim, resolve=True)
    optimizer = build_optimizer(model, get_class(optim_opts.pop("_target_")),
                                decay_bias_and_norm=cfg.regularization.decay_bias_and_norm, **optim_opts)
    settings = make_settings(cfg)
    sched_opts = OmegaConf.to_container(cfg.sched, resolve=True)
    schedule = build_schedule(optimizer, sched_opts.pop("name"), len(data.train), t.max_epochs,
                              mode=settings.mode, **sched_opts)
    loss_fn = build_loss(cfg.loss.name, data.num_classes, cfg.loss.label_smoothing)

    write_hydra_files(cfg, run_dir)
    logger = RunLogger(run_dir, progress_bar=t.progress_bar)
    extra = {"config": OmegaConf.to_container(cfg, resolve=True), "classes": list(data.classes),
             "image_shape": list(data.image_shape), "model_name": model_name,
             "normalization": {"mean": data.normalize.mean.flatten().tolist(),
                               "std": data.normalize.std.flatten().tolist()}}
    engine = Engine(model, optimizer, schedule, loss_fn, data, settings, device, logger, run_dir,
                    extra_checkpoint=extra, forward_model=forward_model,
                    batch_transform=augmentation.batch_transform, generators=(augmentation.generator,))
    try:
        if resumed is not None:
            engine.restore(resumed)
            logger.info(f"Resumed from {ckpt_path} after epoch {engine.state.epoch} (step {engine.state.step}).")
        else:
            x, _ = next(iter(data.train))
            logger.images("train/images", data.normalize.invert(x[:64]))
        logger.info(f"{model_name} on {d.name} ({data.train.num_samples} train / "
                    f"{data.val.num_samples if data.val else 0} val / {data.test.num_samples} test), "
                    f"{sum(p.numel() for p in model.parameters()):,} parameters, device {device}, "
                    f"augment {augmentation}, "
                    f"run dir {run_dir}")
        with _StopOnSignal(engine) as stopper:
            try:
                engine.fit()
            except Interrupted:
                return _interrupted(engine, run_dir, getattr(stopper, "signum", signal.SIGINT))
            except DivergenceError:
                write_metrics(run_dir / "metrics.json", {**_summary(engine, started), "diverged": True})
                raise
        return _finish(engine, cfg, run_dir, started)
    finally:
        logger.close()


def compile_model(model: torch.nn.Module, example: torch.Tensor) -> torch.nn.Module:
    """torch.compile'd `model` when compiling works here (tried on `example`), else the eager model
    and one warning. Compilation is lazy, so only a first call shows whether it works."""
    try:
        compiled = torch.compile(model)
        model.eval()  # the probe must not touch batch-norm statistics
        with torch.no_grad():
            compiled(example)
        return compiled
    except Exception as e:  # no C++ compiler, unsupported platform or operator
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(f"warning: trainer.compile=true but torch.compile failed here ({reason[:200]}); "
              "training without it.", file=sys.stderr, flush=True)
        return model
    finally:
        model.train()


def _summary(engine: Engine, started: float) -> dict:
    """Numbers about the run itself (not the test set), for metrics.json."""
    st = engine.state
    summary = {f"{engine.s.monitor}_best": st.best, "best_epoch": st.best_epoch, "epochs_run": st.epoch,
               "steps": st.step, "stopped_early": st.stopped_early, "diverged": False,
               "train/images_per_s": engine.train_images / engine.train_seconds if engine.train_seconds else None,
               "wall_time_s": time.perf_counter() - started}
    val_acc = [h["val/acc"] for h in st.history if "val/acc" in h]
    if val_acc:
        summary["val/acc_best"] = max(val_acc)
    return summary


def _finish(engine: Engine, cfg: DictConfig, run_dir: Path, started: float) -> float:
    st = engine.state
    best = run_dir / "checkpoints" / "best.pt"
    if best.exists():
        engine.model.load_state_dict(checkpoint.load(best)["model"])
    metrics = {**engine.evaluate(engine.data.test, "test"), **_summary(engine, started)}
    write_metrics(run_dir / "metrics.json", metrics)
    engine.logger.hparams(OmegaConf.to_container(cfg, resolve=True), metrics)
    engine.logger.info("test  " + "  ".join(f"{k} {v:.4f}" for k, v in metrics.items() if k.startswith("test/")))
    return float(st.best) if st.best is not None else float("nan")


def _interrupted(engine: Engine, run_dir: Path, signum: int) -> float:
    last = run_dir / "checkpoints" / "last.pt"
    where = f"{last} holds epoch {engine.state.epoch}" if last.exists() else "no epoch had finished yet"
    engine.logger.info(f"Stopped by {signal.Signals(signum).name} during epoch {engine.state.epoch + 1}; "
                       f"the partial epoch was dropped and {where}. Continue with: python train.py "
                       f"resume=true hydra.run.dir={run_dir}")
    raise SystemExit(128 + int(signum))
