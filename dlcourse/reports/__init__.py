"""Sweep reports: a sweep directory -> `report.md`, `report.csv` and figures (and the same in
TensorBoard), from what every job wrote. `scripts/report.py SWEEP_DIR` builds one; a multirun
builds its own at the end (`dlcourse.reports.callback.SweepReport`)."""
from __future__ import annotations

import time
from pathlib import Path

from dlcourse.errors import UserError

__all__ = ["write_report"]


def _is_search(sweep_dir: Path) -> bool:
    """Whether the sweep was a search (Optuna) rather than a grid: its trials come in order."""
    multirun = sweep_dir / "multirun.yaml"
    return (sweep_dir / "optimization_results.yaml").is_file() or (
        multirun.is_file() and "optuna" in multirun.read_text().lower())


def _shell(override: str) -> str:
    return f"'{override}'" if any(c in override for c in " []{}(),*?$") else override


def _averaged_over(jobs, summary) -> str:
    folds = sorted({len(j.folds) for j in jobs if j.ok and j.folds})
    over = list(summary.repeats)
    if folds:
        over.append(f"the {'/'.join(map(str, folds))} folds of each run")
    return f"{' and '.join(over)} (n)" if over else "the runs (n runs)"


def config_dirs(sweep_dir: Path) -> list[str]:
    """The `--config-dir` folders the sweep was started with (from Hydra's multirun.yaml)."""
    from omegaconf import OmegaConf

    path = sweep_dir / "multirun.yaml"
    sources = OmegaConf.select(OmegaConf.load(path), "hydra.runtime.config_sources") if path.is_file() else None
    return [str(s.path) for s in sources or [] if s.provider == "command-line" and s.schema == "file"]


def best_command(jobs, summary, sweep_dir: Path) -> str:
    """The command that trains the best configuration (for one seed: add `seed=...`)."""
    best = summary.table["configuration"].iloc[0]
    job = next(j for j in jobs if j.ok and j.path.name in set(summary.jobs.loc[summary.jobs["configuration"] == best, "job"]))
    overrides = [f"{k}={v}" for k, v in job.overrides.items() if k not in summary.repeats]
    folders = [f"--config-dir {_shell(d)}" for d in config_dirs(sweep_dir)]
    return " ".join(["python train.py", *folders, *map(_shell, overrides)])


def write_report(sweep_dir: Path | str, log=print) -> Path:
    """Build the report of `sweep_dir`; returns the path of report.md."""
    from dlcourse.reports import figures, gallery
    from dlcourse.reports.jobs import find_jobs
    from dlcourse.reports.table import markdown_table, summarize

    started = time.perf_counter()
    sweep_dir = Path(sweep_dir)
    jobs = find_jobs(sweep_dir)
    if not jobs:
        raise UserError(f"{sweep_dir} holds no runs (no */.hydra/overrides.yaml): give the directory of a "
                        "multirun sweep, e.g. outputs/multirun/<date>/<time>.")
    summary = summarize(jobs)
    for old in sweep_dir.glob("report_*.png"):  # figures of an earlier build of this report
        old.unlink()
    lines = [f"# Sweep report: {sweep_dir}", ""]
    done = sum(j.ok for j in jobs)
    lines.append(f"{len(jobs)} jobs ({done} finished), {len(summary.table)} configurations. Swept: "
                 f"{', '.join(summary.keys + summary.repeats) or 'nothing'}. Ranked by the best "
                 f"`{summary.monitor}` of each run ({'higher' if summary.higher_is_better else 'lower'} is "
                 f"better); cells are mean ± sample std over {_averaged_over(jobs, summary)}.")
    lines.append("")
    pngs = []
    if not summary.table.empty:
        summary.table.to_csv(sweep_dir / "report.csv", index=False)
        lines += ["## Ranking", "", markdown_table(summary), "", "## Best configuration", "",
                  f"    {best_command(jobs, summary, sweep_dir)}", ""]
        if summary.repeats:
            values = sorted(set(summary.jobs[summary.repeats[0]].dropna()), key=str)
            lines += [f"(its runs used {summary.repeats[0]}={','.join(map(str, values))})", ""]
        search = _is_search(sweep_dir)
        for key in summary.keys:
            if summary.table[key].map(figures.as_number).notna().all() and summary.table[key].nunique() > 1:
                pngs.append(figures.metric_against_key(summary, key, sweep_dir / f"report_{key.replace('/', '_')}.png",
                                                       scatter=search))
        if len(summary.keys) >= 2 and not search:  # a grid; a search's points do not fill one
            pngs.append(figures.heatmap(summary, sweep_dir / "report_heatmap.png"))
        if any(j.histories for j in jobs):
            pngs.append(figures.learning_curves(summary, jobs, sweep_dir / "report_curves.png"))
        pngs += gallery.run_figures(summary, jobs, sweep_dir)
        numeric = [k for k in summary.keys if summary.table[k].map(figures.as_number).notna().all()]
        if len(summary.keys) == 1 and numeric:
            fit = gallery.train_val_against_key(summary, numeric[0], sweep_dir / "report_train_vs_val.png")
            if fit is not None:
                pngs.append(fit)
        depth = gallery.depth_profiles(summary, jobs, sweep_dir / "report_depth.png")
        if depth is not None:
            pngs.append(depth)
        if search:
            pngs.append(figures.objective_per_trial(summary, jobs, sweep_dir / "report_trials.png"))
    failed = [j for j in jobs if not j.ok]
    if failed:
        lines += ["## Failed and diverged jobs", ""]
        lines += [f"- `{j.path.name}` ({' '.join(f'{k}={v}' for k, v in j.overrides.items())}): {j.reason}"
                  for j in failed]
        lines.append("")
    if pngs:
        lines += ["## Figures", ""] + [f"![{p.stem}]({p.name})" for p in pngs] + [""]
    report = sweep_dir / "report.md"
    report.write_text("\n".join(lines))
    _to_tensorboard(sweep_dir, report.read_text(), pngs)
    log(f"Sweep report: {report} ({len(jobs)} jobs, {len(pngs)} figures, {time.perf_counter() - started:.1f} s)")
    return report


def _to_tensorboard(sweep_dir: Path, markdown: str, pngs: list[Path]) -> None:
    """The report beside the runs: `tensorboard --logdir <sweep dir>` shows it as the run `report`."""
    from dlcourse.runlog import tensorboard_pictures

    for old in (sweep_dir / "report").glob("events.out.tfevents.*"):  # an earlier build of this report
        old.unlink()
    # under viz/ like every run's pictures: TensorBoard lists them after the train/ and val/ curves
    tensorboard_pictures(sweep_dir / "report", {f"viz/{png.stem}": png for png in pngs}, {"report": markdown})
