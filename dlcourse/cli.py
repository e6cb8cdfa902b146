"""The command-line job around `dlcourse.training.run`: user errors as one paragraph, no traceback;
`resume` continues a run with its own overrides."""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

from omegaconf import DictConfig, OmegaConf

from dlcourse.errors import DivergenceError, UserError


def _remove_if_empty(run_dir: Path) -> None:
    """Hydra creates the run directory before the job starts; leave no empty one behind."""
    for folder in (run_dir, run_dir.parent):
        try:
            folder.rmdir()  # only succeeds on an empty directory
        except OSError:
            return


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def saved_overrides(resume, run_dir: Path) -> Optional[list[str]]:
    """The command-line overrides of the run that `resume` continues (its .hydra/overrides.yaml)."""
    if resume is None or resume is False:
        return None
    is_true = resume is True or str(resume).lower() == "true"
    run = run_dir if is_true else Path(str(resume)).resolve().parent.parent  # <run>/checkpoints/last.pt
    path = run / ".hydra" / "overrides.yaml"
    return [str(o) for o in OmegaConf.load(path)] if path.is_file() else None


def resume_overrides(saved: list[str], given: list[str]) -> list[str]:
    """The run's own overrides, then this command's (which win for the same key)."""
    keys = {_key(o) for o in given}
    return [o for o in saved if _key(o) not in keys and not o.startswith("hydra.")] + list(given)


def _shared_run_dir(cfg: DictConfig, run_dir: Path) -> Path:
    """Under torchrun every process composes its own config, and `${now:}` may differ between them:
    all use rank 0's run directory."""
    if cfg.trainer.strategy != "ddp":
        return run_dir
    from dlcourse import distributed
    from dlcourse.builders import select_device

    if not distributed.init("ddp", select_device(cfg.trainer.device).type):
        return run_dir
    shared = Path(distributed.broadcast_text(str(run_dir)))
    if shared != run_dir:
        _remove_if_empty(run_dir)
    return shared


def _say(run_dir: Path, line: str) -> None:
    """A console line after the run, kept in its train.log like every other."""
    print(line, flush=True)
    log = run_dir / "train.log"
    if log.is_file():
        with log.open("a", encoding="utf-8") as f:
            f.write(line + "\n")


def _point_to_cv_job(cfg: DictConfig, run_dir: Path) -> None:
    """After one fold of a cross-validation job ran on its own: how to finish the job."""
    from dlcourse.training import cv_job_of

    job = cv_job_of(cfg.cv, run_dir)
    if job is not None and not (job / "cv_metrics.json").is_file():
        _say(run_dir, f"This was fold {cfg.cv.fold} of the cross-validation in {job}; run its other folds and its "
                      f"summary (cv_metrics.json) with: python train.py resume=true hydra.run.dir={job}")


def add_config_dirs(hc) -> None:
    """`--config-dir <lab folder>` (or `hydra.searchpath=[file://<lab folder>]`): its python files are
    importable for `_target_`s, like the launch directory's (in every job: joblib and SLURM workers
    run this too)."""
    from dlcourse.usercode import add_search_dir

    for source in hc.runtime.config_sources:
        if source.schema == "file" and (source.provider == "command-line" or source.provider.startswith("hydra.searchpath")):
            add_search_dir(source.path)


def run_job(cfg: DictConfig) -> float:
    from hydra import compose
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from dlcourse.training import run

    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    overrides = list(hc.overrides.task)
    add_config_dirs(hc)
    try:
        run_dir = _shared_run_dir(cfg, run_dir)
        saved = saved_overrides(cfg.resume, run_dir)
        if saved:
            overrides = resume_overrides(saved, overrides)
            cfg = compose(config_name=hc.job.config_name, overrides=overrides)
            print(f"Resuming with the run's own overrides and this command's: {' '.join(overrides)}", flush=True)
        result = run(cfg, run_dir, overrides)
        _point_to_cv_job(cfg, run_dir)
        if hc.mode != RunMode.MULTIRUN and (not cfg.lr_find.enabled or cfg.lr_find.apply):  # a sweep says it once
            _say(run_dir, f"TensorBoard: tensorboard --logdir {run_dir}")
        return result
    except UserError as e:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"\nError: {e}", file=sys.stderr, flush=True)
        if hc.mode == RunMode.MULTIRUN:  # one failed job must not abort the sweep: the report lists it
            record_failure(cfg, run_dir, overrides, e)
            return float("nan")
        _remove_if_empty(run_dir)
        raise SystemExit(3 if isinstance(e, DivergenceError) else 2)


def record_failure(cfg: DictConfig, run_dir: Path, overrides: list[str], error: UserError) -> None:
    """A sweep job that stopped: its overrides and its error in its run directory, where the sweep
    report reads them (`.hydra/overrides.yaml`, the last `Error:` line of train.log)."""
    from dlcourse.runlog import write_hydra_files

    if not (run_dir / ".hydra" / "overrides.yaml").is_file():
        write_hydra_files(cfg, run_dir, overrides)
    log = run_dir / "train.log"
    line = f"Error: {error}"
    if line not in (log.read_text(errors="replace").splitlines() if log.is_file() else []):
        with log.open("a", encoding="utf-8") as f:
            f.write(line.replace("\n", " ") + "\n")
