"""What `dlcourse.train`, `dlcourse.sweep` and `dlcourse.load` hand back: a `Run` (one run directory) and a
`Sweep` (a sweep directory), read from the files the run wrote, with plots that show inline in notebooks
and the evaluation tools (`dlcourse.evaluate`, `dlcourse.predict`, `dlcourse.viz`) at hand."""
from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Callable, Optional, Sequence

from dlcourse.errors import CheckpointError


def _figure(width: float = 9.0, height: float = 3.6):
    """A matplotlib Figure outside pyplot: a notebook shows it once (as the cell's value), nothing keeps it."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


class Picture:
    """A PNG the run wrote (`path`); a notebook shows it."""

    def __init__(self, path: Path, numbers=None):
        self.path, self.numbers = Path(path), numbers

    def __fspath__(self) -> str:
        return str(self.path)

    def __repr__(self) -> str:
        return f"Picture({self.path})"

    def _repr_png_(self) -> bytes:
        return self.path.read_bytes()


class Run:
    """One run directory: `.metrics`, `.history` (one row per epoch), `.model` (best weights, eval mode),
    `.config`, `.dir`; `.plot()`, `.evaluate()`, `.predict()`, `.visualize()`."""

    def __init__(self, run_dir: Path | str, result=None, given_model=None, loss: Optional[Callable] = None):
        self.dir = Path(run_dir)
        self._result, self._given, self._loss, self._model, self._history = result, given_model, loss, None, None
        if result is not None and result.model is not None:
            self._model = result.model

    # what the run wrote ------------------------------------------------------------------
    @property
    def metrics(self) -> dict:
        if self._result is not None:
            return dict(self._result.metrics)
        path = self.dir / "metrics.json"
        return json.loads(path.read_text()) if path.is_file() else {}

    @property
    def history(self):
        """history.csv as a pandas DataFrame."""
        import pandas as pd

        if self._history is None:
            path = self.dir / "history.csv"
            self._history = pd.read_csv(path) if path.is_file() else pd.DataFrame()
        return self._history

    @property
    def config(self):
        from omegaconf import OmegaConf

        if self._result is not None and self._result.config is not None:
            return self._result.config
        return OmegaConf.load(self.dir / ".hydra" / "config.yaml")

    @property
    def model(self):
        """The best weights (checkpoints/best.pt) in eval mode."""
        if self._model is None:
            from dlcourse.rebuild import rebuild

            self._model = rebuild(self.dir, data=False, model=self._given).model
        return self._model

    @property
    def monitor(self) -> str:
        return str(self.config.trainer.monitor)

    # the evaluation tools ---------------------------------------------------------------
    def evaluate(self, split: str = "test", **options) -> dict:
        """Metrics and figures of the best checkpoint on `split` (`<run>/eval/<split>/`, scripts/evaluate.py)."""
        from dlcourse.evaluate import evaluate

        return evaluate(self.dir, split, model=self._given_copy(), loss=self._loss, **options)[0]

    def predict(self, inputs: Sequence, top_k: int = 3) -> list[dict]:
        """Class probabilities (regression: values) for image files / rows of numbers, or for raw inputs
        as an array or tensor [N, *input shape] (images in [0, 1] or uint8)."""
        from dlcourse.predict import predict

        return predict(self.dir, inputs, top_k=top_k, model=self._given_copy())

    def visualize(self, what: str, **options) -> Picture:
        """filters | features | saliency | gradcam | class_model of an image run (`<run>/viz/<what>.png`)."""
        from dlcourse.viz import visualize

        path, numbers = visualize(self.dir, what, model=self._given_copy(), **options)
        return Picture(path, numbers)

    def _given_copy(self):
        """A fresh instance for the tools to load best.pt into (the run's own model stays as it is)."""
        import copy

        model = self._given if self._given is not None else (self._model if self._result is not None and
                                                              self.config.model.get("given") else None)
        return copy.deepcopy(model) if model is not None else None

    # pictures and text ------------------------------------------------------------------
    def plot(self):
        """Learning curves: the loss, and the accuracy (or the monitored metric), per epoch; a Figure."""
        from matplotlib.ticker import MaxNLocator

        h = self.history
        fig = _figure()
        panels = [("loss", [c for c in ("train/loss", "val/loss") if c in h])]
        other = [c for c in ("train/acc", "val/acc") if c in h] or [c for c in (self.monitor,) if c in h and
                                                                   "loss" not in c]
        if other:
            panels.append(("accuracy" if "acc" in other[0] else other[0], other))
        axes = fig.subplots(1, len(panels), squeeze=False)[0]
        for ax, (title, columns) in zip(axes, panels):
            for c in columns:
                ax.plot(h["epoch"], h[c], marker="." if len(h) < 30 else None, label=c)
            ax.set(xlabel="epoch", title=title)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole
            ax.grid(alpha=0.3)
            if columns:
                ax.legend()
        fig.suptitle(self._headline())
        return fig

    def _headline(self) -> str:
        c, m = self.config, self.metrics
        best = m.get(f"{c.trainer.monitor}_best")
        parts = [f"{c.model.name} on {c.dataset.name}"]
        if best is not None:
            parts.append(f"best {c.trainer.monitor} {float(best):.4f}")
        if "test/acc" in m:
            parts.append(f"test/acc {float(m['test/acc']):.4f}")
        if m.get("wall_time_s") is not None:
            parts.append(f"{float(m['wall_time_s']):.1f} s")
        return ", ".join(parts)

    def __repr__(self) -> str:
        try:
            given = self.config.model.get("given")
            again = f"; dlcourse.load('{self.dir}', model={self.config.model.name}(...)) reloads it" if given else ""
            return f"Run({self.dir}: {self._headline()}{again})"
        except Exception:  # an unfinished directory
            return f"Run({self.dir})"

    def _repr_html_(self) -> str:
        rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{v:.4f}</td></tr>" for k, v in self.metrics.items()
                       if k.startswith("test/") and isinstance(v, float))
        return (f"<b>Run</b> <code>{html.escape(str(self.dir))}</code><br>{html.escape(self._headline())}"
                f"<table>{rows}</table>")


class Sweep:
    """A sweep directory: `.table` (report.csv: one row per configuration, mean and std over seeds),
    `.runs` (each job's Run), `.failed`, `.dir`, `.plot()`."""

    def __init__(self, sweep_dir: Path | str, results: Sequence = (), failed: Sequence = (),
                 loss: Optional[Callable] = None):
        from dlcourse.reports import write_report

        self.dir, self.failed = Path(sweep_dir), list(failed)
        self.runs = [Run(r.run_dir, result=r, loss=loss) for r in results]
        self.report = write_report(self.dir) if results or failed else self.dir / "report.md"

    @property
    def table(self):
        import pandas as pd

        path = self.dir / "report.csv"
        if not path.is_file():
            raise CheckpointError(f"{self.dir} has no report.csv: no job of the sweep finished ({len(self.failed)} "
                                  f"failed; see {self.report}).")
        return pd.read_csv(path)

    def plot(self, metric: Optional[str] = None):
        """Each configuration's mean ± std of `metric` (default: the monitored one), best on top; a Figure."""
        from dlcourse.tasks import lower_is_better

        t = self.table
        metric = metric or next(c[:-len(" mean")] for c in t.columns if c.endswith(" mean"))
        if f"{metric} mean" not in t:
            raise KeyError(f"the sweep's table has no {metric!r}; it has: "
                           f"{', '.join(c[:-len(' mean')] for c in t.columns if c.endswith(' mean'))}")
        t = t.sort_values(f"{metric} mean", ascending=lower_is_better(metric))  # the best on top
        fig = _figure(8, max(2.5, 0.5 + 0.35 * len(t)))
        ax = fig.subplots()
        y = range(len(t))[::-1]
        ax.errorbar(t[f"{metric} mean"], list(y), xerr=t[f"{metric} std"].fillna(0), fmt="o", capsize=3)
        ax.set_yticks(list(y), t["configuration"])
        ax.set(xlabel=f"{metric} (mean ± std over {int(t['n'].max())} run(s))",
               title=f"{metric} by configuration, best on top (sweep {self.dir.parent.name}/{self.dir.name})")
        ax.grid(alpha=0.3, axis="x")
        return fig

    def __repr__(self) -> str:
        return f"Sweep({self.dir}: {len(self.runs)} runs, {len(self.failed)} failed)"

    def _repr_html_(self) -> str:
        try:
            table = self.table.to_html(index=False, float_format=lambda v: f"{v:.4f}")
        except CheckpointError as e:
            table = html.escape(str(e))
        return f"<b>Sweep</b> <code>{html.escape(str(self.dir))}</code>{table}"
