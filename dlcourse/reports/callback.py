"""A Hydra callback that ends every multirun with its report (configs/train.yaml: hydra.callbacks)."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig


class SweepReport(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from dlcourse.reports import write_report

        sweep_dir = Path(config.hydra.sweep.dir)
        try:
            write_report(sweep_dir)
        except Exception as e:  # the runs are done and saved; a report problem must not hide that
            logging.getLogger(__name__).warning(
                f"warning: the sweep report could not be written ({type(e).__name__}: {e}); "
                f"build it with: python scripts/report.py {sweep_dir}")
