"""The engine's one extension seam: objects that observe (or steer) training at a few points.

Public API. A callback subclasses `Callback` and overrides only the hooks it needs (`HOOKS`); the
engine calls each hook of every callback in order, with the engine itself as first argument
(`engine.model`, `engine.optimizer`, `engine.state` (epoch, step, best, history), `engine.logger`
(`.info(text)`, `.writer`: TensorBoard), `engine.run_dir`, `engine.device`). Hooks that run per
step are looked up once, so a run without callbacks pays nothing. A callback that keeps state
across epochs returns it from `state_dict()` (numbers, strings, lists, dicts, tensors) and takes
it back in `load_state_dict()`: it is stored in every checkpoint, so a resumed run continues
exactly. From the config: `+callbacks.<name>._target_=module.Class` (+ `callbacks.<name>.<arg>=...`);
the built-in diagnostics, figures and fine-tuning are callbacks too.
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

    def state_dict(self) -> dict:
        """What the callback needs to continue after a resume (stored in every checkpoint)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Take back what `state_dict` returned."""


HOOKS = ("on_fit_start", "on_epoch_start", "on_step_start", "on_after_backward", "on_epoch_end", "on_fit_end")


def overrides(callback: Callback, hook: str) -> bool:
    """Whether `callback` has its own `hook` (the engine skips the base class's empty ones)."""
    return getattr(type(callback), hook) is not getattr(Callback, hook)
