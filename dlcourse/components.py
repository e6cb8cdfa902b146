"""A run's components — model, data, loss, optimizer, schedule, callbacks, with its task and settings —
built once: from the config by the builders, or handed in by a caller (`dlcourse.train(model=...)`).
`from_config` is the one place where the config meets the objects; `dlcourse.training.fit` then runs them.
The command line, the Python API, k-fold jobs and sweeps all build their runs here."""
from __future__ import annotations

import time
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from dlcourse import checkpoint, distributed
from dlcourse.builders import (check_given_optimizer, check_monitor, check_schedule, compile_model, dataset_info,
                               load_weights, make_callbacks, make_data, make_losses, make_model, make_optimizer,
                               make_schedule, make_settings, resolve_task, select_device)
from dlcourse.config import check_resume, validate
from dlcourse.errors import CheckpointError, ConfigError
from dlcourse.usercode import search_dirs


@dataclass
class Given:
    """Objects a caller hands in instead of their config options (`None`: built from the config)."""

    model: Optional[torch.nn.Module] = None
    loss: Optional[Callable] = None
    callbacks: Sequence = ()
    optimizer: Optional[type] = None  # a torch.optim.Optimizer subclass, given the config's optim.* options


@dataclass
class Components:
    """Everything one run is made of, ready to run (`dlcourse.training.fit`)."""

    cfg: DictConfig
    run_dir: Path
    device: torch.device
    task: Any
    settings: Any
    model: torch.nn.Module
    model_name: str
    optimizer: Optional[torch.optim.Optimizer] = None
    loss_fn: Any = None
    eval_loss_fn: Any = None
    data: Any = None
    augmentation: Any = None
    callbacks: list = field(default_factory=list)
    schedule: Any = None
    forward_model: Optional[torch.nn.Module] = None
    extra: dict = field(default_factory=dict)  # stored in every checkpoint: config, classes, normalisation
    transfer: Any = None  # (Pretrained, TransferReport) of model.weights
    resumed: Optional[dict] = None
    ckpt_path: Optional[Path] = None
    suggested_lr: Optional[float] = None  # lr_find without apply: the run ends after the range test


def _qualified(obj) -> str:
    """`module.Name` of a function or class, else of the object's class."""
    named = obj if isinstance(obj, (type, types.FunctionType, types.BuiltinFunctionType)) else type(obj)
    return f"{named.__module__}.{named.__qualname__}"


def describe_given(cfg: DictConfig, given: Given) -> None:
    """What the config records of handed-in objects: their class (or function) names, under
    `model.given`, `loss.given` and `optim.given`. Such a model's class may live in a notebook, so it cannot be
    imported again; `dlcourse.load(run_dir, model=...)` takes a new instance of it."""
    with open_dict(cfg):
        if given.model is not None:
            if not isinstance(given.model, torch.nn.Module):
                raise ConfigError(f"model={type(given.model).__name__}: give a torch.nn.Module instance (your network, "
                                  "built), or a built-in model's name as an override: dlcourse.train('model=lenet').")
            cfg.model = {"name": type(given.model).__name__, "given": _qualified(given.model), "weights": None}
        if given.loss is not None:
            if not callable(given.loss):
                raise ConfigError(f"loss={given.loss!r} is not callable: give a function (output, target) -> scalar "
                                  "or an nn.Module loss instance.")
            cfg.loss.name = getattr(given.loss, "__name__", type(given.loss).__name__)
            cfg.loss.given, cfg.loss._target_ = _qualified(given.loss), None
        if given.optimizer is not None:
            if not (isinstance(given.optimizer, type) and issubclass(given.optimizer, torch.optim.Optimizer)):
                raise ConfigError(f"optimizer={given.optimizer!r}: give a torch.optim.Optimizer subclass (the class, "
                                  "not an instance: the run builds it over the parameters it trains, with optim.lr, "
                                  "optim.weight_decay and your +optim.<argument>=... overrides).")
            cfg.optim._target_ = cfg.optim.given = _qualified(given.optimizer)


def given_model(cfg: DictConfig, model: torch.nn.Module, info, device: torch.device, task) -> torch.nn.Module:
    """A handed-in model keeps its weights (no init scheme); its output size is checked like a built one's."""
    from dlcourse.models import check_forward

    check_forward(model.cpu(), tuple(info.image_shape), cfg.model.name, task.num_outputs)
    model.to(device)
    if cfg.trainer.channels_last:
        model.to(memory_format=torch.channels_last)
    return model


def given_callbacks(callbacks: Sequence) -> list:
    from dlcourse.callbacks import Callback

    made = []
    for c in callbacks:
        if not isinstance(c, Callback):
            raise ConfigError(f"callbacks=[{type(c).__name__}]: a callback is an instance of a subclass of "
                              "dlcourse.callbacks.Callback that overrides the hooks it needs.")
        if getattr(c, "config_key", None) is None:
            c.config_key = type(c).__name__  # its name in checkpoints (its state is stored and resumed)
        made.append(c)
    return made


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


def from_config(cfg: DictConfig, run_dir: Path, given: Given = Given(), overrides: Optional[list[str]] = None,
                notes: Optional[list[str]] = None) -> Components:
    """The components of the run `cfg` describes, with the caller's `given` objects in place of the
    configured ones. Everything that needs no images is built (and checked) before the data is read.
    `notes`: console lines for train.log from before the run directory holds one."""
    from dlcourse.training import seed_everything

    notes = [] if notes is None else notes
    describe_given(cfg, given)
    validate(cfg)
    t = cfg.trainer
    device = select_device(t.device)
    if distributed.init(t.strategy, device.type) and device.type == "cuda":
        device = torch.device("cuda", torch.cuda.current_device())
    rank, world = distributed.rank_and_world()
    distributed.local_batch(t.batch_size)  # the global batch must divide among the processes
    if t.precision == "16-mixed" and device.type != "cuda":
        raise ConfigError("trainer.precision=16-mixed needs a CUDA GPU (float16 autocast with GradScaler); "
                          "on this device use trainer.precision=bf16-mixed or 32.")
    ckpt_path = resume_path(cfg.resume, run_dir)
    resumed = checkpoint.load(ckpt_path) if ckpt_path else None
    info = dataset_info(cfg)
    task = resolve_task(cfg, info)  # before the resume check: `auto` keys become what the run uses
    if resumed is not None:
        check_given_optimizer((resumed.get("config") or {}).get("optim", {}).get("given"), given.optimizer)
        check_resume(resumed.get("config"), cfg, str(ckpt_path))
    check_monitor(cfg, task)
    check_schedule(cfg)
    settings = make_settings(cfg)

    seed_everything(cfg.seed)
    if given.model is None:
        model, model_name = make_model(cfg, info, device, task)  # before the data: its errors cost no reading
    else:
        model, model_name = given_model(cfg, given.model, info, device, task), cfg.model.name
    parts = Components(cfg, run_dir, device, task, settings, model, model_name, resumed=resumed, ckpt_path=ckpt_path)
    finetuning = cfg.model.get("weights") is not None and cfg.finetune.pretrained
    # model.weights (dlcourse/transfer.py); a resumed run takes every weight from its checkpoint
    parts.transfer = load_weights(cfg, model, model_name) if resumed is None else None
    if resumed is not None:  # before any feature cache is computed from the backbone
        model.load_state_dict(resumed["model"])
    if world > 1:
        torch.manual_seed(cfg.seed + 7919 * rank)  # the same initial weights, then dropout of its own
    parts.optimizer = make_optimizer(cfg, model, given.optimizer)
    if given.loss is None:
        parts.loss_fn, parts.eval_loss_fn = make_losses(cfg, task)
    else:
        parts.loss_fn = parts.eval_loss_fn = given.loss
    parts.data, parts.augmentation = make_data(cfg, info, device, input_stats(cfg, parts.transfer, info, resumed))
    if cfg.lr_find.enabled:
        from dlcourse.lr_finder import find_lr

        lr = find_lr(parts, overrides, notes)
        if not cfg.lr_find.apply:
            parts.suggested_lr = lr
            return parts
        cfg.optim.lr = lr  # the run trains (and records) the suggested learning rate
        parts.optimizer = make_optimizer(cfg, model, given.optimizer)
    data = parts.data
    parts.extra = {"config": OmegaConf.to_container(cfg, resolve=True), "classes": list(data.classes),
                   "task": task.name, "image_shape": list(data.image_shape), "model_name": model_name,
                   "code_dirs": [str(d) for d in search_dirs()],  # where `_target_`s were imported from
                   "normalization": {"mean": data.normalize.mean.flatten().tolist(),
                                     "std": data.normalize.std.flatten().tolist()}}
    forward_model = model
    if finetuning and _caching(cfg, model, parts.augmentation):
        from dlcourse.finetune import cache_features

        seconds = time.perf_counter()
        parts.data, forward_model = cache_features(model, data, device)  # the head trains on the backbone's features
        data = parts.data
        images = data.train.num_samples + (data.val.num_samples if data.val else 0) + data.test.num_samples
        note = (f"feature cache: the frozen backbone's {data.image_shape[0]} features of {images} images computed "
                f"once in {time.perf_counter() - seconds:.1f} s; the head trains on them")
        print(note, flush=True)
        notes.append(note)
    callbacks = make_callbacks(cfg, run_dir, model_name, model) + given_callbacks(given.callbacks)
    finetune = next((c for c in callbacks if type(c).__name__ == "Finetune"), None)
    if finetune is not None:  # the first epoch's freeze state, seen by the summary and by DDP
        finetune.apply(model, (resumed["state"]["epoch"] if resumed else 0) + 1)
    if world > 1:  # frozen parameters are left out; a change of the trainable set wraps anew
        trained = forward_model
        forward_model = distributed.data_parallel(trained, device)
        if finetune is not None:
            finetune.rewrap = lambda: distributed.data_parallel(trained, device)
    if t.compile:
        forward_model = compile_model(forward_model, next(iter(data.train))[0])
    parts.forward_model, parts.callbacks = forward_model, callbacks
    parts.schedule = make_schedule(cfg, parts.optimizer, len(data.train), settings.mode)
    return parts


def input_stats(cfg: DictConfig, transfer, info, resumed: Optional[dict] = None) -> Optional[tuple[list, list]]:
    """The input normalisation pretrained weights were trained with (finetune.normalize=weights),
    averaged over RGB for one-channel data, or, resuming such a run, its checkpoint's; None = the
    training split's own statistics."""
    if cfg.finetune.normalize != "weights" or cfg.model.get("weights") is None or not cfg.finetune.pretrained:
        return None
    stored = (resumed or {}).get("normalization") or {}
    mean, std = (stored.get("mean"), stored.get("std")) if resumed else (transfer[0].mean, transfer[0].std)
    if mean is None or (len(info.image_shape) == 3 and resumed and len(mean) != info.image_shape[0]):
        return None  # per-pixel statistics of the data: computed again, identically
    mean, std = list(mean), list(std)
    channels = info.image_shape[0] if len(info.image_shape) == 3 else len(mean)
    if channels != len(mean):
        mean, std = [sum(mean) / len(mean)] * channels, [sum(std) / len(std)] * channels
    return mean, std


def _caching(cfg: DictConfig, model, augmentation) -> bool:
    from dlcourse.finetune import caching_applies, freeze_plan

    f = cfg.finetune
    plan = freeze_plan(model, f.freeze, f.unfreeze_at_epoch, f.unfreeze_every)
    augmented = augmentation.transform is not None or augmentation.batch_transform is not None
    return caching_applies(model, plan, cfg.trainer.max_epochs, f.bn == "frozen", augmented, f.cache_features)
