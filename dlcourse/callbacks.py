"""The engine's one extension seam: objects that observe (or steer) training at a few points.

A callback overrides only the hooks it needs; the engine calls each hook of every callback in
order. Hooks that run per step are looked up once, so a run without callbacks pays nothing.
"""
from __future__ import annotations

from typing import Any


class Callback:
    """Base class: every hook does nothing."""

    def on_fit_start(self, engine: Any) -> None:
        """Before the first epoch of `fit` (also after a resume)."""

    def on_epoch_start(self, engine: Any, epoch: int) -> None:
        """At the start of training epoch `epoch`, after the model was put in training mode."""

    def on_step_start(self, engine: Any, step: int) -> None:
        """Before the forward pass of optimizer step `step` (counted from 1 over the run)."""

    def on_after_backward(self, engine: Any, step: int) -> None:
        """After the backward pass of step `step`, before the optimizer updates the weights."""

    def on_epoch_end(self, engine: Any, epoch: int, metrics: dict[str, float]) -> None:
        """After epoch `epoch` was trained (and validated when due). Numbers added to `metrics`
        are logged to TensorBoard and history.csv with the epoch's own."""

    def on_fit_end(self, engine: Any) -> None:
        """After the last epoch (early stopping included), before the test set is evaluated."""


def overrides(callback: Callback, hook: str) -> bool:
    """Whether `callback` has its own `hook` (the engine skips the base class's empty ones)."""
    return getattr(type(callback), hook) is not getattr(Callback, hook)
