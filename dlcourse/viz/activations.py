"""Each activation of the model zoo and its derivative (autograd), on one figure: the saturation of
sigmoid and tanh (derivative → 0 on both sides, at most 0.25 for sigmoid) and the dead zone of
ReLU are visible at a glance (`scripts/activations.py`)."""
from __future__ import annotations

from pathlib import Path

import torch

from dlcourse.models.layers import ACTIVATIONS, activation


def curves(names=None, low: float = -5.0, high: float = 5.0, points: int = 1001) -> dict[str, tuple]:
    """{name: (x, f(x), f'(x))} as tensors, the derivative from autograd."""
    out = {}
    for name in names or ACTIVATIONS:
        x = torch.linspace(low, high, points, requires_grad=True)
        y = activation(name)(x)
        # step and sign pass no gradient at all (derivative 0 wherever it exists)
        dy = torch.autograd.grad(y.sum(), x)[0] if y.requires_grad else torch.zeros_like(x)
        out[name] = (x.detach(), y.detach(), dy)
    return out


def figure(path: Path, names=None) -> Path:
    from dlcourse.viz import headless

    headless()
    import matplotlib.pyplot as plt

    data = curves(names)
    cols = 3
    rows = (len(data) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (name, (x, y, dy)) in zip(axes.flat, data.items()):
        ax.axis("on")
        ax.axhline(0, color="gray", lw=0.6)
        ax.axvline(0, color="gray", lw=0.6)
        ax.plot(x, y, lw=2, label="f(x)")
        ax.plot(x, dy, lw=2, ls="--", label="f'(x)")
        ax.set_title(name, fontsize=10)
        ax.set_ylim(-1.6, 3.2)
        ax.grid(alpha=0.3)
        ax.set_xlabel("x")
    axes.flat[0].legend(fontsize=8, loc="upper left")
    fig.suptitle("activations and their derivatives (model.activation=...)", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
