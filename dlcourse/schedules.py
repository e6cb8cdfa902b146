"""Learning-rate schedules as closed-form functions of the optimizer step.

Why not torch.optim.lr_scheduler objects: they are recurrences over their own state, fixed to the
horizon they were built with, so a run resumed with a larger `trainer.max_epochs` either fails
(OneCycleLR stepped past `total_steps`) or climbs back up (cosine past its `T_max`). Here a
schedule is a `Plan` of plain numbers (saved in checkpoints) and the LR of step `s` is computed
from it; the formulas are torch's (tests compare a fresh run with StepLR, MultiStepLR,
ExponentialLR, CosineAnnealingLR, OneCycleLR and LinearLR step by step). ReduceLROnPlateau, which
reacts to metrics and has no horizon, is torch's own.

One meaning for every schedule: steps count from the start of the run, and a warm-up multiplies
the first `warmup_epochs` by a linear ramp from `warmup_start_factor` to 1. So `milestones=[2]`
decays after epoch 2 with or without a warm-up, and cosine spans the whole run.

On extension (resume with another horizon) the plan is re-planned from the step where the run
stopped, starting from the LR it had there: `none`, `step`, `multistep`, `exponential` and
`plateau` have no horizon and simply go on; `cosine` anneals from the current LR to `eta_min` at
the new last step; `onecycle` rises from the current LR to the peak at `pct_start` of the new
horizon (if the run stopped before the peak) and then anneals to its final LR at the new end.
A run that had reached the end of its cosine or one-cycle stays at the final LR when extended;
`sched.restart=true` instead starts a new cycle from the configured LR over the added epochs (a
warm restart, as in SGDR).
"""
from __future__ import annotations

import inspect
import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Optional

import torch
from torch.optim import lr_scheduler as lrs

from dlcourse.errors import CheckpointError, ConfigError

SCHEDULES = ("none", "step", "multistep", "exponential", "cosine", "onecycle", "plateau")
# Each schedule's own arguments (sched.<key>) and their defaults; None = required.
ARGUMENTS: dict[str, dict[str, Any]] = {
    "none": {},
    "step": {"step_size": None, "gamma": 0.1},
    "multistep": {"milestones": None, "gamma": 0.1},
    "exponential": {"gamma": None},
    "cosine": {"eta_min": 0.0},
    "onecycle": {"pct_start": 0.3, "div_factor": 25.0, "final_div_factor": 1e4, "anneal_strategy": "cos",
                 "cycle_momentum": True, "base_momentum": 0.85, "max_momentum": 0.95},
    "plateau": {k: p.default for k, p in inspect.signature(lrs.ReduceLROnPlateau).parameters.items()
                if k not in ("self", "optimizer", "mode", "verbose")},
}
WITHOUT_WARMUP = ("onecycle", "plateau")
WITH_HORIZON = ("cosine", "onecycle")  # the shape spans the run: extending it needs a re-plan (or a restart)  # onecycle warms up by itself; plateau reacts to metrics


def _anneal(start: float, end: float, pct: float, strategy: str = "cos") -> float:
    if strategy == "linear":
        return start + (end - start) * pct
    return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)


def _phase(s: float, start_step: float, end_step: float, start: float, end: float, strategy: str) -> float:
    if end_step <= start_step:
        return end
    return _anneal(start, end, min(1.0, (s - start_step) / (end_step - start_step)), strategy)


@dataclass
class Plan:
    """Everything that decides the LR of a step (saved in checkpoints as plain numbers)."""

    name: str
    steps_per_epoch: int
    total_steps: int
    options: dict = field(default_factory=dict)
    warmup_steps: int = 0
    warmup_start_factor: float = 0.1
    # Horizon-dependent schedules (cosine, onecycle) start their current shape here, at these
    # per-group LRs and momentum (None: the schedule's own start, step 0).
    anchor_step: int = 0
    anchor_lrs: Optional[list] = None
    anchor_momentum: Optional[float] = None
    restart: bool = False  # on extension: a new cycle over the added steps instead of continuing the old one
    cycle_start: int = 0  # the step the current cycle started at (a restart)

    def warmup(self, s: int) -> float:
        if not self.warmup_steps:
            return 1.0
        return self.warmup_start_factor + (1 - self.warmup_start_factor) * min(s, self.warmup_steps) / self.warmup_steps

    def main_lr(self, s: int, base: float, group: int = 0) -> float:
        """The schedule's LR at step `s` for a group whose configured LR is `base` (before warm-up)."""
        o, spe = self.options, self.steps_per_epoch
        if self.name in ("none", "plateau"):
            return base
        if self.name == "step":
            return base * o["gamma"] ** (s // (o["step_size"] * spe))
        if self.name == "multistep":
            return base * o["gamma"] ** sum(s >= m * spe for m in o["milestones"])
        if self.name == "exponential":
            return base * o["gamma"] ** (s / spe)
        a = self.anchor_step
        if self.name == "cosine":
            start = base if self.anchor_lrs is None else self.anchor_lrs[group]
            return _phase(s, a, self.total_steps, start, o["eta_min"], "cos")
        return self._onecycle(s, base, group)[0]

    def _onecycle(self, s: int, base: float, group: int) -> tuple[float, float]:
        """(LR, momentum) of OneCycleLR (two phases), started at the anchor."""
        o, a, total = self.options, self.anchor_step, self.total_steps
        initial = base / o["div_factor"]
        low = initial / o["final_div_factor"]
        peak = self.cycle_start + float(o["pct_start"] * (total - self.cycle_start)) - 1
        lr0 = initial if self.anchor_lrs is None else self.anchor_lrs[group]
        m0 = o["max_momentum"] if self.anchor_momentum is None else self.anchor_momentum
        strategy = o["anneal_strategy"]
        if a <= peak:  # still rising: from the anchor to the peak, then down to the end
            if s <= peak:
                return (_phase(s, a, peak, lr0, base, strategy),
                        _phase(s, a, peak, m0, o["base_momentum"], strategy))
            return (_phase(s, peak, total - 1, base, low, strategy),
                    _phase(s, peak, total - 1, o["base_momentum"], o["max_momentum"], strategy))
        return (_phase(s, a, total - 1, lr0, low, strategy),
                _phase(s, a, total - 1, m0, o["max_momentum"], strategy))

    def momentum(self, s: int) -> Optional[float]:
        """The momentum (or Adam's beta1) one-cycle sets at step `s`; None when not cycled."""
        if self.name != "onecycle" or not self.options["cycle_momentum"]:
            return None
        return self._onecycle(s, 1.0, 0)[1]

    def lr(self, s: int, base: float, group: int = 0) -> float:
        return self.warmup(s) * self.main_lr(s, base, group)

    def replanned(self, new: "Plan", step: int, bases: list[float]) -> "Plan":
        """`new`, continued from `step` where this plan left the LRs (see the module docstring)."""
        if replace(self, anchor_step=0, anchor_lrs=None, anchor_momentum=None, cycle_start=0) == new:
            return self  # the same plan: continue it exactly
        if new.restart and new.name in WITH_HORIZON and step < new.total_steps:
            return replace(new, anchor_step=step, cycle_start=step)  # a fresh cycle from here to the new end
        return replace(new, anchor_step=step, anchor_lrs=[self.main_lr(step, b, i) for i, b in enumerate(bases)],
                       anchor_momentum=self.momentum(step))


def make_plan(name: str, steps_per_epoch: int, max_epochs: int, warmup_epochs: float = 0.0,
              warmup_start_factor: float = 0.1, restart: bool = False, **options) -> Plan:
    """Check `sched.*` and return the plan; every error names the key (no optimizer needed)."""
    if name not in SCHEDULES:
        raise ConfigError(f"sched.name={name!r} is not known: choose one of {', '.join(SCHEDULES)}.")
    known = ARGUMENTS[name]
    unknown = sorted(set(options) - set(known))
    if unknown:
        allowed = ", ".join(f"sched.{k}" for k in (*known, "warmup_epochs")) or "sched.warmup_epochs only"
        raise ConfigError(f"sched.{unknown[0]} is not an argument of sched={name}: allowed {allowed} "
                          f"(see configs/sched/{name}.yaml).")
    missing = [k for k, v in known.items() if v is None and options.get(k) is None]
    if missing:
        raise ConfigError(f"sched={name} needs sched.{missing[0]} (see configs/sched/{name}.yaml).")
    if warmup_epochs < 0 or not 0 < warmup_start_factor <= 1:
        raise ConfigError(f"sched.warmup_epochs={warmup_epochs}, sched.warmup_start_factor={warmup_start_factor}: "
                          "the warm-up needs warmup_epochs >= 0 and a start factor in (0, 1].")
    if warmup_epochs and name in WITHOUT_WARMUP:
        raise ConfigError(f"sched.warmup_epochs={warmup_epochs} does not combine with sched={name} "
                          "(onecycle warms up by itself; plateau reacts to metrics): set it to 0.")
    if restart and name not in WITH_HORIZON:
        raise ConfigError(f"sched.restart=true applies to schedules with a horizon ({', '.join(WITH_HORIZON)}); "
                          f"sched={name} simply goes on when a run is extended: drop sched.restart.")
    o = {**known, **options}
    if name == "onecycle" and not 0 <= o["pct_start"] <= 1:
        raise ConfigError(f"sched.pct_start={o['pct_start']} is not valid: it must be in [0, 1].")
    if name == "step" and o["step_size"] < 1:
        raise ConfigError(f"sched.step_size={o['step_size']} is not valid: it is a number of epochs >= 1.")
    return Plan(name, steps_per_epoch, steps_per_epoch * max_epochs, o,
                round(warmup_epochs * steps_per_epoch), warmup_start_factor, restart=bool(restart))


class Schedule:
    """Sets the optimizer's LR (and one-cycle's momentum) for every step from a `Plan`; a plateau
    schedule instead lowers the LR when the monitored metric stalls (after each epoch)."""

    def __init__(self, optimizer: torch.optim.Optimizer, plan: Plan, mode: str = "max"):
        self.optimizer, self.plan, self.step = optimizer, plan, 0
        for g in optimizer.param_groups:
            g.setdefault("initial_lr", g["lr"])
        self.plateau = None
        if plan.name == "plateau":
            self.plateau = lrs.ReduceLROnPlateau(optimizer, mode=mode, **plan.options)
        self.momentum_key = None
        if plan.momentum(0) is not None:
            g = optimizer.param_groups[0]
            self.momentum_key = "betas" if "betas" in g else "momentum" if g.get("momentum") else None
        self._apply()

    @property
    def sets_lr(self) -> bool:
        return self.plan.name not in ("none", "plateau") or self.plan.warmup_steps > 0

    def _apply(self) -> None:
        if self.sets_lr:
            for i, g in enumerate(self.optimizer.param_groups):
                g["lr"] = self.plan.lr(self.step, g["initial_lr"], i)
        if self.momentum_key:
            m = self.plan.momentum(self.step)
            for g in self.optimizer.param_groups:
                g[self.momentum_key] = (m, *g["betas"][1:]) if self.momentum_key == "betas" else m

    def at_final_lr(self) -> bool:
        """Whether a schedule with a horizon stays at one LR for the rest of the run: an extended
        run that had reached the end of its cosine or one-cycle (and no restart)."""
        p = self.plan
        if p.name not in WITH_HORIZON or self.step >= p.total_steps - 1:
            return False
        base = self.optimizer.param_groups[0]["initial_lr"]
        return math.isclose(p.main_lr(self.step, base), p.main_lr(p.total_steps - 1, base), rel_tol=1e-9, abs_tol=1e-12)

    def after_batch(self) -> None:
        self.step += 1
        self._apply()

    def after_epoch(self, metric: float) -> None:
        if self.plateau is not None:
            self.plateau.step(metric)

    def state_dict(self) -> dict:
        return {"step": self.step, "plan": asdict(self.plan),
                "plateau": self.plateau.state_dict() if self.plateau is not None else None}

    def load_state_dict(self, state: dict) -> None:
        """Continue a saved schedule; a different plan (a new horizon) is re-planned from its step."""
        if "plan" not in state:
            raise CheckpointError("The checkpoint's learning-rate schedule was written by an older version "
                                  "of dlcourse and cannot be continued; start a new run.")
        self.step = state["step"]
        bases = [g["initial_lr"] for g in self.optimizer.param_groups]
        self.plan = Plan(**state["plan"]).replanned(self.plan, self.step, bases)
        if self.plateau is not None and state.get("plateau"):
            self.plateau.load_state_dict(state["plateau"])
        self._apply()


def build_schedule(optimizer: torch.optim.Optimizer, name: str, steps_per_epoch: int, max_epochs: int,
                   mode: str = "max", **options) -> Schedule:
    """The schedule `name` (configs/sched/) over `max_epochs` epochs of `steps_per_epoch` steps."""
    return Schedule(optimizer, make_plan(name, steps_per_epoch, max_epochs, **options), mode)
