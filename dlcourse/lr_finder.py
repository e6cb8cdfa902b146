"""LR range test (Smith, 2015; fastai's `lr_find`): train for a few hundred steps while the learning
rate grows exponentially, watch the smoothed loss, suggest a learning rate, and put everything
back as it was. `python train.py lr_find=true ...` (keys: `lr_find.*`, dlcourse/config.py)."""
from __future__ import annotations

import copy
import itertools
import math
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
from torch import nn

from dlcourse.engine import autocast
from dlcourse.errors import ConfigError


def lr_range_test(model: nn.Module, optimizer: torch.optim.Optimizer, loss_fn: nn.Module, loader,
                  device: torch.device, precision: str = "32", batch_transform: Optional[Callable] = None,
                  generators: tuple = (), start_lr: float = 1e-7, end_lr: float = 10.0, num_steps: int = 100,
                  smoothing: float = 0.98, diverge_factor: float = 4.0, **_) -> dict:
    """The LRs tried, the smoothed losses and the suggestions; model, optimizer and the random
    generators (global, shuffling, augmentation) are restored afterwards."""
    if not 0 < start_lr < end_lr or num_steps < 10 or not 0 <= smoothing < 1:
        raise ConfigError(f"lr_find: start_lr={start_lr}, end_lr={end_lr}, num_steps={num_steps}, "
                          f"smoothing={smoothing} cannot work: it needs 0 < start_lr < end_lr, num_steps >= 10 "
                          "and smoothing in [0, 1).")
    saved_model, saved_optim = copy.deepcopy(model.state_dict()), copy.deepcopy(optimizer.state_dict())
    saved_rng = torch.get_rng_state()
    saved_gens = [g.get_state() if g is not None else None for g in generators]
    base = [g["lr"] for g in optimizer.param_groups]  # per-group ratios are kept
    factor = (end_lr / start_lr) ** (1 / (num_steps - 1))
    lrs, losses, smoothed = [], [], []
    avg, best = 0.0, math.inf
    model.train()
    try:
        batches = itertools.chain.from_iterable(itertools.repeat(loader))  # as many epochs as it takes
        for step, (x, y) in zip(range(num_steps), batches):
            lr = start_lr * factor ** step
            for g, b in zip(optimizer.param_groups, base):
                g["lr"] = lr * b / base[0]
            targets = y
            if batch_transform is not None:
                x, targets = batch_transform(x, y)
            with autocast(device, precision):
                loss = loss_fn(model(x), targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            value = float(loss.detach())
            avg = smoothing * avg + (1 - smoothing) * value
            debiased = avg / (1 - smoothing ** (step + 1))
            lrs.append(lr)
            losses.append(value)
            smoothed.append(debiased)
            if not math.isfinite(debiased) or (step > 5 and debiased > diverge_factor * best):
                break
            best = min(best, debiased)
    finally:
        model.load_state_dict(saved_model)
        optimizer.load_state_dict(saved_optim)
        torch.set_rng_state(saved_rng)
        for g, s in zip(generators, saved_gens):
            if g is not None:
                g.set_state(s)
    return {"lrs": lrs, "losses": losses, "smoothed": smoothed, **suggestions(lrs, smoothed)}


def suggestions(lrs: list[float], smoothed: list[float]) -> dict:
    """The LR of the steepest descent of the smoothed loss (per log10 of the LR), and the LR of its
    minimum divided by 10 (fastai's two suggestions)."""
    values = np.array(smoothed, dtype=float)
    finite = np.isfinite(values)
    lrs_arr, values = np.array(lrs)[finite], values[finite]
    if len(values) < 5:
        raise ConfigError(f"lr_find: the loss diverged after {len(values)} steps; lower lr_find.start_lr.")
    lowest = int(values.argmin())
    slope = np.gradient(values, np.log10(lrs_arr))
    skip = max(1, len(values) // 10)  # the first steps barely move
    window = slope[skip:max(lowest, skip + 1)]
    steepest = skip + int(window.argmin()) if len(window) else lowest
    return {"steepest": float(lrs_arr[steepest]), "min_div10": float(lrs_arr[lowest] / 10),
            "lowest_loss_lr": float(lrs_arr[lowest])}


def figure(result: dict, path: Path, title: str) -> Path:
    from dlcourse.viz import headless

    headless()
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.plot(result["lrs"], result["losses"], color="C0", alpha=0.25, lw=1, label="loss per step")
    ax.plot(result["lrs"], result["smoothed"], color="C0", lw=2, label="smoothed loss")
    low, high = np.nanmin(result["smoothed"]), np.nanmax(result["smoothed"][:max(1, len(result["smoothed"]) // 2)])
    ax.set_ylim(low - 0.1 * (high - low + 1e-9), high + 0.5 * (high - low + 1e-9))
    for key, color, label in (("steepest", "C3", "steepest descent"), ("min_div10", "C2", "minimum / 10")):
        ax.axvline(result[key], color=color, ls="--", label=f"{label}: {result[key]:.2g}")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def find_lr(parts, overrides: Optional[list[str]], lines: list[str]) -> float:
    """`lr_find.enabled`: the range test on a run's components (dlcourse.components); writes
    lr_find.json and figures/lr_find.png and returns the suggestion (`lines`: train.log's first lines)."""
    from omegaconf import OmegaConf

    from dlcourse import distributed
    from dlcourse.runlog import write_hydra_files, write_metrics

    cfg, run_dir, data, augmentation = parts.cfg, parts.run_dir, parts.data, parts.augmentation
    opts = OmegaConf.to_container(cfg.lr_find, resolve=True)
    if opts["suggestion"] not in ("steepest", "min_div10"):
        raise ConfigError(f"lr_find.suggestion={opts['suggestion']!r} is not valid: allowed steepest, min_div10.")
    earlier = _earlier_suggestion(cfg, run_dir)
    if earlier is not None:
        return earlier
    result = lr_range_test(parts.model, parts.optimizer, parts.loss_fn, data.train, parts.device,
                           str(cfg.trainer.precision), augmentation.batch_transform,
                           (data.train.generator, augmentation.generator), **opts)
    chosen = result[opts["suggestion"]]
    if distributed.is_main():
        write_hydra_files(cfg, run_dir, overrides)
        write_metrics(run_dir / "lr_find.json", {**result, "suggestion": opts["suggestion"], "suggested_lr": chosen})
        figure(result, run_dir / "figures" / "lr_find.png",
               f"LR range test: {cfg.model.name} on {cfg.dataset.name}, {cfg.optim._target_.rsplit('.', 1)[-1]}, "
               f"batch {cfg.trainer.batch_size} ({len(result['lrs'])} steps)")
    summary = (f"LR range test over {len(result['lrs'])} steps ({result['lrs'][0]:.1e} to {result['lrs'][-1]:.1e}): "
               f"steepest descent at {result['steepest']:.2g}, minimum / 10 = {result['min_div10']:.2g}; "
               f"{run_dir / 'figures' / 'lr_find.png'}")
    print(summary, flush=True)
    lines.append(summary)
    if not cfg.lr_find.apply:
        print(f"Train with it: python train.py optim.lr={chosen:.2g} ... (or lr_find=true lr_find.apply=true)", flush=True)
        if distributed.is_main():
            (run_dir / "train.log").write_text("\n".join(lines) + "\n")
    return chosen


def _earlier_suggestion(cfg, run_dir: Path) -> Optional[float]:
    """On resume with lr_find.apply: the LR the run's own range test chose (its lr_find.json), so
    the test does not run again."""
    import json

    if cfg.resume in (None, False) or not cfg.lr_find.apply:
        return None
    run = run_dir if str(cfg.resume).lower() == "true" else Path(str(cfg.resume)).resolve().parent.parent
    stored = run / "lr_find.json"
    if not stored.is_file():
        return None
    lr = float(json.loads(stored.read_text())["suggested_lr"])
    print(f"LR range test: the run's own suggestion, optim.lr={lr:.2g} (from {stored})", flush=True)
    return lr
