"""Typed schemas of the training config, registered in Hydra's ConfigStore.

`configs/train.yaml` starts from `train_schema`, so a value of the wrong type or an unknown key
fails when the config is composed, before any data is read. Range checks that types cannot
express (a positive learning rate, a split in [0, 1)) live in `validate`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from dlcourse.data.augment.options import AugmentOptions, check_options as check_augment_options

from dlcourse.errors import ConfigError

PRECISIONS = ("32", "bf16-mixed", "16-mixed")
DEVICES = ("auto", "cpu", "cuda", "mps")
STRATEGIES = ("auto", "ddp")


@dataclass
class EarlyStoppingConfig:
    patience: Optional[int] = None  # epochs without improvement of `trainer.monitor`; null = off
    min_delta: float = 0.0


@dataclass
class TrainerConfig:
    max_epochs: int = 10
    batch_size: Optional[int] = 128  # null = the whole training set (full-batch gradient descent)
    eval_batch_size: int = 1024
    device: str = "auto"
    precision: str = "32"
    limit_train_batches: Optional[int] = None
    overfit_batches: Optional[int] = None  # train and validate on the same first N batches, unaugmented (a sanity check)
    monitor: str = "auto"  # auto = the task's: val/acc (val/loss for regression; train/* without a validation split)
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)
    deterministic: bool = False
    channels_last: bool = False
    compile: bool = False
    strategy: str = "auto"  # auto (one process) | ddp (data-parallel over the processes torchrun starts)
    log_every_n_steps: int = 50
    progress_bar: bool = True
    summary: bool = True  # print the layer-by-layer model summary (train.log always has it)
    val_every_n_epochs: int = 1  # validate (and print the epoch line) every N epochs and after the last
    checkpoint_every_n_epochs: int = 1  # write last.pt and history.csv every N epochs and after the last


@dataclass
class DatasetConfig:
    name: str = MISSING
    root: Optional[str] = "data"  # imagefolder: the folder holding train/ (val/, test/)
    download: bool = False
    val_split: float = 0.1
    split_seed: int = 0  # draws the train/val split, independently of `seed` (which drives training)
    subset: Optional[int] = None  # keep only the first N training images (quick experiments)
    classes: Optional[List[int]] = None  # keep only these classes (relabelled 0..k-1 in this order), e.g. [5,6,7,8,9]
    per_class: Optional[int] = None  # keep the first N training images of each class (a balanced small set)
    normalize: str = "per_channel"  # per_channel | per_pixel | none: the input normalisation (training-split statistics)
    label_noise: float = 0.0  # fraction of training labels replaced by another class (drawn from split_seed)
    shuffle_pixels: bool = False  # one fixed permutation of the pixels for every image (drawn from split_seed)
    image_shape: Optional[List[int]] = None  # synthetic: [C, H, W]
    num_classes: Optional[int] = None  # synthetic
    size: Optional[int] = None  # synthetic: number of training images
    image_size: Optional[int] = None  # digits: side the 8x8 images are resized to; imagefolder: input side
    num_workers: int = 2  # file datasets (DataLoader workers)
    # toy sets (dlcourse/data/toy.py); generated from split_seed, so every training seed sees the same data
    n_samples: Optional[int] = None  # training pool size (null: the set's own default)
    noise: float = 0.0  # std of Gaussian noise on the inputs (classification sets) or the targets (regression)
    replicas: int = 1  # logic gates: copies of each of the 4 corners (with noise: a cloud around each)
    arms: int = 2  # spiral: number of arms (= classes)
    x_range: List[float] = field(default_factory=lambda: [-3.14159265, 3.14159265])  # sine, function: input interval
    function: str = "sin(x)"  # function: y = f(x), numpy names (sin, cos, exp, abs, tanh, sqrt, pi, ...)
    # your own data (dlcourse/data/arrays.py, table.py, factory.py); paths are stored absolute
    path: Optional[str] = None  # tensors: a .npz or .pt file of arrays x, y (x_val, y_val, x_test, y_test, classes); csv: the table
    target: Optional[str] = None  # csv: the column to predict (the other columns are the features)
    test_path: Optional[str] = None  # a separate test file of the same kind; null: x_test, else a seeded 20 % of the samples
    _target_: Optional[str] = None  # module.function or module.DatasetClass of your own: returns arrays or a Dataset
    kwargs: Any = None  # keyword arguments of _target_ (a dict): dataset.kwargs={n:500} or +dataset.kwargs.n=500


@dataclass
class LossConfig:
    name: str = "cross_entropy"
    label_smoothing: float = 0.0
    _target_: Optional[str] = None  # your own loss: an nn.Module class or a function (output, target) -> scalar
    kwargs: Any = None  # its keyword arguments, e.g. loss.kwargs={gamma:2}
    given: Optional[str] = None  # a loss handed in from Python (dlcourse.train(loss=...)): what it was


@dataclass
class InitConfig:
    name: str = "default"
    gain: float = 1.0  # xavier_*, orthogonal
    std: float = 0.01  # normal


@dataclass
class RegularizationConfig:
    l1: float = 0.0  # weight of the L1 penalty on weights
    decay_bias_and_norm: bool = False  # apply weight decay to biases and norm parameters too
    clip_grad_norm: Optional[float] = None
    clip_grad_value: Optional[float] = None
    agc: Optional[float] = None  # adaptive gradient clipping: max unit-wise grad/weight norm ratio


@dataclass
class LRFindConfig:
    """LR range test before training (Smith, 2015; fastai's lr_find): `lr_find=true` is short for
    `lr_find.enabled=true` (train.py)."""

    enabled: bool = False
    start_lr: float = 1e-7
    end_lr: float = 10.0
    num_steps: int = 100  # training steps, the LR growing exponentially from start_lr to end_lr
    smoothing: float = 0.98  # exponential moving average of the loss (debiased)
    diverge_factor: float = 4.0  # stop once the smoothed loss exceeds this multiple of its minimum
    suggestion: str = "steepest"  # steepest | min_div10: what apply=true trains with
    apply: bool = False  # false: stop after the test; true: then train with the suggested LR


@dataclass
class CVConfig:
    folds: Optional[int] = None  # k-fold cross-validation of the training pool; null = off (hold-out)
    fold: Optional[int] = None  # null = every fold in this job (fold_<i>/); i = only fold i
    stratified: bool = True  # folds keep the class proportions
    seed: int = 0  # shuffles the images before they are dealt into folds


@dataclass
class DiagnosticsConfig:
    """Per-layer statistics (dlcourse/diagnostics.py), off by default: `diagnostics=full`."""

    weight_norms: bool = False  # ||w|| of each layer and the total, each epoch
    activations: bool = False  # mean/std and dead-unit fraction of each activation's output (forward hooks)
    gradients: bool = False  # gradient norm of each layer's weights
    histograms: bool = False  # weight and gradient histograms in TensorBoard, each epoch
    every_n_steps: int = 10  # activation and gradient statistics are sampled every N optimizer steps


@dataclass
class FiguresConfig:
    """PNG figures of the run in figures/ (dlcourse/viz/course.py), also logged to TensorBoard."""

    enabled: bool = True
    every_n_epochs: Optional[int] = None  # 2-D inputs: the decision boundary into TensorBoard every N epochs


@dataclass
class FinetuneConfig:
    """Fine-tuning from `model.weights` (dlcourse/finetune.py, dlcourse/transfer.py)."""

    pretrained: bool = True  # false (finetune=scratch): ignore model.weights, start from random weights
    head: str = "reset"  # reset: a new head (the task's classes) | keep: load it too when its shape fits
    freeze: Any = "none"  # none | backbone | a stage (frozen up to and including it) | [module prefixes]
    unfreeze_at_epoch: Optional[int] = None  # everything trainable from this epoch
    unfreeze_every: Optional[int] = None  # gradual: one more stage, from the head down, every N epochs
    head_lr_mult: float = 1.0  # the head's LR = optim.lr * head_lr_mult
    backbone_lr_mult: float = 1.0
    layer_decay: Optional[float] = None  # each stage further from the head: LR * layer_decay more
    bn: str = "train"  # train | frozen: frozen parts stay in eval mode (batch-norm statistics fixed, no dropout)
    normalize: str = "weights"  # weights: the input normalisation the weights were trained with | dataset
    cache_features: str = "auto"  # auto | true | false: train the head on the frozen backbone's features
    allow_partial: bool = False  # true: load what fits from weights of another architecture (else refused)


@dataclass
class TrainConfig:
    seed: int = 0
    resume: Any = None  # null | true | path to a checkpoint
    task: Optional[str] = None  # classification | binary | regression; null = the dataset's own (dlcourse/tasks.py)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    model: Any = MISSING  # {name: ..., <the builder's keyword arguments>}
    optim: Any = MISSING  # {_target_: torch.optim.X, lr: ..., <the optimizer's arguments>}
    sched: Any = MISSING  # {name: none|step|..., warmup_epochs: ..., <the schedule's arguments>}
    init: InitConfig = field(default_factory=InitConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    augment: AugmentOptions = field(default_factory=AugmentOptions)  # dlcourse/data/augment/options.py
    regularization: RegularizationConfig = field(default_factory=RegularizationConfig)
    cv: CVConfig = field(default_factory=CVConfig)
    lr_find: LRFindConfig = field(default_factory=LRFindConfig)
    diagnostics: DiagnosticsConfig = field(default_factory=DiagnosticsConfig)
    figures: FiguresConfig = field(default_factory=FiguresConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    callbacks: Any = field(default_factory=dict)  # {name: {_target_: your.Callback, <its arguments>}}


def path_safe(text: str, limit: int = 120) -> str:
    """`text` usable as one folder name (sweep job directories are named by their overrides)."""
    safe = text.replace("/", "-").replace("\\", "-")
    return safe if len(safe) <= limit else safe[:limit - 3] + "..."


def configs_dir() -> Path:
    """The built-in config groups: dlcourse/configs/, inside the package so that they travel with any
    install (the repository's top-level configs/ is a link to it)."""
    return Path(__file__).resolve().parent / "configs"


def compose_config(overrides=(), config_dir=None, hydra_node: bool = False) -> DictConfig:
    """The training config that `python train.py OVERRIDES` would run (Hydra's compose API), for
    scripts that reuse the config groups (benchmarks, the optimizer playground); `hydra_node`: with
    Hydra's own settings under `hydra` (e.g. an experiment's `hydra.run.dir`)."""

    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    register_configs()
    GlobalHydra.instance().clear()
    configs = config_dir or configs_dir()
    with initialize_config_dir(config_dir=str(configs), version_base="1.3"):
        return compose(config_name="train", overrides=list(overrides), return_hydra_config=hydra_node)


def register_configs() -> None:
    """The schema and resolvers, registered once per process (storing the schema converts the
    dataclasses anew: 0.2 s of every composition otherwise)."""
    if "train_schema.yaml" in ConfigStore.instance().repo:
        return
    ConfigStore.instance().store(name="train_schema", node=TrainConfig)
    OmegaConf.register_new_resolver("path_safe", path_safe, replace=True)
    # an Optuna study's direction from the monitored metric (configs/hparams_search/)
    from dlcourse.tasks import lower_is_better

    OmegaConf.register_new_resolver("monitor_direction",
                                    lambda monitor: "minimize" if lower_is_better(monitor) else "maximize", replace=True)


def _check(ok: bool, key: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"{key}={value!r} is not valid: {allowed}. Fix it on the command line, "
                          f"e.g. `python train.py {key}=...`, or in the YAML file that sets it.")


def validate(cfg: DictConfig) -> None:
    """Range checks that types cannot express; raises ConfigError naming the key."""
    t, d, o = cfg.trainer, cfg.dataset, cfg.optim
    _check(t.max_epochs >= 1, "trainer.max_epochs", t.max_epochs, "it must be an integer >= 1")
    _check(t.batch_size is None or t.batch_size >= 1, "trainer.batch_size", t.batch_size,
           "it must be an integer >= 1, or null for the whole training set (full batch)")
    for key in ("val_every_n_epochs", "checkpoint_every_n_epochs"):
        _check(t[key] >= 1, f"trainer.{key}", t[key], "it must be an integer >= 1")
    _check(t.eval_batch_size >= 1, "trainer.eval_batch_size", t.eval_batch_size, "it must be >= 1")
    _check(t.limit_train_batches is None or t.limit_train_batches >= 1, "trainer.limit_train_batches",
           t.limit_train_batches, "it must be null (all batches) or an integer >= 1")
    _check(t.overfit_batches is None or t.overfit_batches >= 1, "trainer.overfit_batches", t.overfit_batches,
           "it must be null (off) or an integer >= 1")
    _check(t.device in DEVICES, "trainer.device", t.device, f"allowed: {', '.join(DEVICES)}")
    _check(t.strategy in STRATEGIES, "trainer.strategy", t.strategy, f"allowed: {', '.join(STRATEGIES)}")
    _check(str(t.precision) in PRECISIONS, "trainer.precision", t.precision,
           f"allowed: {', '.join(PRECISIONS)}")
    _check(t.log_every_n_steps >= 1, "trainer.log_every_n_steps", t.log_every_n_steps, "it must be >= 1")
    p = t.early_stopping.patience
    _check(p is None or p >= 1, "trainer.early_stopping.patience", p, "it must be null (off) or >= 1")
    _check(0.0 <= d.val_split < 1.0, "dataset.val_split", d.val_split, "it must be in [0, 1)")
    _check(d.subset is None or d.subset >= 1, "dataset.subset", d.subset, "it must be null or >= 1")
    _check(d.per_class is None or d.per_class >= 1, "dataset.per_class", d.per_class, "it must be null or >= 1")
    _check(d.normalize in ("per_channel", "per_pixel", "none"), "dataset.normalize", d.normalize,
           "allowed: per_channel, per_pixel, none")
    _check(0.0 <= d.label_noise <= 1.0, "dataset.label_noise", d.label_noise, "it is a fraction in [0, 1]")
    cv = cfg.cv
    _check(cv.folds is None or cv.folds >= 2, "cv.folds", cv.folds, "it must be null (off) or an integer >= 2")
    _check(cv.fold is None or (cv.folds is not None and 0 <= cv.fold < cv.folds), "cv.fold", cv.fold,
           f"it must be null (all folds) or in [0, cv.folds) with cv.folds set (cv.folds={cv.folds})")
    if d.name == "synthetic":
        shape = list(d.image_shape or [])
        _check(len(shape) == 3 and all(int(s) >= 1 for s in shape), "dataset.image_shape", shape,
               "it must be three positive integers [C,H,W], e.g. [1,28,28] or [3,32,32]")
        _check((d.num_classes or 0) >= 2, "dataset.num_classes", d.num_classes, "it must be >= 2")
        _check((d.size or 0) >= 1, "dataset.size", d.size, "it must be >= 1")
    _check("_target_" in o, "optim._target_", o.get("_target_"), "name a torch.optim class")
    lr = o.get("lr")
    _check(isinstance(lr, (int, float)) and lr >= 0, "optim.lr", lr, "it must be a number >= 0")
    wd = o.get("weight_decay", 0.0)
    _check(isinstance(wd, (int, float)) and wd >= 0, "optim.weight_decay", wd, "it must be a number >= 0")
    _validate_names(cfg)
    check_augment_options(OmegaConf.to_container(cfg.augment, resolve=True))
    r = cfg.regularization
    _check(r.l1 >= 0, "regularization.l1", r.l1, "it must be >= 0")
    for key in ("clip_grad_norm", "clip_grad_value", "agc"):
        v = r[key]
        _check(v is None or v > 0, f"regularization.{key}", v, "it must be null (off) or > 0")
    _check(0.0 <= cfg.loss.label_smoothing < 1.0, "loss.label_smoothing", cfg.loss.label_smoothing,
           "it must be in [0, 1)")
    _check_soft_targets(cfg)
    f = cfg.finetune
    _check(f.head in ("reset", "keep"), "finetune.head", f.head, "allowed: reset, keep")
    _check(f.bn in ("train", "frozen"), "finetune.bn", f.bn, "allowed: train, frozen")
    _check(f.normalize in ("weights", "dataset"), "finetune.normalize", f.normalize, "allowed: weights, dataset")
    _check(str(f.cache_features).lower() in ("auto", "true", "false"), "finetune.cache_features", f.cache_features,
           "allowed: auto, true, false")
    for key in ("unfreeze_at_epoch", "unfreeze_every"):
        _check(f[key] is None or f[key] >= 1, f"finetune.{key}", f[key], "it must be null or an integer >= 1")


def _check_soft_targets(cfg: DictConfig) -> None:
    from dlcourse.losses import SOFT_TARGETS

    mixing = [f"augment.{k}={cfg.augment.get(k)}" for k in ("mixup_alpha", "cutmix_alpha") if cfg.augment.get(k)]
    if mixing and cfg.loss.name not in (*SOFT_TARGETS, "auto") and not cfg.loss.get("given"):
        raise ConfigError(f"loss={cfg.loss.name} does not combine with {' and '.join(mixing)}: mixup and cutmix "
                          "train on mixed class probabilities, which this loss cannot take. Use a loss that "
                          f"can ({', '.join('loss=' + n for n in SOFT_TARGETS)}), or switch mixing off "
                          "(augment.mixup_alpha=0 augment.cutmix_alpha=0).")


# Keys that may differ when a run is resumed; every other key of these groups changes what the
# checkpoint means (which weights, which data and split, which batches, which objective).
RESUME_FIXED = ("seed", "model", "dataset", "trainer.batch_size", "trainer.overfit_batches", "loss", "augment",
                "optim._target_", "cv")
RESUME_FREE = ("dataset.root", "dataset.download", "dataset.num_workers")


def _flat(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: node}


def check_resume(saved: Optional[dict], cfg: DictConfig, path: str) -> None:
    """Stop when the new config changes a key in RESUME_FIXED from the checkpoint's stored config."""
    if saved is None:
        return
    old, new = _flat(saved), _flat(OmegaConf.to_container(cfg, resolve=True))
    fixed = [k for k in old if k not in RESUME_FREE and any(k == f or k.startswith(f + ".") for f in RESUME_FIXED)]
    diff = [f"{k}: {old[k]!r} in the checkpoint, {new.get(k)!r} now" for k in fixed if new.get(k) != old[k]]
    if diff:
        raise ConfigError(f"Cannot resume from {path}: this command changes what the checkpoint means ("
                          f"{'; '.join(diff)}). Drop those overrides to continue the run as it was, or start "
                          "a new run with the new settings (without resume, in another run directory; "
                          f"model.weights={path} starts it from this checkpoint's weights). "
                          "Keys such as trainer.max_epochs, the early-stopping patience, logging and the "
                          "device may change on resume.")

def _validate_names(cfg: DictConfig) -> None:
    """Names that select code, checked before any data is read."""
    from dlcourse.init import SCHEMES
    from dlcourse.losses import ALL_LOSSES
    from dlcourse.models import MODELS
    from dlcourse.models.layers import ACTIVATIONS
    from dlcourse.schedules import SCHEDULES

    builtin_model = not cfg.model.get("_target_") and not cfg.model.get("given")
    builtin_loss = not cfg.loss.get("_target_") and not cfg.loss.get("given")
    for key, value, allowed, check in (("model.name", cfg.model.get("name"), MODELS, builtin_model),
                                       ("model.activation", cfg.model.get("activation", "relu"), ACTIVATIONS, builtin_model),
                                       ("init.name", cfg.init.name, SCHEMES, True),
                                       ("loss.name", cfg.loss.name, ALL_LOSSES, builtin_loss),
                                       ("sched.name", cfg.sched.get("name"), SCHEDULES, True)):
        if check:
            _check(value in allowed, key, value, f"allowed: {', '.join(allowed)} (or your own: {key.split('.')[0]}._target_=module.Name)"
                   if key in ("model.name", "loss.name") else f"allowed: {', '.join(allowed)}")
    for name, node in (cfg.get("callbacks") or {}).items():
        if not isinstance(node, DictConfig) or not node.get("_target_"):
            raise ConfigError(f"callbacks.{name} must be a node with a _target_ naming your callback class, e.g. "
                              f"+callbacks.{name}._target_=mycallbacks.PrintNorms (and its arguments as "
                              f"+callbacks.{name}.<argument>=...).")
