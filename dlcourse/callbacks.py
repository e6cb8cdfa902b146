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


def user_callbacks(nodes: dict, run_dir) -> list[Callback]:
    """The callbacks of the config's `callbacks.<name>` nodes ({_target_: module.Class, <arguments>}),
    each built with its arguments (and `run_dir` where its signature names it) and named by its key."""
    from dlcourse.usercode import UserCodeError, call, locate

    made = []
    for name, node in nodes.items():
        options = dict(node)
        target, key = str(options.pop("_target_")), f"callbacks.{name}._target_"
        cls = locate(target, key, "callback")
        if not issubclass(cls, Callback):
            raise UserCodeError(f"{key}={target} is not a subclass of dlcourse.callbacks.Callback: derive it from "
                                f"Callback and override the hooks it needs ({', '.join(HOOKS)}).")
        own = [h for h in HOOKS if getattr(cls, h) is not getattr(Callback, h)]
        unknown = sorted(m for m in vars(cls) if m.startswith("on_") and m not in HOOKS)
        if unknown or not own:
            why = f"its method(s) {', '.join(unknown)} are not hooks" if unknown else "it overrides none of the hooks"
            raise UserCodeError(f"{key}={target}: {why}, so the engine would never call it. The hooks are "
                                f"{', '.join(HOOKS)} (dlcourse/callbacks.py documents when each runs).")
        callback = call(cls, key, target, options, {"run_dir": run_dir})
        callback.config_key = name
        made.append(callback)
    return made
