"""Figures for the course experiments: learning curves, decision boundaries, 1-D regression fits,
per-layer profiles, overlaid curves and annotated heatmaps. Pure functions over numpy arrays and lists;
each saves a PNG (dpi 100) and returns its path."""
from __future__ import annotations

from pathlib import Path

import matplotlib

from dlcourse.viz import headless  # noqa: E402

headless()
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import ListedColormap, LogNorm, Normalize  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

DPI = 100
BINARY_CMAP = "RdBu_r"  # class 0 blue, class 1 red


def _save(fig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def _margins(fig, left: float, right: float, bottom: float, top: float, wspace: float = 0.0, hspace: float = 0.0) -> None:
    """Fixed margins in inches. The figures every run draws use these instead of constrained layout,
    which measured twice the time of the drawing itself (about 0.15 s of each figure on 2 cores)."""
    w, h = fig.get_size_inches()
    cols, rows = fig.axes[0].get_gridspec().ncols, fig.axes[0].get_gridspec().nrows
    fig.subplots_adjust(left=left / w, right=1 - right / w, bottom=bottom / h, top=1 - top / h,
                        wspace=wspace / ((w - left - right) / cols) if cols > 1 else 0.2,
                        hspace=hspace / ((h - top - bottom) / rows) if rows > 1 else 0.2)


def _title(ax, text: str, **kwargs) -> None:
    """An axes title at a fixed height: matplotlib otherwise measures every tick label to place it
    (a third of the drawing time of a small figure)."""
    ax.set_title(text, y=1.0, pad=6, **kwargs)


def _spans_decades(values, decades: float = 2.0) -> bool:
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    return v.size > 0 and bool((v > 0).all()) and v.max() / v.min() > 10 ** decades


def _series(history: list[dict], key: str) -> tuple[list, list]:
    rows = [(r.get("epoch", i + 1), r[key]) for i, r in enumerate(history) if r.get(key) is not None]
    return [e for e, _ in rows], [v for _, v in rows]


def learning_curves(history: list[dict], path, title: str, best_epoch: int | None = None) -> Path:
    """Loss (train, val) and accuracy — or validation R² for regression — against epoch."""
    has = {k for r in history for k in r}
    second = "acc" if {"train/acc", "val/acc"} & has else "r2" if "val/r2" in has else None
    fig, axes = plt.subplots(1, 2 if second else 1, figsize=(11 if second else 6, 4), squeeze=False)
    _margins(fig, left=0.8, right=0.2, bottom=0.55, top=0.75, wspace=0.75)
    loss_ax = axes[0, 0]
    losses = []
    for split, style in (("train", "-"), ("val", "--")):
        xs, ys = _series(history, f"{split}/loss")
        if xs:
            loss_ax.plot(xs, ys, style, marker="o" if len(xs) < 30 else None, ms=3, label=f"{split} loss")
            losses += ys
    if _spans_decades(losses):
        loss_ax.set_yscale("log")
    loss_ax.set(xlabel="epoch", ylabel="loss" + (" (log scale)" if _spans_decades(losses) else ""))
    _title(loss_ax, "loss")
    if second == "acc":
        ax = axes[0, 1]
        for split, style in (("train", "-"), ("val", "--")):
            xs, ys = _series(history, f"{split}/acc")
            if xs:
                ax.plot(xs, 100 * np.asarray(ys, dtype=float), style, marker="o" if len(xs) < 30 else None, ms=3,
                        label=f"{split} accuracy")
        ax.set(xlabel="epoch", ylabel="accuracy (%)")
        _title(ax, "accuracy")
    elif second == "r2":
        ax = axes[0, 1]
        xs, ys = _series(history, "val/r2")
        ax.plot(xs, ys, "--", marker="o" if len(xs) < 30 else None, ms=3, color="C1", label="val R²")
        ax.set(xlabel="epoch", ylabel="R² (1 = perfect fit)")
        _title(ax, "validation R²")
    for ax in axes.flat:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs 1, 2, 3; never 1.5
        if best_epoch is not None:
            ax.axvline(best_epoch, color="k", ls=":", lw=1.2, label=f"best epoch {best_epoch}")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.suptitle(title)
    return _save(fig, path)


def boundary_grid(x: np.ndarray, steps: int = 200, margin: float = 0.5
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(xx, yy, points[steps², 2]): a grid over the 2-D data x [N, 2] plus `margin` on every side."""
    x = np.asarray(x, dtype=float)
    low, high = x.min(0) - margin, x.max(0) + margin
    xx, yy = np.meshgrid(np.linspace(low[0], high[0], steps), np.linspace(low[1], high[1], steps))
    return xx, yy, np.column_stack([xx.ravel(), yy.ravel()])


def _draw_panel(fig, ax, panel: dict) -> None:
    x, y = np.asarray(panel["x"]), np.asarray(panel["y"]).astype(int)
    xx, yy, scores = panel["xx"], panel["yy"], np.asarray(panel["scores"])
    binary = np.issubdtype(scores.dtype, np.floating)
    if binary:
        cf = ax.contourf(xx, yy, scores, levels=np.linspace(0, 1, 11), cmap=BINARY_CMAP, alpha=0.5)
        ax.contour(xx, yy, scores, levels=[0.5], colors="k", linewidths=1.5)
        fig.colorbar(cf, ax=ax, shrink=0.8, label="P(class 1)", ticks=[0, 0.25, 0.5, 0.75, 1])
        colours = [plt.get_cmap(BINARY_CMAP)(v) for v in (0.0, 1.0)]
    else:
        k = int(max(scores.max(), y.max())) + 1
        colours = [plt.get_cmap("tab10")(i % 10) for i in range(k)]
        ax.contourf(xx, yy, scores, levels=np.arange(k + 1) - 0.5, cmap=ListedColormap(colours), alpha=0.35)
        ax.contour(xx, yy, scores, levels=np.arange(k - 1) + 0.5, colors="k", linewidths=0.8)
    for c in np.unique(y):
        pts = x[y == c]
        ax.scatter(pts[:, 0], pts[:, 1], s=30, color=colours[c], edgecolors="k", linewidths=0.6,
                   label=f"class {c}", zorder=3)
    ax.set(xlim=(xx.min(), xx.max()), ylim=(yy.min(), yy.max()), xlabel="x₁", ylabel="x₂", aspect="equal")
    _title(ax, panel.get("title", ""), fontsize=10)
    ax.legend(fontsize=7, loc="upper right", framealpha=0.8)


def decision_boundaries(panels: list[dict], path, title: str, cols: int | None = None) -> Path:
    """Predicted regions and data of each 2-D classifier panel; one row of up to 4 panels, then wrap."""
    cols = min(len(panels), cols or 4)
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.5 * cols, 4.2 * rows), squeeze=False)
    _margins(fig, left=0.6, right=0.5, bottom=0.55, top=0.8, wspace=1.3, hspace=0.8)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    for ax, panel in zip(axes.flat, panels):
        _draw_panel(fig, ax, panel)
    fig.suptitle(title)
    return _save(fig, path)


def decision_boundary_image(panel: dict) -> np.ndarray:
    """One decision-boundary panel as an RGB uint8 array [H, W, 3] (for add_image, dataformats="HWC")."""
    fig, ax = plt.subplots(figsize=(4, 4), dpi=80, layout="constrained")
    _draw_panel(fig, ax, panel)
    fig.canvas.draw()
    image = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return image


def regression_fit(x: np.ndarray, y: np.ndarray, x_grid: np.ndarray, y_pred: np.ndarray, path, title: str,
                   target: np.ndarray | None = None, contributions: np.ndarray | None = None) -> Path:
    """Data, fitted function, optional true function; optionally each hidden unit's contribution below."""
    order = np.argsort(np.asarray(x_grid).ravel())
    grid = np.asarray(x_grid).ravel()[order]
    two = contributions is not None
    fig, axes = plt.subplots(2 if two else 1, 1, figsize=(7, 7.5 if two else 4.5), squeeze=False, sharex=True,
                             layout="constrained")
    ax = axes[0, 0]
    ax.scatter(np.ravel(x), np.ravel(y), s=12, alpha=0.6, color="C0", label="data")
    if target is not None:
        ax.plot(grid, np.ravel(target)[order], "k--", lw=1.5, label="true function")
    ax.plot(grid, np.ravel(y_pred)[order], color="C3", lw=2, label="network fit")
    ax.set(xlabel="x", ylabel="y", title=title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    if two:
        ax.xaxis.set_tick_params(labelbottom=True)
        low = axes[1, 0]
        c = np.asarray(contributions).reshape(len(grid), -1)[order]
        low.plot(grid, c, lw=0.8, alpha=0.7)
        low.axhline(0, color="k", lw=0.5)
        low.set(xlabel="x", ylabel="contribution to y",
                title=f"each hidden unit's contribution ({c.shape[1]} units); their sum + bias is the fit")
        low.grid(alpha=0.3)
    return _save(fig, path)


def depth_profile(layers: list[str], series: dict[str, list[float]], path, title: str, ylabel: str = "value",
                  log: bool = True) -> Path:
    """Per-layer statistics against depth: one line with markers per named series."""
    n = len(layers)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.5 * n + 2), 4.5), layout="constrained")
    depth = np.arange(1, n + 1)
    for name, values in series.items():
        ax.plot(depth, values, marker="o", ms=4, label=name)
    values = [v for vs in series.values() for v in vs]
    use_log = log and all(np.isfinite(v) and v > 0 for v in values)
    if use_log:
        ax.set_yscale("log")
    long = n > 8 or max((len(str(s)) for s in layers), default=0) > 6
    ax.set_xticks(depth, [str(s) for s in layers], rotation=45 if long else 0, ha="right" if long else "center")
    ax.set(xlabel="layer (input → output)", ylabel=ylabel + (" (log scale)" if use_log else ""), title=title)
    ax.grid(alpha=0.3, which="both" if use_log else "major")
    if len(series) > 1:
        ax.legend(fontsize=8)
    return _save(fig, path)


def curves(series: dict[str, tuple[list[float], list[float]]], path, title: str, xlabel: str, ylabel: str,
           log_y: bool = False, band: dict[str, tuple[list[float], list[float]]] | None = None) -> Path:
    """Overlaid curves (label -> (xs, ys)), optional shaded band (label -> (low, high)), e.g. mean ± std."""
    fig, ax = plt.subplots(figsize=(7, 4.5), layout="constrained")
    for name, (xs, ys) in series.items():
        (line,) = ax.plot(xs, ys, lw=1.5, label=name)
        if band and name in band:
            low, high = band[name]
            ax.fill_between(xs, low, high, color=line.get_color(), alpha=0.2, lw=0)
    if log_y:
        ax.set_yscale("log")
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.grid(alpha=0.3)
    if len(series) > 1 or band:
        ax.legend(fontsize=8, title="shaded: ± std over seeds" if band else None, title_fontsize=7)
    return _save(fig, path)


def best_cell(values: np.ndarray, mark_best: str = "min") -> tuple[int, int]:
    """(row, col) of the smallest (`mark_best="min"`) or largest ("max") value, NaNs ignored."""
    if mark_best not in ("min", "max"):
        raise ValueError(f"mark_best must be 'min' or 'max', not {mark_best!r}")
    v = np.asarray(values, dtype=float)
    flat = np.nanargmin(v) if mark_best == "min" else np.nanargmax(v)
    r, c = np.unravel_index(flat, v.shape)
    return int(r), int(c)


def heatmap(values: np.ndarray, row_labels: list, col_labels: list, path, title: str, xlabel: str, ylabel: str,
            mark_best: str = "min", fmt: str = ".3g", cbar_label: str = "") -> Path:
    """Annotated grid of values; the best cell outlined; log colours when positive and > 2 decades."""
    v = np.asarray(values, dtype=float)
    rows, cols = v.shape
    r, c = best_cell(v, mark_best)
    norm = LogNorm(np.nanmin(v), np.nanmax(v)) if _spans_decades(v) else Normalize(np.nanmin(v), np.nanmax(v))
    fig, ax = plt.subplots(figsize=(max(5.0, 1.0 * cols + 3), max(4.0, 0.5 * rows + 2.5)), layout="constrained")
    im = ax.imshow(v, cmap="viridis", norm=norm, aspect="auto")
    fig.colorbar(im, ax=ax, label=cbar_label + (" (log scale)" if isinstance(norm, LogNorm) else ""))
    for i in range(rows):
        for j in range(cols):
            text = "—" if np.isnan(v[i, j]) else format(v[i, j], fmt)
            dark = np.isfinite(v[i, j]) and norm(v[i, j]) < 0.6
            ax.text(j, i, text, ha="center", va="center", fontsize=8, color="white" if dark else "black",
                    fontweight="bold" if (i, j) == (r, c) else "normal")
    ax.add_patch(Rectangle((c - 0.5, r - 0.5), 1, 1, fill=False, edgecolor="red", lw=3))
    ax.set_xticks(range(cols), [str(s) for s in col_labels])
    ax.set_yticks(range(rows), [str(s) for s in row_labels])
    ax.set(xlabel=xlabel, ylabel=ylabel)
    ax.set_title(f"{title}\nbest ({mark_best}, red box): {format(v[r, c], fmt)} at "
                 f"{ylabel} = {row_labels[r]}, {xlabel} = {col_labels[c]}", fontsize=10)
    return _save(fig, path)
