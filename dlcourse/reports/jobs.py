"""The jobs of a sweep directory, read from what every run writes: `.hydra/overrides.yaml`,
`.hydra/config.yaml`, `metrics.json`, `history.csv` and `train.log`."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import pandas as pd
import yaml

REPEATS = ("seed", "cv.fold")  # keys whose values repeat one configuration (averaged over)
NOT_CONFIG = ("resume", "hparams_search")  # keys that say how a job ran, not what it trained


def split_override(override: str) -> tuple[str, str]:
    key, _, value = override.partition("=")
    return key.lstrip("+~"), value


@dataclass
class Job:
    path: Path
    number: int
    overrides: dict[str, str]  # key -> value as typed on the command line
    config: dict[str, Any]
    metrics: Optional[dict[str, Any]]
    history: Optional[pd.DataFrame]
    reason: str = ""  # why it has no usable result (failed or diverged)
    extra: dict[str, Any] = field(default_factory=dict)
    folds: list[dict[str, Any]] = field(default_factory=list)  # a cross-validated job: each fold's metrics
    fold_histories: list[pd.DataFrame] = field(default_factory=list)

    @property
    def histories(self) -> list[pd.DataFrame]:
        """The per-epoch histories to average: each fold's, or the run's own."""
        return self.fold_histories or ([self.history] if self.history is not None else [])

    @property
    def ok(self) -> bool:
        return not self.reason


def _number(name: str) -> int:
    head = name.split("_", 1)[0]
    return int(head) if head.isdigit() else 10 ** 9


def _last_error(log: Path) -> str:
    if not log.is_file():
        return ""
    errors = [line[len("Error: "):] for line in log.read_text(errors="replace").splitlines()
              if line.startswith("Error: ")]
    return errors[-1] if errors else ""


def read_job(path: Path) -> Job:
    overrides = dict(split_override(str(o)) for o in yaml.safe_load((path / ".hydra/overrides.yaml").read_text()) or [])
    for key in NOT_CONFIG:
        overrides.pop(key, None)
    config_file = path / ".hydra/config.yaml"
    config = yaml.safe_load(config_file.read_text()) if config_file.is_file() else {}
    metrics_file, history_file = path / "metrics.json", path / "history.csv"
    metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else None
    history = pd.read_csv(history_file) if history_file.is_file() else None
    reason = ""
    if metrics is None:
        reason = "failed: " + (_last_error(path / "train.log") or "no metrics.json (the job did not finish)")
    elif metrics.get("diverged"):
        reason = "diverged: " + (_last_error(path / "train.log") or "the loss became NaN or infinite")
    job = Job(path, _number(path.name), overrides, config, metrics, history, reason)
    cv_file = path / "cv_metrics.json"
    if metrics is not None and cv_file.is_file():  # every fold in this job (cv.folds without cv.fold)
        per_fold = json.loads(cv_file.read_text())["per_fold"]
        job.folds = [dict(zip(per_fold, values)) for values in zip(*per_fold.values())]
        job.fold_histories = [pd.read_csv(f) for f in sorted(path.glob("fold_*/history.csv"))]
    return job


def find_jobs(sweep_dir: Path) -> list[Job]:
    """Every run directory below `sweep_dir` (not the folds inside a cross-validated job), by job number."""
    runs = sorted({p.parent.parent for p in Path(sweep_dir).glob("**/.hydra/overrides.yaml")})
    tops = [r for r in runs if not any(o != r and o in r.parents for o in runs)]
    return sorted((read_job(r) for r in tops), key=lambda j: (j.number, str(j.path)))


def swept_keys(jobs: list[Job]) -> list[str]:
    """Override keys whose value is not the same in every job, in command-line order."""
    keys = list(dict.fromkeys(k for j in jobs for k in j.overrides))
    return [k for k in keys if len({j.overrides.get(k) for j in jobs}) > 1]


def as_number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan
