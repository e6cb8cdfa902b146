"""From the config to the objects of a run: device, dataset description, model, optimizer,
schedule, losses, data. `dlcourse.components.from_config` builds everything that needs no images first, so that
a bad model, optimizer, schedule, loss or monitor stops the run before any
image is read."""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Optional

import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from dlcourse import distributed
from dlcourse.callbacks import user_callbacks
from dlcourse.data import (FILE_DATASETS, OWN_DATASETS, TOY_DATASETS, keep_classes, Data, DatasetInfo, Source, Split, absolute,
                           build_data, build_folder_data, build_samples_data, describe_dataset, load_source, read_dataset)
from dlcourse.data.augment import Augmentation, build_augmentation, folder_transforms
from dlcourse.data.augment.options import OFF
from dlcourse.data.overfit import overfit_batches
from dlcourse.data.switches import shuffle_pixels
from dlcourse.engine import Settings
from dlcourse.errors import ConfigError
from dlcourse.init import init_weights
from dlcourse.losses import build_loss
from dlcourse.models import MODELS, build_model, build_user_model
from dlcourse.optim import build_optimizer
from dlcourse.schedules import Schedule, build_schedule, make_plan
from dlcourse.tasks import Task, make_task

log = logging.getLogger(__name__)


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


def own_source(cfg: DictConfig) -> Optional[Source]:
    """Your own data (dataset=tensors|csv, dataset._target_) or None. Its paths become absolute in `cfg` (so the
    stored config finds them from anywhere); with dataset._target_, dataset.name becomes that target."""
    d = cfg.dataset
    factory, kwargs = d.get("_target_"), d.get("kwargs")
    if kwargs is not None and not (factory and isinstance(kwargs, DictConfig)):
        raise ConfigError(f"dataset.kwargs={kwargs} holds the keyword arguments of dataset._target_ as a dict, e.g. "
                          "dataset._target_=mydata.build dataset.kwargs={n:500}" + ("" if factory else "; set dataset._target_."))
    reads = {"tensors": ("path", "test_path"), "csv": ("path", "target", "test_path")}
    stray = [k for k in ("path", "target", "test_path") if d[k] is not None and (factory or k not in reads.get(d.name, ()))]
    if stray:
        uses = "dataset=tensors (path, test_path) and dataset=csv (path, target, test_path)"
        raise ConfigError(f"{', '.join(f'dataset.{k}={d[k]}' for k in stray)}: read only by {uses}, not by "
                          f"{'dataset._target_=' + factory if factory else 'dataset=' + d.name}. Remove it, or choose "
                          "dataset=tensors / dataset=csv.")
    if not factory and d.name not in OWN_DATASETS:
        return None
    d.path, d.test_path = absolute(d.path), absolute(d.test_path)
    if factory:
        d.name = factory
    return Source(d.name, d.path, d.target, d.test_path, factory,
                  OmegaConf.to_container(kwargs, resolve=True) if kwargs is not None else {}, d.split_seed, d.root)


def dataset_info(cfg: DictConfig) -> DatasetInfo:
    d = cfg.dataset
    info = describe_dataset(d.name, root=d.root, image_shape=d.image_shape, num_classes=d.num_classes,
                            image_size=d.image_size, arms=d.arms, source=own_source(cfg))
    switches = [f"dataset.{k}={d[k]}" for k, off in (("per_class", None), ("normalize", "per_channel"),
                                                       ("label_noise", 0.0), ("shuffle_pixels", False)) if d[k] != off]
    if info.has_val and cfg.cv.folds is not None:
        raise ConfigError(f"cv.folds={cfg.cv.folds} deals the training samples into folds, but dataset.path={d.path} "
                          "brings its own validation split (x_val, y_val). Remove cv.folds, or leave x_val out of the file.")
    if switches and (d.name in FILE_DATASETS or info.streamed):
        raise ConfigError(f"{', '.join(switches)}: these data switches work on in-memory datasets; "
                          f"dataset={d.name} is read from files batch by batch. Remove them.")
    class_switches = [s for s in switches if s.startswith(("dataset.per_class=", "dataset.label_noise="))]
    if class_switches and info.task == "regression":
        raise ConfigError(f"{', '.join(class_switches)} works on class labels; dataset={d.name} is a regression "
                          "dataset (real-valued targets). Remove it, or use dataset.subset for fewer samples.")
    if d.shuffle_pixels and len(info.image_shape) != 3:
        raise ConfigError(f"dataset.shuffle_pixels=true permutes image pixels; dataset={d.name} holds vectors.")
    if d.classes is not None and (d.name in FILE_DATASETS or info.streamed):
        raise ConfigError("dataset.classes selects classes of in-memory datasets; for an image folder, give a "
                          "folder that holds only the wanted class folders.")
    if d.classes is not None:
        bad = [c for c in d.classes if not 0 <= c < info.num_classes] if info.task != "regression" else list(d.classes)
        if bad or len(set(d.classes)) < 2 or len(set(d.classes)) != len(d.classes):
            raise ConfigError(f"dataset.classes={list(d.classes)} must list at least 2 distinct class indices of "
                              f"dataset={d.name} (0..{info.num_classes - 1}); it is for classification datasets.")
        info = dataclasses.replace(info, num_classes=len(d.classes))
    return info


def _has_val(cfg: DictConfig) -> bool:
    d = cfg.dataset
    return (d.val_split > 0 or cfg.cv.folds is not None or (d.name in FILE_DATASETS and (Path(d.root) / "val").is_dir())
            or (own_source(cfg) is not None and dataset_info(cfg).has_val))


def resolve_task(cfg: DictConfig, info: DatasetInfo) -> Task:
    """The run's task (`task`, or the dataset's own), with the `auto` choices made in `cfg`: `task`,
    `loss.name` (the task's loss; the perceptron rule for model=perceptron) and `trainer.monitor`."""
    task = make_task(info.task, info.num_classes, cfg.task, cfg.dataset.name)
    cfg.task = task.name
    resolve_model(cfg)
    if cfg.loss.get("_target_"):
        cfg.loss.name = str(cfg.loss._target_)
    elif cfg.loss.name == "auto":
        cfg.loss.name = "perceptron" if cfg.model.name == "perceptron" and task.name == "binary" else task.default_loss
    if cfg.trainer.monitor == "auto":
        cfg.trainer.monitor = task.default_monitor(_has_val(cfg))
    mixing = [f"augment.{k}={cfg.augment.get(k)}" for k in ("mixup_alpha", "cutmix_alpha") if cfg.augment.get(k)]
    if mixing and task.name != "classification":
        raise ConfigError(f"{' and '.join(mixing)} mixes class probabilities, which a {task.name} task does not "
                          "have. Set augment.mixup_alpha=0 augment.cutmix_alpha=0 (or task=classification).")
    image_ops = [f"augment.{k}={v}" for k, v in cfg.augment.items() if v not in (None, OFF[k], float(OFF[k] or 0))]
    if len(info.image_shape) != 3 and image_ops:
        raise ConfigError(f"{', '.join(image_ops)}: augmentation transforms images, and dataset={cfg.dataset.name} "
                          f"holds vectors of {info.image_shape[0]} features. Use augment=none.")
    return task


def check_monitor(cfg: DictConfig, task: Task) -> None:
    """`trainer.monitor` must name a metric this run logs."""
    has_val = _has_val(cfg)
    valid = task.monitorable(has_val)
    if cfg.trainer.monitor not in valid:
        why = ("" if has_val or not cfg.trainer.monitor.startswith("val/")
               else " (there is no validation split: dataset.val_split=0)")
        raise ConfigError(f"trainer.monitor={cfg.trainer.monitor} is not a metric this run logs{why}. Valid "
                          f"names here: {', '.join(valid)}. Set e.g. trainer.monitor={valid[-1]}.")


def resolve_model(cfg: DictConfig) -> None:
    """A model of the user's (`model._target_`) is named by its target, and the keys of the built-in
    option it replaces (`model._target_=mynets.Net` on top of the default `model=mlp`: hidden_sizes,
    ...) are dropped, so the node holds the factory's own arguments and says what was built."""
    target = cfg.model.get("_target_")
    if not target or cfg.model.get("name") == target:
        return
    name = cfg.model.get("name")
    with open_dict(cfg.model):
        if name in MODELS:
            from dlcourse.config import configs_dir

            option = configs_dir() / "model" / f"{name}.yaml"
            dropped = [k for k in (OmegaConf.load(option) if option.is_file() else {}) if k not in ("weights", "name")]
            for key in dropped:
                cfg.model.pop(key, None)
            if dropped:
                log.warning(f"model._target_={target} replaces model={name}: its keys {', '.join(dropped)} are not "
                            f"passed (give your model's own arguments as +model.<argument>=...).")
        cfg.model.name = str(target)
        cfg.model.setdefault("weights", None)


def make_model(cfg: DictConfig, info: DatasetInfo, device: torch.device, task: Task) -> tuple[torch.nn.Module, str]:
    """The configured model (a built-in by `model.name`, or the user's `model._target_`) with the
    task's outputs, initialised, on `device`."""
    resolve_model(cfg)
    options = OmegaConf.to_container(cfg.model, resolve=True)
    target = options.pop("_target_", None)
    name = options.pop("name")
    options.pop("weights", None)  # loaded by load_weights
    if target:
        model = build_user_model(str(target), info.image_shape, task.num_outputs, **options)
    else:
        model = build_model(name, info.image_shape, task.num_outputs, **options)
    init_weights(model, cfg.init.name, gain=cfg.init.gain, std=cfg.init.std)
    model.to(device)
    if cfg.trainer.channels_last:
        model.to(memory_format=torch.channels_last)
    return model, name


def load_weights(cfg: DictConfig, model: torch.nn.Module, model_name: str):
    """`model.weights` loaded into `model` (tensors matched by name and shape; a new head with
    finetune.head=reset): (Pretrained, TransferReport), or None without weights or with finetune=scratch."""
    spec = cfg.model.get("weights")
    if spec is None or not cfg.finetune.pretrained:
        return None
    from dlcourse.transfer import head_modules, load_matching, load_pretrained

    pretrained = load_pretrained(str(spec), model_name, batch_norm=bool(cfg.model.get("batch_norm", False)))
    own = model.state_dict()
    dropped = []
    if cfg.finetune.head == "reset":
        heads = set(head_modules(model))
        dropped = [k for k in pretrained.state_dict if k.rpartition(".")[0] in heads and k in own]
        pretrained.state_dict = {k: v for k, v in pretrained.state_dict.items() if k not in dropped}
    report = load_matching(model, pretrained, model_name=model_name, allow_partial=cfg.finetune.allow_partial)
    report.missing = [k for k in report.missing if k not in dropped]
    report.reinitialised += [(k, "a new head for this task (finetune.head=reset)") for k in dropped]
    first_conv = next((f"{n}.weight" for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)), None)
    if any(name == first_conv for name, _ in report.reinitialised):
        log.warning(f"warning: the pretrained first convolution does not fit this model's ({first_conv} was "
                    "re-initialised): small images get a small-input stem. To use the pretrained stem, resize the "
                    "images: dataset.image_size=224 model.small_input=false.")
    return pretrained, report


def check_given_optimizer(recorded: Optional[str], given: Optional[type]) -> None:
    """A run (or checkpoint) whose optimizer class came from Python needs that class again."""
    if recorded and given is None:
        raise ConfigError(f"this run trained with an optimizer handed in from Python ({recorded}), which its config "
                          "cannot build: pass the class again, dlcourse.train(..., 'resume=true', optimizer=...).")


def make_optimizer(cfg: DictConfig, model: torch.nn.Module, given: Optional[type] = None) -> torch.optim.Optimizer:
    """`optim._target_` (or the class `given` from Python) over the model's parameters, with the
    options of the optim group: lr, weight_decay and the group's own keys."""
    options = OmegaConf.to_container(cfg.optim, resolve=True)
    check_given_optimizer(options.pop("given", None), given)
    f, groups = cfg.finetune, None
    if (f.head_lr_mult, f.backbone_lr_mult, f.layer_decay) != (1.0, 1.0, None):
        from dlcourse.finetune import check_multipliers, param_groups

        check_multipliers(f.head_lr_mult, f.backbone_lr_mult, f.layer_decay)
        groups = param_groups(model, options["lr"], options.get("weight_decay", 0.0), f.head_lr_mult,
                              f.backbone_lr_mult, f.layer_decay, cfg.regularization.decay_bias_and_norm)
    from dlcourse.usercode import UserCodeError, locate, unknown_arguments

    target = str(options.pop("_target_"))
    optimizer_cls = given or locate(target, "optim._target_", "optimizer")
    unknown, names = unknown_arguments(optimizer_cls, options, also=("lr", "weight_decay"))
    if unknown:
        named, start = ((f"optimizer={given.__name__}", f"dlcourse.train('optim=sgd', ..., optimizer={given.__name__})")
                        if given else (f"optim._target_={target}",
                                       f"python train.py optim=sgd optim._target_={target} +optim.<argument>=..."))
        raise UserCodeError(f"{named} takes no argument {', '.join(map(repr, unknown))} (from "
                            f"{', '.join('optim.' + k for k in unknown)}, set by the optim option it replaces). It "
                            f"accepts: {', '.join(sorted(names - {'params'}))}. Start from optim=sgd, which sets only lr "
                            f"and weight_decay: {start}")
    return build_optimizer(model, optimizer_cls, groups=groups,
                           decay_bias_and_norm=cfg.regularization.decay_bias_and_norm, **options)


def _schedule_options(cfg: DictConfig) -> tuple[str, dict]:
    options = OmegaConf.to_container(cfg.sched, resolve=True)
    return options.pop("name"), options


def check_schedule(cfg: DictConfig) -> None:
    name, options = _schedule_options(cfg)
    make_plan(name, 1, cfg.trainer.max_epochs, **options)


def make_schedule(cfg: DictConfig, optimizer: torch.optim.Optimizer, steps_per_epoch: int,
                  mode: str) -> Schedule:
    name, options = _schedule_options(cfg)
    return build_schedule(optimizer, name, steps_per_epoch, cfg.trainer.max_epochs, mode=mode, **options)


def make_losses(cfg: DictConfig, task: Task) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The training criterion and the one for validation and test (without label smoothing); the
    user's `loss._target_` serves both."""
    if cfg.loss.get("given"):
        raise ConfigError(f"this run trained with a loss handed in from Python ({cfg.loss.given}), which its config "
                          "cannot build: pass the loss again (loss=..., e.g. run.evaluate(loss=fn) or "
                          "dlcourse.load(run_dir, loss=fn)).")
    if cfg.loss.get("_target_"):
        from dlcourse.losses import build_user_loss

        if cfg.loss.label_smoothing:
            raise ConfigError(f"loss.label_smoothing={cfg.loss.label_smoothing} belongs to the built-in losses; with "
                              f"loss._target_={cfg.loss._target_} give your loss its own argument (loss.kwargs).")
        kwargs = OmegaConf.to_container(cfg.loss.kwargs, resolve=True) if cfg.loss.kwargs is not None else {}
        loss = build_user_loss(str(cfg.loss._target_), kwargs, task.num_classes, task.name)
        return loss, loss
    return (build_loss(cfg.loss.name, task.num_classes, cfg.loss.label_smoothing, task.name),
            build_loss(cfg.loss.name, task.num_classes, 0.0, task.name))


def make_settings(cfg: DictConfig) -> Settings:
    t, r = cfg.trainer, cfg.regularization
    return Settings(max_epochs=t.max_epochs, monitor=t.monitor, patience=t.early_stopping.patience,
                    min_delta=t.early_stopping.min_delta, precision=str(t.precision),
                    log_every_n_steps=t.log_every_n_steps, l1=r.l1, clip_grad_norm=r.clip_grad_norm,
                    clip_grad_value=r.clip_grad_value, agc=r.agc, val_every_n_epochs=t.val_every_n_epochs,
                    checkpoint_every_n_epochs=t.checkpoint_every_n_epochs)


def make_split(cfg: DictConfig) -> Split:
    """The hold-out (dataset.val_split, dataset.split_seed), or fold cv.fold of cv.folds."""
    d, cv = cfg.dataset, cfg.cv
    if cv.folds is None:
        return Split(d.val_split, d.split_seed)
    return Split(d.val_split, cv.seed, folds=cv.folds, fold=cv.fold or 0, stratified=cv.stratified)


def toy_options(cfg: DictConfig) -> dict:
    """The options of a toy set (dlcourse/data/toy.py); generated from dataset.split_seed."""
    d = cfg.dataset
    if d.name not in TOY_DATASETS:
        return {}
    return dict(n_samples=d.n_samples, noise=d.noise, replicas=d.replicas, arms=d.arms,
                x_range=tuple(d.x_range), function=d.function, seed=d.split_seed)


def make_data(cfg: DictConfig, info: DatasetInfo, device: torch.device,
              stats: Optional[tuple[list, list]] = None) -> tuple[Data, Augmentation]:
    """The dataset as loaders on `device`, with the training augmentation; `stats` = (mean, std)
    replaces the training split's own normalisation (pretrained weights expect theirs)."""
    t, d = cfg.trainer, cfg.dataset
    augment = OmegaConf.to_container(cfg.augment, resolve=True)
    rank, world = distributed.rank_and_world()
    # each data-parallel process draws its own augmentations (rank 0: those of a single process)
    augmentation = build_augmentation(info.num_classes, device, cfg.seed + 7919 * rank, **augment)
    common = dict(batch_size=t.batch_size, eval_batch_size=t.eval_batch_size, split=make_split(cfg), stats=stats,
                  seed=cfg.seed, device=device, shard=(rank, world),
                  limit_train_batches=t.limit_train_batches, channels_last=t.channels_last)
    if d.name in FILE_DATASETS:  # files read by DataLoader workers, not held in memory
        size = info.image_shape[-1]
        data = build_folder_data(d.root, image_size=size, num_workers=d.num_workers,
                                 train_transform=folder_transforms(size, train=True, **augment), **common)
        # per-image ops run in the workers (folder_transforms); only mixup/cutmix stay on the batch
        augmentation = dataclasses.replace(augmentation, transform=None)
    elif info.streamed:  # your own torch Dataset, read by DataLoader workers
        data = build_samples_data(load_source(own_source(cfg)), split_seed=d.split_seed, subset=d.subset,
                                  num_workers=d.num_workers, transform=augmentation.transform, **common)
    else:
        dataset = read_dataset(d.name, root=d.root, download=d.download, seed=cfg.seed,
                               image_shape=d.image_shape, num_classes=d.num_classes, size=d.size,
                               image_size=d.image_size, toy=toy_options(cfg), source=own_source(cfg))
        if d.classes is not None:
            dataset = keep_classes(dataset, list(d.classes))
        if d.shuffle_pixels:
            dataset = shuffle_pixels(dataset, d.split_seed)
        data = build_data(dataset, subset=d.subset, train_transform=augmentation.transform, normalize=d.normalize,
                          per_class=d.per_class, label_noise=d.label_noise, **common)
    if (tuple(data.image_shape), data.num_classes) != (tuple(info.image_shape), info.num_classes):
        raise RuntimeError(f"dataset {d.name}: read {data.image_shape} x {data.num_classes} classes, "
                           f"described as {info.image_shape} x {info.num_classes} (dlcourse.data.describe_dataset)")
    if t.overfit_batches:
        data, augmentation = overfit_batches(data, augmentation, t.overfit_batches, cfg.dataset.name)
    if data.val is None and t.monitor.startswith("val/"):
        raise ConfigError(f"trainer.monitor={t.monitor} needs a validation split, but none was made "
                          f"(dataset.val_split={d.val_split}). Set dataset.val_split>0 or monitor a training "
                          "metric (trainer.monitor=train/loss).")
    return data, augmentation


def make_callbacks(cfg: DictConfig, run_dir: Path, model_name: str, model: Optional[torch.nn.Module] = None) -> list:
    """Diagnostics (`diagnostics.*`), freezing (`finetune.*`, with model.weights) and the run's figures
    (`figures.*`); imported only when on."""
    callbacks, diagnostics = [], None
    g = cfg.diagnostics
    if g.weight_norms or g.activations or g.gradients or g.histograms:
        from dlcourse.diagnostics import Diagnostics

        diagnostics = Diagnostics(g.weight_norms, g.activations, g.gradients, g.histograms, g.every_n_steps)
        callbacks.append(diagnostics)
    f = cfg.finetune
    if model is not None and cfg.model.get("weights") is not None and f.pretrained and (
            f.freeze not in (None, "none") or f.bn == "frozen"):
        from dlcourse.finetune import Finetune, freeze_plan

        plan = freeze_plan(model, f.freeze, f.unfreeze_at_epoch, f.unfreeze_every)
        callbacks.append(Finetune(plan, f.bn == "frozen"))
    if cfg.figures.enabled:
        from dlcourse.data.toy import target_function
        from dlcourse.viz.run_figures import RunFigures

        d = cfg.dataset
        title = f"{model_name} on {d.name}, {cfg.optim._target_.rsplit('.', 1)[-1]} lr {cfg.optim.lr:g}"
        target = target_function(d.name, d.function, d.x_range) if d.name in TOY_DATASETS else None
        callbacks.append(RunFigures(run_dir, title, cfg.figures.every_n_epochs, diagnostics, target))
    nodes = cfg.get("callbacks")
    callbacks += user_callbacks(OmegaConf.to_container(nodes, resolve=True) if nodes else {}, run_dir)
    return callbacks


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
        log.warning(f"warning: trainer.compile=true but torch.compile failed here ({reason[:200]}); "
                    "training without it.")
        return model
    finally:
        model.train()
