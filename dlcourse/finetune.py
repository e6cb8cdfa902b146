"""Fine-tuning a pretrained model: which parts are frozen at each epoch, learning rates per part,
frozen batch norm, and training the head on cached features (`configs/finetune/`).

The model is split into its head (the last Linear layer, `transfer.head_modules`) and the backbone
(everything else), and the backbone into stages from the input (`transfer.stages`). Every
parameter is in the optimizer from the start, in a group of its own part, so schedules keep
working when layers unfreeze; a frozen parameter has requires_grad=False, hence no gradient, no
weight decay, no L1 term and no momentum update. The freeze state is a function of the epoch,
so a resumed run freezes what its epoch had frozen.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional, Sequence, Union

import torch
from torch import nn

from dlcourse.callbacks import Callback
from dlcourse.errors import ConfigError
from dlcourse.transfer import head_modules, stages


@dataclass
class FreezePlan:
    """Prefixes of module names frozen at each epoch."""

    frozen: list[str]  # frozen from the start
    unfreeze_at_epoch: Optional[int] = None  # everything trainable from this epoch
    unfreeze_every: Optional[int] = None  # gradual: one more stage (from the head down) every N epochs
    order: Sequence[Sequence[str]] = ()  # the frozen stages, nearest the head first

    def frozen_at(self, epoch: int) -> list[str]:
        if self.unfreeze_at_epoch is not None and epoch >= self.unfreeze_at_epoch:
            return []
        if self.unfreeze_every:  # epochs 1..N: the head alone; then one more stage every N epochs
            thawed = {p for stage in self.order[:(epoch - 1) // self.unfreeze_every] for p in stage}
            return [p for p in self.frozen if p not in thawed]
        return list(self.frozen)

    def reason(self) -> str:
        if self.unfreeze_every:
            every = "epoch" if self.unfreeze_every == 1 else f"{self.unfreeze_every} epochs"
            return f"finetune=gradual, one more stage every {every}"
        return f"finetune.unfreeze_at_epoch={self.unfreeze_at_epoch}"


def _matches(name: str, prefixes: Sequence[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _backbone_stages(model: nn.Module) -> list[list[str]]:
    """`transfer.stages` without the head: a stage that holds the head (LeNet's `classifier`) is
    replaced by its other children, so freezing the backbone never freezes the head."""
    head = head_modules(model)
    modules = dict(model.named_modules())

    def split(prefix: str) -> list[str]:
        if _matches(prefix, head):
            return []
        if not any(h.startswith(prefix + ".") for h in head):
            return [prefix]
        children = [f"{prefix}.{n}" for n, _ in modules[prefix].named_children()]
        return [q for c in children for q in split(c)]

    result = [[q for p in stage for q in split(p)] for stage in stages(model)]
    return [s for s in result if s]


def freeze_plan(model: nn.Module, freeze: Union[str, Sequence[str], None], unfreeze_at_epoch: Optional[int] = None,
                unfreeze_every: Optional[int] = None) -> FreezePlan:
    """`freeze`: "none"; "backbone" (all but the head); a stage's module name (that stage and every one
    before it, e.g. "layer2"); or a list of module-name prefixes."""
    backbone_stages = _backbone_stages(model)
    names = {n for n, _ in model.named_modules()}
    if freeze in (None, "none"):
        frozen: list[str] = []
    elif freeze == "backbone":
        frozen = [p for stage in backbone_stages for p in stage]
    elif isinstance(freeze, str):
        upto = next((i for i, stage in enumerate(backbone_stages) if freeze in stage), None)
        if upto is None:
            known = ", ".join(p for stage in backbone_stages for p in stage)
            raise ConfigError(f"finetune.freeze={freeze!r} is not none, backbone or a stage of this model. Its stages "
                              f"(input first): {known}. Or give a list of module names: finetune.freeze=[conv1,layer1].")
        frozen = [p for stage in backbone_stages[:upto + 1] for p in stage]
    else:
        frozen = list(freeze)
        bad = [p for p in frozen if p not in names]
        if bad:
            raise ConfigError(f"finetune.freeze names modules this model does not have: {', '.join(bad)}. Module "
                              f"names start with: {', '.join(sorted({n.split('.')[0] for n in names if n}))}.")
    order = [[p for p in stage if p in frozen] for stage in reversed(backbone_stages)]
    return FreezePlan(frozen, unfreeze_at_epoch, unfreeze_every, [s for s in order if s])


def param_groups(model: nn.Module, lr: float, weight_decay: float, head_lr_mult: float = 1.0,
                 backbone_lr_mult: float = 1.0, layer_decay: Optional[float] = None,
                 decay_bias_and_norm: bool = False) -> list[dict]:
    """Every parameter, grouped by part: the head at lr * head_lr_mult, each backbone stage at
    lr * backbone_lr_mult (* layer_decay ** (stages between it and the head))."""
    from dlcourse.optim import is_decayed

    head = head_modules(model)
    backbone = _backbone_stages(model)
    groups: list[dict] = []

    def add(params: list[tuple[str, nn.Parameter]], scale: float, part: str) -> None:
        split = [(True, [p for n, p in params if decay_bias_and_norm or is_decayed(n, p)]),
                 (False, [p for n, p in params if not (decay_bias_and_norm or is_decayed(n, p))])]
        for decayed, ps in split:
            if ps:
                groups.append({"params": ps, "lr": lr * scale, "weight_decay": weight_decay if decayed else 0.0,
                               "part": part})

    named = list(model.named_parameters())
    taken: set[str] = set()
    add([(n, p) for n, p in named if _matches(n.rpartition(".")[0], head)], head_lr_mult, "head")
    taken |= {n for n, _ in named if _matches(n.rpartition(".")[0], head)}
    for depth, stage in enumerate(reversed(backbone), start=1):
        scale = backbone_lr_mult * (layer_decay ** depth if layer_decay else 1.0)
        mine = [(n, p) for n, p in named if n not in taken and _matches(n, stage)]
        taken |= {n for n, _ in mine}
        add(mine, scale, f"backbone:{stage[0]}")
    add([(n, p) for n, p in named if n not in taken], backbone_lr_mult, "backbone")
    return groups


class Finetune(Callback):
    """Applies the freeze plan at the start of every epoch and keeps frozen parts in eval mode
    (batch-norm statistics fixed, no dropout) when `bn_frozen`."""

    def __init__(self, plan: FreezePlan, bn_frozen: bool):
        self.plan, self.bn_frozen = plan, bn_frozen
        self.current: Optional[list[str]] = None
        self.rewrap: Optional[Callable[[], nn.Module]] = None  # data-parallel: the forward module wrapped anew

    def apply(self, model: nn.Module, epoch: int, log=None) -> bool:
        """Freeze what `epoch` keeps frozen; True when that changed the trainable set."""
        frozen = self.plan.frozen_at(epoch)
        for name, p in model.named_parameters():
            p.requires_grad_(not _matches(name, frozen))
        changed = self.current is not None and frozen != self.current
        if changed and log is not None:
            log(f"epoch {epoch}: unfreezing {', '.join(_with_parameters(model, self.current, frozen))} "
                f"({self.plan.reason()}); still frozen: {', '.join(_with_parameters(model, frozen)) or 'nothing'}")
        self.current = frozen
        if self.bn_frozen:
            modules = dict(model.named_modules())
            for prefix in frozen:
                modules[prefix].eval()
        return changed

    def on_epoch_start(self, engine, epoch: int) -> None:
        if self.apply(engine.model, epoch, engine.logger.info) and self.rewrap is not None:
            engine.forward = self.rewrap()  # DDP reduces the gradients of the parameters trainable when wrapped


def _with_parameters(model: nn.Module, prefixes: Sequence[str], but: Sequence[str] = ()) -> list[str]:
    """The `prefixes` (not in `but`) that hold parameters: what a reader recognises as layers."""
    names = [n for n, _ in model.named_parameters()]
    return [p for p in prefixes if p not in but and any(_matches(n, [p]) for n in names)]


@torch.no_grad()
def backbone_features(model: nn.Module, head: str, loader, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The inputs of the head for every batch of `loader` (eval mode, batched): [N, F] and the labels."""
    modules = dict(model.named_modules())
    parent_name, _, leaf = head.rpartition(".")
    parent = modules[parent_name] if parent_name else model
    original = getattr(parent, leaf)
    setattr(parent, leaf, nn.Identity())
    was_training = model.training
    model.eval()
    try:
        feats, labels = zip(*[(model(x).float().flatten(1), y) for x, y in loader])
    finally:
        setattr(parent, leaf, original)
        model.train(was_training)
    return torch.cat(feats).to(device), torch.cat(labels).to(device)


def cache_features(model: nn.Module, data, device: torch.device):
    """`data` with every split replaced by the backbone's features (computed once), and the head
    module that trains on them. The training loader keeps its generator, batch size and limits,
    so the batches are the same as without the cache."""
    from dlcourse.data import Data, Normalize, TensorLoader

    head = head_modules(model)[-1]
    sizes = {}

    def loader(src, shuffle: bool):
        generator = getattr(src, "generator", None)
        state = generator.get_state() if generator is not None else None
        shard = (0, 1)
        if hasattr(src, "images"):  # in memory: every image once, in stored order
            src_once = TensorLoader(src.images, src.labels, 1024, device=device, normalize=src.normalize)
            shard = (src.rank, src.world)  # data-parallel: this process's share of each global batch, as before
        else:  # image folders: one pass of the loader itself
            src_once = src
        x, y = backbone_features(model, head, src_once, device)
        if state is not None:  # computing the cache must not shift the shuffling of the epochs
            generator.set_state(state)
        sizes["features"] = x.shape[1]
        identity = Normalize(torch.zeros(x.shape[1]), torch.ones(x.shape[1]), device, ndim=2)
        return TensorLoader(x, y, src.batch_size, device=device, normalize=identity, shuffle=shuffle,
                            generator=src.generator if shuffle else None,
                            limit_batches=getattr(src, "limit_batches", None), shard=shard)

    train = loader(data.train, True)
    cached = Data(train, loader(data.val, False) if data.val is not None else None, loader(data.test, False),
                  (sizes["features"],), data.classes, data.normalize, data.num_outputs)
    return cached, dict(model.named_modules())[head]


MODE_DEPENDENT = (nn.modules.dropout._DropoutNd, nn.modules.batchnorm._NormBase)


def trains_below_head(model: nn.Module, frozen: Sequence[str]) -> list[str]:
    """Modules outside the head whose output changes while training with `frozen` frozen: those with
    trainable parameters, and dropout or batch norm not in a frozen (eval-mode) part."""
    head = head_modules(model)
    return [name for name, m in model.named_modules()
            if name and not _matches(name, head) and not _matches(name, frozen)
            and (next(m.parameters(recurse=False), None) is not None or isinstance(m, MODE_DEPENDENT))]


def caching_applies(model: nn.Module, plan: FreezePlan, max_epochs: int, bn_frozen: bool, augmented: bool,
                    setting: Union[str, bool]) -> bool:
    """Whether the head can train on cached features: everything below the head frozen for the whole run,
    in eval mode, and no training augmentation. `setting`: auto | true | false (true fails loudly if not)."""
    setting = str(setting).lower()
    if setting == "false":
        return False
    states = {tuple(plan.frozen_at(e)) for e in range(1, max_epochs + 1)}  # a few distinct freeze states
    training = {n for frozen in states for n in trains_below_head(model, frozen)}
    training = [n for n, _ in model.named_modules() if n in training]
    why = ([f"{', '.join(_with_parameters(model, training) or training)} train below the head"] if training else []) + \
          ([] if bn_frozen else ["finetune.bn=train (frozen parts must stay in eval mode)"]) + \
          (["training augmentation is on"] if augmented else [])
    if setting == "true" and why:
        raise ConfigError(f"finetune.cache_features=true, but the features the head takes would change during "
                          f"training: {'; '.join(why)}. Use finetune=feature_extractor augment=none, or "
                          "finetune.cache_features=auto (caches only when the whole backbone stays frozen).")
    return not why


def check_multipliers(head_lr_mult: float, backbone_lr_mult: float, layer_decay: Optional[float]) -> None:
    for key, v in (("head_lr_mult", head_lr_mult), ("backbone_lr_mult", backbone_lr_mult)):
        if not (isinstance(v, (int, float)) and v >= 0 and math.isfinite(v)):
            raise ConfigError(f"finetune.{key}={v!r} must be a number >= 0 (a multiple of optim.lr).")
    if layer_decay is not None and not 0 < layer_decay <= 1:
        raise ConfigError(f"finetune.layer_decay={layer_decay!r} must be in (0, 1] (null = off).")
