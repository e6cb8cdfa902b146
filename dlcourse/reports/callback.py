"""A Hydra callback that ends every multirun with its report (configs/train.yaml: hydra.callbacks)."""
from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig


class SweepReport(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from dlcourse.reports import write_report

        sweep_dir = Path(config.hydra.sweep.dir)
        try:
            report = write_report(sweep_dir)
        except Exception as e:  # the runs are done and saved; a report problem must not hide that
            logging.getLogger(__name__).warning(
                f"warning: the sweep report could not be written ({type(e).__name__}: {e}); "
                f"build it with: python scripts/report.py {sweep_dir}")
            return
        print(f"TensorBoard of the sweep: tensorboard --logdir {sweep_dir}", flush=True)
        _exit_if_jobs_failed(sweep_dir, report)


def _exit_if_jobs_failed(sweep_dir: Path, report: Path) -> None:
    """A sweep with jobs that stopped on an error ends with exit status 2, once every other job ran
    and the report is written (diverged jobs are results: they do not change the status)."""
    from dlcourse.reports.jobs import find_jobs

    jobs = find_jobs(sweep_dir)
    failed = [j for j in jobs if j.reason.startswith("failed")]
    if failed:
        print(f"\n{len(failed)} of {len(jobs)} jobs failed ({', '.join(j.path.name for j in failed)}); the others "
              f"ran. Each failed job's reason is in {report} and its train.log.", file=sys.stderr, flush=True)
        raise SystemExit(2)
