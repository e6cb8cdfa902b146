"""Shared fixtures: compose the real Hydra config with small overrides and run it in a tmp dir."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

# pytest-xdist workers share the cores: each gets its part of them (torch would start a thread per core in
# every worker, every CLI subprocess and every notebook kernel, and threads waiting on each other cost more
# than they compute: measured 3x slower notebooks with 2 workers on 2 cores). Subprocesses inherit this.
WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if WORKERS > 1:
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // WORKERS)))
# Intel MKL on one thread rounds some products differently with the memory alignment of their inputs
# (measured: 1e-8 between a resumed and an uninterrupted run); strict conditional numerical
# reproducibility makes the bit-for-bit resume tests mean what they say. Read by MKL at start-up.
os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")

import pytest  # noqa: E402
import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.core.global_hydra import GlobalHydra  # noqa: E402

from dlcourse.config import register_configs  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
# Small, CPU-only, quiet: what every test run starts from.
FAST = ["trainer.device=cpu", "trainer.progress_bar=false"]

register_configs()
torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads())))


def compose_config(overrides: list[str] = ()):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return compose(config_name="train", overrides=[*FAST, *overrides])


def train(run_dir: Path, overrides: list[str] = ()) -> dict:
    """Run a training job in-process and return its metrics.json."""
    from dlcourse.training import run

    run(compose_config(overrides), run_dir)
    return json.loads((run_dir / "metrics.json").read_text())


def cli(args: list[str], cwd: Path = ROOT, timeout: int = 300, env_extra: dict | None = None,
        **kw) -> subprocess.CompletedProcess:
    """`python train.py ARGS` in a subprocess, as a user would type it (`env_extra`: more environment)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env_extra or {})}
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run([sys.executable, str(ROOT / "train.py"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout, **kw)


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return tmp_path / "run"


needs_fashion_mnist = pytest.mark.skipif(
    not (FASHION_MNIST / "train-images-idx3-ubyte.gz").exists(),
    reason="Debian's dataset-fashion-mnist is not installed (.ci/run installs it)")


def recompute_test_metrics(run_dir: Path) -> dict:
    """Accuracy and plain cross-entropy (binary: BCE) of checkpoints/best.pt on the test split, computed here from
    the checkpoint's stored config (independently of the engine's evaluation)."""
    import torch
    import torch.nn.functional as F
    from omegaconf import OmegaConf

    from dlcourse.builders import dataset_info, make_data, make_model, resolve_task

    ckpt = torch.load(run_dir / "checkpoints" / "best.pt", weights_only=True)
    cfg = OmegaConf.create(ckpt["config"])
    cpu = torch.device("cpu")
    data, _ = make_data(cfg, dataset_info(cfg), cpu)
    model, _ = make_model(cfg, dataset_info(cfg), cpu, resolve_task(cfg, dataset_info(cfg)))
    model.load_state_dict(ckpt["model"])
    model.eval()
    with torch.no_grad():
        pairs = [(model(x), y) for x, y in data.test]
    logits, labels = torch.cat([p[0] for p in pairs]), torch.cat([p[1] for p in pairs])
    if logits.shape[1] == 1:  # binary: one logit, class 1 where it is positive
        logits = logits.squeeze(1).double()
        return {"acc": ((logits > 0).long() == labels).double().mean().item(),
                "bce": F.binary_cross_entropy_with_logits(logits, labels.double()).item(), "n": len(labels)}
    return {"acc": (logits.argmax(1) == labels).double().mean().item(),
            "cross_entropy": F.cross_entropy(logits.double(), labels).item(), "n": len(labels)}
