"""The optimizer playground: the optimizers of the `optim` group (the same configs and torch
classes training uses) minimising 2-parameter functions, their trajectories drawn over the contour
plot and their loss against the step (`scripts/playground.py`)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import torch

from dlcourse.errors import ConfigError


@dataclass(frozen=True)
class Surface:
    f: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    start: tuple[float, float]
    minimum: tuple[float, float]
    x_range: tuple[float, float]
    y_range: tuple[float, float]
    sgd_lr: float  # learning rates that show each family at its best here (override with lr=)
    adaptive_lr: float
    log_levels: bool = True


SURFACES = {
    "rosenbrock": Surface(lambda x, y: (1 - x) ** 2 + 100 * (y - x ** 2) ** 2, (-1.5, 2.0), (1.0, 1.0),
                          (-2.0, 2.0), (-1.0, 3.0), 1e-3, 0.05),
    "beale": Surface(lambda x, y: (1.5 - x + x * y) ** 2 + (2.25 - x + x * y ** 2) ** 2
                     + (2.625 - x + x * y ** 3) ** 2, (1.0, 1.5), (3.0, 0.5), (-4.5, 4.5), (-4.5, 4.5), 1e-3, 0.05),
    "saddle": Surface(lambda x, y: x ** 2 - y ** 2, (-1.0, 1e-3), (float("nan"), float("nan")),
                      (-1.5, 1.5), (-1.5, 1.5), 0.05, 0.05, log_levels=False),
    "quadratic": Surface(lambda x, y: 0.5 * (x ** 2 + 20 * y ** 2), (-4.0, 1.5), (0.0, 0.0),
                         (-5.0, 5.0), (-2.5, 2.5), 0.04, 0.3),
}


def trajectory(optimizer_cls: type, options: dict, surface: Surface, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Points [steps + 1, 2] and losses [steps + 1] of `optimizer_cls(**options)` from the start."""
    xy = torch.tensor(surface.start, dtype=torch.float64, requires_grad=True)
    try:
        opt = optimizer_cls([xy], **options)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{optimizer_cls.__name__} rejected {options}: {e}.") from None
    points, losses = [xy.detach().clone()], []
    for _ in range(steps):
        loss = surface.f(xy[0], xy[1])
        losses.append(float(loss.detach()))
        opt.zero_grad()
        loss.backward()
        opt.step()
        points.append(xy.detach().clone())
    losses.append(float(surface.f(*points[-1])))
    return torch.stack(points), torch.tensor(losses)


def run(optimizers: dict[str, tuple[type, dict]], surface_name: str, steps: int, lr: Optional[float] = None) -> dict:
    """{name: (points, losses, lr)} for each optimizer (its config's other arguments kept)."""
    if surface_name not in SURFACES:
        raise ConfigError(f"surface={surface_name!r} is not known: choose one of {', '.join(SURFACES)}.")
    surface = SURFACES[surface_name]
    out = {}
    for name, (cls, options) in optimizers.items():
        chosen = lr if lr is not None else surface.sgd_lr if cls is torch.optim.SGD else surface.adaptive_lr
        points, losses = trajectory(cls, {**options, "lr": chosen}, surface, steps)
        out[name] = (points, losses, chosen)
    return out


def figure(results: dict, surface_name: str, path: Path) -> Path:
    import matplotlib

    from dlcourse.viz import headless

    headless()
    import matplotlib.pyplot as plt
    import numpy as np

    s = SURFACES[surface_name]
    xs, ys = np.linspace(*s.x_range, 300), np.linspace(*s.y_range, 300)
    X, Y = np.meshgrid(xs, ys)
    Z = s.f(torch.from_numpy(X), torch.from_numpy(Y)).numpy()
    fig, (ax, curve) = plt.subplots(1, 2, figsize=(13, 5.2))
    if s.log_levels:
        levels = np.logspace(np.log10(max(Z.min(), 1e-3)), np.log10(Z.max()), 25)
        ax.contour(X, Y, Z, levels=levels, cmap="Greys", linewidths=0.6, norm=matplotlib.colors.LogNorm())
    else:
        ax.contour(X, Y, Z, levels=25, cmap="Greys", linewidths=0.6)
    for i, (name, (points, losses, lr)) in enumerate(results.items()):
        color = f"C{i}"
        p = points.numpy()
        ax.plot(p[:, 0], p[:, 1], "-", color=color, lw=1.6, label=f"{name} (lr {lr:g})")
        ax.plot(p[-1, 0], p[-1, 1], "o", color=color, ms=5)
        curve.plot(np.arange(len(losses)), losses.numpy(), color=color, lw=1.6, label=name)
    ax.plot(*s.start, "ks", ms=7, label="start")
    if not np.isnan(s.minimum[0]):
        ax.plot(*s.minimum, "*", color="gold", mec="black", ms=14, label="minimum")
    ax.set_xlim(*s.x_range)
    ax.set_ylim(*s.y_range)
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_title(f"{surface_name}: trajectories (dot = last point)", fontsize=10)
    ax.legend(fontsize=8, loc="best")
    curve.set_xlabel("step")
    curve.set_ylabel("f(x, y)")
    curve.set_yscale("log" if surface_name != "saddle" else "symlog")
    curve.set_title(f"{surface_name}: loss against step", fontsize=10)
    curve.grid(alpha=0.3)
    curve.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
