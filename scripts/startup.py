"""Start-up cost of a toy run: N runs through the Python API in one process against N command-line
processes, and the command line's default XOR run against bare `import torch, torch._dynamo`.

    python scripts/startup.py            # 20 runs each way (about 2 minutes on 2 cores)
    python scripts/startup.py --runs 5

"Beyond training" is a run's wall time minus its training time (metrics.json: epoch time x epochs):
composing the config, building the run, the TensorBoard and checkpoint files, the test evaluation
and the figures. Run it on a quiet machine: it measures wall-clock time.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOY = ["experiment=xor_mlp", "trainer.max_epochs=200", "trainer.progress_bar=false"]


def _training_s(metrics: dict) -> float:
    return metrics["train/epoch_time_s"] * metrics["epochs_run"]


def _wall(cmd: list[str], cwd: Path) -> float:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, check=True)
    return time.perf_counter() - start


def api_runs(n: int, out: Path) -> list[tuple[float, float]]:
    """(wall, training) of n runs in a fresh process, the first one included (its imports)."""
    code = (f"import json, sys, time\nsys.path.insert(0, {str(ROOT)!r})\nt0 = time.perf_counter()\nimport dlcourse\n"
            f"rows = []\nfor i in range({n}):\n    t = time.perf_counter() if i else t0\n"
            f"    r = dlcourse.train(*{TOY!r}, run_dir={str(out)!r} + f'/api_{{i}}')\n"
            f"    rows.append((time.perf_counter() - t, r.metrics['train/epoch_time_s'] * r.metrics['epochs_run']))\n"
            f"print(json.dumps(rows))")
    done = subprocess.run([sys.executable, "-c", code], cwd=out, capture_output=True, text=True, check=True)
    return [tuple(r) for r in json.loads(done.stdout.strip().splitlines()[-1])]


def cli_runs(n: int, out: Path) -> list[tuple[float, float]]:
    rows = []
    for i in range(n):
        run_dir = out / f"cli_{i}"
        wall = _wall([sys.executable, str(ROOT / "train.py"), *TOY, f"hydra.run.dir={run_dir}"], out)
        rows.append((wall, _training_s(json.loads((run_dir / "metrics.json").read_text()))))
    return rows


def _span(values: list[float]) -> str:
    return f"{statistics.mean(values):.2f} s ({min(values):.2f}-{max(values):.2f})"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="dlcourse-startup-") as tmp:
        out = Path(tmp)
        api = api_runs(args.runs, out)
        cli = cli_runs(args.runs, out)
        bare = [_wall([sys.executable, "-c", "import torch, torch._dynamo"], out) for _ in range(3)]
        xor = [_wall([sys.executable, str(ROOT / "train.py"), "experiment=xor_mlp", "trainer.progress_bar=false",
                      f"hydra.run.dir={out / f'xor_{i}'}"], out) for i in range(3)]
    later = api[1:] or api
    print(f"| {args.runs} toy runs ({' '.join(TOY[:2])}, figures included) | wall per run | beyond training |")
    print("| --- | --- | --- |")
    print(f"| dlcourse.train, runs 2-{args.runs} in one process | {_span([w for w, _ in later])} | "
          f"{_span([w - t for w, t in later])} |")
    print(f"| dlcourse.train, the process's first run (imports included) | {api[0][0]:.2f} s | {api[0][0] - api[0][1]:.2f} s |")
    print(f"| python train.py, one process per run | {_span([w for w, _ in cli])} | {_span([w - t for w, t in cli])} |")
    print(f"| all {args.runs} runs | API {sum(w for w, _ in api):.1f} s | command line {sum(w for w, _ in cli):.1f} s |")
    print(f"\npython train.py experiment=xor_mlp (2,000 epochs): {_span(xor)}; "
          f"python -c 'import torch, torch._dynamo': {_span(bare)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
