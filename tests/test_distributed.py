"""Data-parallel training under torchrun: 2 gloo processes on the CPU train like one process with
the same global batch, agree on one run directory, and only rank 0 writes it."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from conftest import ROOT, cli

# 1422 digits: 142 for validation, 1280 = 20 global batches of 64 for training (no partial batch)
COMMON = ["dataset.subset=1422", "trainer.batch_size=64", "trainer.max_epochs=2", "trainer.device=cpu",
          "trainer.progress_bar=false", "model.hidden_sizes=[64]", "trainer.deterministic=true"]


def torchrun(args, cwd):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                           str(ROOT / "train.py"), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.slow
def test_two_processes_train_like_one_with_the_same_global_batch(tmp_path):
    single = cli([*COMMON, f"hydra.run.dir={tmp_path}/one"])
    assert single.returncode == 0, single.stderr
    out = torchrun([*COMMON, "trainer.strategy=ddp", f"hydra.run.dir={tmp_path}/two"], tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    one = torch.load(tmp_path / "one/checkpoints/last.pt", weights_only=True)
    two = torch.load(tmp_path / "two/checkpoints/last.pt", weights_only=True)
    assert one["state"]["step"] == two["state"]["step"] == 40
    for name, tensor in one["model"].items():
        torch.testing.assert_close(two["model"][name], tensor, rtol=1e-4, atol=1e-5)
    m1, m2 = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("one", "two"))
    assert m2["processes"] == 2 and m1["processes"] == 1
    assert m2["test/acc"] == pytest.approx(m1["test/acc"], abs=1 / 360)  # the whole test set, summed over ranks
    assert m2["val/acc_best"] == pytest.approx(m1["val/acc_best"], abs=1 / 142)
    # rank 0 alone wrote: one copy of each console line in train.log
    log = (tmp_path / "two/train.log").read_text()
    assert log.count("epoch 2/2") == 1
    # a checkpoint written by 2 processes continues in 1
    more = cli(["trainer.max_epochs=3", "resume=true", f"hydra.run.dir={tmp_path}/two"])
    assert more.returncode == 0, more.stderr
    assert torch.load(tmp_path / "two/checkpoints/last.pt", weights_only=True)["state"]["step"] == 60


@pytest.mark.slow
def test_processes_agree_on_one_run_directory_and_refuse_an_indivisible_batch(tmp_path):
    out = torchrun([*COMMON, "trainer.strategy=ddp", "trainer.max_epochs=1",
                    f"hydra.run.dir={tmp_path}/runs/" + "${now:%H-%M-%S-%f}"], tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    runs = [p for p in (tmp_path / "runs").iterdir()]
    assert len(runs) == 1 and (runs[0] / "metrics.json").exists()
    bad = torchrun([*COMMON, "trainer.strategy=ddp", "trainer.batch_size=63", f"hydra.run.dir={tmp_path}/bad"], tmp_path)
    assert bad.returncode != 0 and "trainer.batch_size=63 does not divide among 2 processes" in bad.stderr
