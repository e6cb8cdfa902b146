"""The command-line job around `dlcourse.train.run`: user errors as one paragraph, no traceback."""
from __future__ import annotations

import os
import sys
from pathlib import Path

from omegaconf import DictConfig

from dlcourse.errors import DivergenceError, UserError


def _remove_if_empty(run_dir: Path) -> None:
    """Hydra creates the run directory before the job starts; leave no empty one behind."""
    for folder in (run_dir, run_dir.parent):
        try:
            folder.rmdir()  # only succeeds on an empty directory
        except OSError:
            return


def run_job(cfg: DictConfig) -> float:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from dlcourse.train import run

    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    try:
        return run(cfg, run_dir)
    except UserError as e:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"\nError: {e}", file=sys.stderr, flush=True)
        _remove_if_empty(run_dir)
        if isinstance(e, DivergenceError) and hc.mode == RunMode.MULTIRUN:
            return float("nan")  # one diverged job must not abort the sweep
        raise SystemExit(3 if isinstance(e, DivergenceError) else 2)
