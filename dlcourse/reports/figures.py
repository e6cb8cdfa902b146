"""The figures of a sweep report (matplotlib, written as PNG): the monitored metric against each
swept numeric key, a heatmap of two swept keys, learning curves per configuration, and the
objective per trial of a search."""
from __future__ import annotations

from pathlib import Path

import matplotlib
import matplotlib.patches
import matplotlib.ticker

from dlcourse.viz import headless  # noqa: E402

headless()
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from dlcourse.reports.jobs import Job, as_number  # noqa: E402
from dlcourse.reports.table import Summary  # noqa: E402


WEIGHT_NORM = "diag/weight_norm/total"


def _log_spaced(values: np.ndarray) -> bool:
    """Positive values spanning at least a factor of 10: shown on a log axis."""
    values = values[np.isfinite(values)]
    return len(values) > 2 and values.min() > 0 and values.max() / values.min() >= 10


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _direction(summary: Summary) -> str:
    return "higher is better" if summary.higher_is_better else "lower is better"


def metric_against_key(summary: Summary, key: str, out: Path, scatter: bool = False) -> Path:
    """Mean ± std (over seeds) of the monitored metric against `key`, one line per value of the
    other swept keys (a grid), or one point per trial (`scatter`: a search)."""
    t, m = summary.table, summary.monitor
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    if scatter:
        xs = t[key].map(as_number).to_numpy(dtype=float)
        ax.scatter(xs, t[f"{m} mean"], c="C0")
        best = 0  # the table is ranked
        ax.scatter(xs[best], t[f"{m} mean"].iloc[best], s=120, facecolors="none", edgecolors="C3", label="best")
        ax.legend(fontsize=8)
        others = []
    else:
        others = [k for k in summary.keys if k != key]
    groups = t.groupby(others, sort=False) if others else [((), t)]
    for label, part in ([] if scatter else groups):
        part = part.assign(x=part[key].map(as_number)).sort_values("x")
        name = ", ".join(f"{k}={v}" for k, v in zip(others, label if isinstance(label, tuple) else (label,)))
        ax.errorbar(part["x"], part[f"{m} mean"], yerr=part[f"{m} std"].fillna(0), marker="o", capsize=3,
                    label=name or None)
    xs = t[key].map(as_number).to_numpy(dtype=float)
    if _log_spaced(xs):
        ax.set_xscale("log")
    ax.set_xlabel(key)
    ax.set_ylabel(f"best {m}")
    what = "one point per trial" if scatter else "mean ± std over seeds"
    ax.set_title(f"best {m} against {key} ({what}; {_direction(summary)})", fontsize=10)
    ax.grid(alpha=0.3)
    if others:
        ax.legend(fontsize=8, title=", ".join(others), title_fontsize=8)
    return _save(fig, out)


def heatmap(summary: Summary, out: Path) -> Path:
    """The monitored metric over the first two swept keys (averaged over any other swept key)."""
    a, b = summary.keys[:2]
    m = summary.monitor
    grid = summary.table.pivot_table(index=a, columns=b, values=f"{m} mean", aggfunc="mean")
    for axis in (0, 1):  # numeric keys in numeric order
        labels = grid.axes[axis]
        if all(np.isfinite(as_number(v)) for v in labels):
            grid = grid.reindex(sorted(labels, key=as_number), axis=axis)
    fig, ax = plt.subplots(figsize=(1.2 * len(grid.columns) + 3, 0.6 * len(grid.index) + 2.2))
    image = ax.imshow(grid.to_numpy(dtype=float), cmap="viridis" if summary.higher_is_better else "viridis_r",
                      aspect="auto")
    ax.set_xticks(range(len(grid.columns)), [str(c) for c in grid.columns])
    ax.set_yticks(range(len(grid.index)), [str(i) for i in grid.index])
    ax.set_xlabel(b)
    ax.set_ylabel(a)
    values = grid.to_numpy(dtype=float)
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            if np.isfinite(values[i, j]):
                red, green, blue, _ = image.cmap(image.norm(values[i, j]))  # dark text on light cells
                ax.text(j, i, f"{values[i, j]:.3g}", ha="center", va="center", fontsize=9,
                        color="black" if 0.299 * red + 0.587 * green + 0.114 * blue > 0.5 else "white")
    best = np.unravel_index(np.nanargmax(values) if summary.higher_is_better else np.nanargmin(values), values.shape)
    ax.add_patch(matplotlib.patches.Rectangle((best[1] - 0.5, best[0] - 0.5), 1, 1, fill=False, ec="red", lw=3))
    fig.colorbar(image, ax=ax, label=f"best {m} (mean over seeds)")
    rest = [k for k in summary.keys[2:]]
    ax.set_title(f"best {m} by {a} and {b}" + (f" (mean over {', '.join(rest)})" if rest else "") +
                 f"\nred box: the best, {a}={grid.index[best[0]]}, {b}={grid.columns[best[1]]}", fontsize=10)
    return _save(fig, out)


def _repeats(summary: Summary, jobs: list[Job]) -> str:
    """What the runs of one configuration differ by: seeds, folds, or both."""
    what = [k for k in summary.repeats if k != "cv.fold"] and ["seeds"]
    if "cv.fold" in summary.repeats or any(j.folds for j in jobs):
        what.append("folds")
    return " and ".join(what or ["seeds"])


def rank_color(rank: int) -> str:
    """A configuration's colour in every report figure: by its rank in the table."""
    return f"C{rank % 10}"


def learning_curves(summary: Summary, jobs: list[Job], out: Path) -> Path:
    """Training loss and the monitored metric per epoch: mean over seeds with a ± std band."""
    m = summary.monitor
    panels = list(dict.fromkeys(c for c in ("train/loss", m) if c))
    if any(WEIGHT_NORM in h for j in jobs for h in j.histories):
        panels.append(WEIGHT_NORM)  # diagnostics runs: ||w|| per epoch (the logistic-regression exercise)
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.2), squeeze=False)
    by_config: dict[str, list[pd.DataFrame]] = {}
    configs = dict(zip(summary.jobs["job"], summary.jobs["configuration"]))
    for job in jobs:
        if job.ok and job.path.name in configs:  # a cross-validated job: each fold, like a seed
            by_config.setdefault(configs[job.path.name], []).extend(h.set_index("epoch") for h in job.histories)
    order = list(summary.table["configuration"])
    for ax, column in zip(axes[0], panels):
        for rank, config in enumerate(order):
            runs = [h[column].dropna() for h in by_config.get(config, []) if column in h]  # validated epochs only
            runs = [r for r in runs if len(r)]
            if not runs:
                continue
            curves = pd.concat(runs, axis=1)
            mean, std = curves.mean(axis=1), curves.std(axis=1).fillna(0)
            line, = ax.plot(mean.index, mean, label=f"{rank + 1}. {config}", lw=1.6, color=rank_color(rank))
            lower = (mean - std).where(mean - std > 0, mean / 2) if (mean > 0).all() else mean - std  # log-safe
            ax.fill_between(mean.index, lower, mean + std, color=line.get_color(), alpha=0.2)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ys = np.concatenate([np.asarray(line.get_ydata(), dtype=float) for line in ax.lines] or [np.ones(1)])
        low, high = np.nanmin(ys), np.nanmax(ys)
        if ("loss" in column or column == WEIGHT_NORM) and low > 0 and high / low > 20:
            ax.set_yscale("log")
        ax.set_ylabel(column)
        ax.set_title(f"{column} per epoch (mean ± std over {_repeats(summary, jobs)})", fontsize=10)
        ax.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    if handles:
        fig.legend(handles[:12], labels[:12], loc="lower center", ncol=min(3, len(handles)), fontsize=8,
                   title="rank. configuration", title_fontsize=8)
        fig.tight_layout(rect=(0, 0.08 + 0.045 * ((min(len(handles), 12) + 2) // 3), 1, 1))
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def objective_per_trial(summary: Summary, jobs: list[Job], out: Path) -> Path:
    """A search's objective (the monitored metric) per trial, with the best so far."""
    m = summary.monitor
    numbers = {j.path.name: j.number for j in jobs}
    frame = summary.jobs.groupby("job", sort=False)[m].mean().reset_index()  # a cross-validated trial: its folds' mean
    frame = frame.assign(trial=frame["job"].map(numbers)).sort_values("trial")
    best = frame[m].cummax() if summary.higher_is_better else frame[m].cummin()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.plot(frame["trial"], frame[m], "o", label="trial")
    ax.step(frame["trial"], best, where="post", color="C3", label="best so far")
    ax.set_xlabel("trial (job number)")
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_ylabel(f"best {m} of the trial")
    ax.set_title(f"search objective per trial ({_direction(summary)})", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, out)
