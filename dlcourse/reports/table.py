"""One row per configuration of a sweep: mean ± std over its seeds (and folds), ranked."""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from dlcourse.tasks import lower_is_better
from dlcourse.reports.jobs import REPEATS, Job, swept_keys

SUMMED = ("test/acc", "test/loss", "test/acc5", "test/mse", "test/mae", "test/r2", "best_epoch",
          "train/images_per_s", "train/epoch_time_s", "train/acc_last", "val/acc_last", "params",
          "diag/sparsity/total", "diag/weight_norm/total")


SOLVED = "runs at 100% test acc"


@dataclass
class Summary:
    monitor: str
    higher_is_better: bool
    keys: list[str]  # swept keys that define a configuration (repeats excluded)
    repeats: list[str]  # swept keys averaged over (seed, cv.fold)
    jobs: pd.DataFrame  # one row per finished job
    table: pd.DataFrame  # one row per configuration, ranked


def monitor_of(jobs: list[Job]) -> str:
    for job in jobs:
        monitor = job.config.get("trainer", {}).get("monitor")
        if monitor:
            return monitor
    return "val/acc"


def configuration(job: Job, keys: list[str]) -> str:
    return " ".join(f"{k}={job.overrides.get(k, '')}" for k in keys) or "(one configuration)"


def _rows(job: Job, keys: list[str], swept: list[str], monitor: str) -> list[dict]:
    """The job's numbers: one row, or one per fold of a cross-validated job (averaged like seeds)."""
    runs = list(zip(job.folds, job.fold_histories)) if job.folds and len(job.folds) == len(job.fold_histories) \
        else [(m, None) for m in job.folds] or [(job.metrics, job.history)]
    rows = []
    for metrics, history in runs:
        row = {"job": job.path.name, "configuration": configuration(job, keys),
               **{k: job.overrides.get(k) for k in swept}, monitor: metrics.get(f"{monitor}_best")}
        row.update({m: metrics.get(m) for m in SUMMED if m in metrics})
        if history is not None:  # per-epoch diagnostics: their last value
            row.update({m: history[m].dropna().iloc[-1] for m in SUMMED
                        if m not in row and m in history and history[m].notna().any()})
        rows.append(row)
    return rows


def summarize(jobs: list[Job]) -> Summary:
    monitor = monitor_of(jobs)
    higher = not lower_is_better(monitor)
    swept = swept_keys(jobs)
    keys = [k for k in swept if k not in REPEATS]
    repeats = [k for k in swept if k in REPEATS]
    rows = [row for job in jobs if job.ok for row in _rows(job, keys, swept, monitor)]
    frame = pd.DataFrame(rows)
    if frame.empty:
        return Summary(monitor, higher, keys, repeats, frame, pd.DataFrame())
    metrics = [m for m in (monitor, *SUMMED) if m in frame]
    frame[metrics] = frame[metrics].apply(pd.to_numeric, errors="coerce")
    grouped = frame.groupby("configuration", sort=False)
    table = grouped[metrics].agg(["mean", "std"])
    table.columns = [f"{m} {stat}" for m, stat in table.columns]
    table.insert(0, "n", grouped.size())
    for i, k in enumerate(keys):  # the configuration's own values, for figures and the CSV
        table.insert(1 + i, k, grouped[k].first())
    if "test/acc" in frame and (frame["test/acc"] >= 1).any():  # small problems: how often a run solves it
        table.insert(1, SOLVED, grouped["test/acc"].agg(lambda a: f"{int((a >= 1).sum())}/{len(a)}"))
    table = table.sort_values(f"{monitor} mean", ascending=not higher).reset_index()
    table.insert(0, "rank", range(1, len(table) + 1))
    return Summary(monitor, higher, keys, repeats, frame, table)


def markdown_table(summary: Summary) -> str:
    """The ranked table with mean ± std cells."""
    t = summary.table
    metrics = [c[:-len(" mean")] for c in t.columns if c.endswith(" mean")]
    shown = pd.DataFrame({"rank": t["rank"], "configuration": t["configuration"], "n": t["n"]})
    if SOLVED in t:
        shown[SOLVED] = t[SOLVED]
    for m in metrics:
        mean, std = t[f"{m} mean"], t[f"{m} std"]
        if m == "train/epoch_time_s":
            shown[m] = mean.map(lambda v: f"{v:.3g}")
        elif m in ("best_epoch", "train/images_per_s", "params"):
            shown[m] = mean.map(lambda v: f"{v:,.0f}" if v >= 100 else f"{v:.1f}")
        else:
            name = f"best {m}" if m == summary.monitor else m
            shown[name] = [f"{a:.4f} ± {b:.4f}" if pd.notna(b) else f"{a:.4f}" for a, b in zip(mean, std)]
    return shown.to_markdown(index=False)
