"""Report figures built from what the runs drew or measured per layer: the runs' own figures
(decision boundaries, regression fits) side by side, one per configuration, and the per-layer
diagnostics (activation std, gradient norm, dead units) of each configuration against depth."""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Optional

import matplotlib

from dlcourse.viz import headless  # noqa: E402

headless()
import matplotlib.image as mpimg  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from dlcourse.reports.figures import rank_color  # noqa: E402
from dlcourse.reports.jobs import Job  # noqa: E402
from dlcourse.reports.table import Summary  # noqa: E402

RUN_FIGURES = ("decision_boundary", "regression_fit")  # figures/<name>.png of a run, shown side by side
MAX_PANELS = 12
DEPTH_STATS = {"act_std": "activation std", "grad_norm": "weight-gradient norm", "dead_frac": "dead ReLU units"}


def _first_job_per_configuration(summary: Summary, jobs: list[Job]) -> list[tuple[str, Job]]:
    """One finished job per configuration (its lowest seed), in the order the sweep ran them."""
    configs = dict(zip(summary.jobs["job"], summary.jobs["configuration"]))
    chosen: dict[str, Job] = {}
    for job in sorted(jobs, key=lambda j: j.number):
        if job.ok and job.path.name in configs:
            chosen.setdefault(configs[job.path.name], job)
    return list(chosen.items())[:MAX_PANELS]


def run_figures(summary: Summary, jobs: list[Job], out_dir: Path) -> list[Path]:
    """report_<figure>.png: each configuration's figures/<figure>.png in one grid."""
    pngs = []
    picked = _first_job_per_configuration(summary, jobs)
    for name in RUN_FIGURES:
        panels = [(config, job.path / "figures" / f"{name}.png") for config, job in picked]
        panels = [(c, p) for c, p in panels if p.is_file()]
        if len(panels) < 2:
            continue
        cols = min(4, len(panels))
        rows = math.ceil(len(panels) / cols)
        first = mpimg.imread(panels[0][1])
        aspect = first.shape[0] / first.shape[1]
        fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 4.2 * aspect * rows + 0.6), squeeze=False)
        for ax in axes.flat:
            ax.axis("off")
        for ax, (config, png) in zip(axes.flat, panels):
            ax.imshow(mpimg.imread(png))
            ax.set_title(config, fontsize=9)
        fig.suptitle(f"{name.replace('_', ' ')} of each configuration (first seed)", fontsize=11)
        fig.tight_layout()
        out = out_dir / f"report_{name}.png"
        fig.savefig(out, dpi=110)
        plt.close(fig)
        pngs.append(out)
    return pngs


def _by_depth(job: Job, stat: str) -> Optional[np.ndarray]:
    """The last epoch's diag/<stat>/<layer k> values in depth order (None when not measured)."""
    if job.history is None:
        return None
    columns = [c for c in job.history.columns if c.startswith(f"diag/{stat}/") and re.search(r"\d+$", c)]
    if not columns:
        return None
    columns.sort(key=lambda c: int(re.search(r"(\d+)$", c).group(1)))
    rows = job.history[columns].dropna(how="all")
    return rows.iloc[-1].to_numpy(dtype=float) if len(rows) else None


def depth_profiles(summary: Summary, jobs: list[Job], out: Path) -> Optional[Path]:
    """The per-layer statistics of each configuration (last epoch, first seed) against depth."""
    picked = _first_job_per_configuration(summary, jobs)
    stats = [s for s in DEPTH_STATS if any(_by_depth(job, s) is not None for _, job in picked)]
    if not stats:
        return None
    fig, axes = plt.subplots(1, len(stats), figsize=(5.2 * len(stats), 4.4), squeeze=False)
    ranks = {config: rank for rank, config in enumerate(summary.table["configuration"])}
    legend = {}  # every configuration once, in rank order, whichever panels it appears in
    for ax, stat in zip(axes[0], stats):
        series = {config: _by_depth(job, stat) for config, job in picked}
        series = {c: v for c, v in series.items() if v is not None}
        positive = np.concatenate([v[np.isfinite(v) & (v > 0)] for v in series.values()] or [np.ones(1)])
        log = stat != "dead_frac" and positive.size and positive.max() / positive.min() > 20
        for config, values in series.items():
            silent = log and not (values > 0).any()  # e.g. zero init: nothing to draw on a log axis
            shown = np.where(values > 0, values, np.nan) if log else values
            rank = ranks.get(config, len(ranks))
            line, = ax.plot(np.arange(1, len(values) + 1), shown, marker="o", ms=3, lw=1.4, color=rank_color(rank))
            legend.setdefault(rank, (line, f"{rank + 1}. {config}" + (" (0 at every layer)" if silent else "")))
        if log:
            ax.set_yscale("log")  # vanishing and exploding statistics span decades
        ax.set_xlabel("layer (1 = nearest the input)")
        ax.set_ylabel(DEPTH_STATS[stat] + (" (fraction)" if stat == "dead_frac" else ""))
        ax.set_title(f"{DEPTH_STATS[stat]} by depth (last epoch)", fontsize=10)
        ax.grid(alpha=0.3)
    handles, labels = zip(*(legend[r] for r in sorted(legend)))
    fig.legend(handles, labels, loc="lower center", ncol=min(3, len(handles)), fontsize=8)
    fig.tight_layout(rect=(0, 0.06 + 0.045 * ((len(handles) + 2) // 3), 1, 1))
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def train_val_against_key(summary: Summary, key: str, out: Path) -> Optional[Path]:
    """Training and validation error (last epoch, mean ± std over seeds) against a swept numeric key:
    the under- and over-fitting picture of a capacity sweep."""
    t = summary.table
    if "train/acc_last mean" not in t or "val/acc_last mean" not in t:
        return None
    from dlcourse.reports.jobs import as_number

    x = t[key].map(as_number).to_numpy(dtype=float)
    order = np.argsort(x)
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for split, style in (("train", "-o"), ("val", "-s")):
        mean = 100 * (1 - t[f"{split}/acc_last mean"].to_numpy(dtype=float))
        std = 100 * t[f"{split}/acc_last std"].fillna(0).to_numpy(dtype=float)
        ax.errorbar(x[order], mean[order], yerr=std[order], fmt=style, capsize=3,
                    label=f"{'training' if split == 'train' else 'validation'} error")
    if (x > 0).all() and x.max() / x.min() >= 10:
        ax.set_xscale("log")
    ax.set_xlabel(key)
    ax.set_ylabel("error at the last epoch (%)")
    ax.set_title(f"training vs validation error against {key}", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
