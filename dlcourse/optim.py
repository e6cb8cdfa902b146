"""Optimizers, learning-rate schedules, penalties and gradient clipping."""
from __future__ import annotations

from typing import Iterable, Optional

import torch
from torch import nn

from dlcourse.errors import ConfigError


def is_decayed(name: str, param: nn.Parameter) -> bool:
    """Weights of conv/linear layers are decayed; biases and norm-layer parameters (1-D) are not."""
    return param.ndim > 1 and not name.endswith(".bias")


def param_groups(model: nn.Module, weight_decay: float, decay_bias_and_norm: bool = False) -> list[dict]:
    """Parameter groups with weight decay on weights only (unless `decay_bias_and_norm`). Frozen
    parameters are included: they get no gradient, so no update, until they are unfrozen."""
    params = list(model.named_parameters())
    if decay_bias_and_norm or weight_decay == 0:
        return [{"params": [p for _, p in params], "weight_decay": weight_decay}]
    decay = [p for n, p in params if is_decayed(n, p)]
    no_decay = [p for n, p in params if not is_decayed(n, p)]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(model: nn.Module, optimizer_cls: type, lr: float, weight_decay: float = 0.0,
                    decay_bias_and_norm: bool = False, groups: Optional[list[dict]] = None,
                    **kwargs) -> torch.optim.Optimizer:
    """`optimizer_cls` (a torch.optim class) over the model's parameters (or the given `groups`)."""
    groups = groups if groups is not None else param_groups(model, weight_decay, decay_bias_and_norm)
    try:
        return optimizer_cls(groups, lr=lr, **kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"optim ({optimizer_cls.__name__}) rejected its arguments: {e}. "
                          "Check the optim.* keys against the optimizer's documentation.") from None


def l1_penalty(model: nn.Module) -> torch.Tensor:
    """Sum of |w| over the decayed weights (what an L1 regularizer adds to the loss, before its factor)."""
    return sum(p.abs().sum() for n, p in model.named_parameters() if p.requires_grad and is_decayed(n, p))


@torch.no_grad()
def adaptive_clip_(params: Iterable[nn.Parameter], clip: float, eps: float = 1e-3) -> None:
    """Adaptive gradient clipping (Brock et al., 2021): unit-wise ||g|| <= clip * max(||w||, eps)."""
    for p in params:
        if p.grad is None:
            continue
        dims = tuple(range(1, p.ndim)) if p.ndim > 1 else None
        w_norm = p.norm(dim=dims, keepdim=True).clamp_min(eps) if dims else p.norm().clamp_min(eps)
        g_norm = p.grad.norm(dim=dims, keepdim=True) if dims else p.grad.norm()
        max_norm = w_norm * clip
        scale = (max_norm / g_norm.clamp_min(1e-6)).clamp(max=1.0)
        p.grad.mul_(scale)


def clip_gradients(params: list[nn.Parameter], norm: Optional[float] = None, value: Optional[float] = None,
                   agc: Optional[float] = None) -> None:
    """Apply whichever clipping is configured: by value, by global norm, adaptive (unit-wise)."""
    if value is not None:
        nn.utils.clip_grad_value_(params, value)
    if norm is not None:
        nn.utils.clip_grad_norm_(params, norm, foreach=True)
    if agc is not None:
        adaptive_clip_(params, agc)
