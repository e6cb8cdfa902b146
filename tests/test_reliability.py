"""Faults a student's run must survive: bad input, malicious or broken checkpoints, divergence,
kills and preemption."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import ROOT, cli, train
from dlcourse.checkpoint import load, save_atomic
from dlcourse.errors import CheckpointError

BAD_INPUTS = [
    (["optim.lr=-1"], "optim.lr"),
    (["trainer.batch_size=0"], "trainer.batch_size"),
    (["trainer.max_epochs=-3"], "trainer.max_epochs"),
    (["dataset.val_split=1.5"], "dataset.val_split"),
    (["model=nonexistent"], "nonexistent"),
    (["model.activation=nonexistent"], "model.activation"),
    (["trainer.precision=64-weird"], "trainer.precision"),
    (["dataset=synthetic", "dataset.image_shape=[3,0,32]"], "dataset.image_shape"),
    (["trainer.max_epochs=abc"], "trainer.max_epochs"),
    (["sched=cosine", "sched.warmup_epochs=-1", "sched.name=cosinus"], "sched.name"),
    (["resume=/nonexistent/last.pt"], "/nonexistent/last.pt"),
    (["model=vgg11", "model.small_input=false"], "layer 'features.20'"),  # too deep for 28x28
    (["augment=standard", "augment.hflip=2"], "augment.hflip"),
]


def assert_clean_failure(out: subprocess.CompletedProcess, culprit: str) -> None:
    assert out.returncode != 0
    assert culprit in out.stderr + out.stdout
    assert "Traceback" not in out.stderr + out.stdout


@pytest.mark.parametrize("args,culprit", BAD_INPUTS, ids=[" ".join(a) for a, _ in BAD_INPUTS])
def test_bad_input_fails_cleanly_and_writes_nothing(tmp_path, args, culprit):
    run_dir = tmp_path / "runs" / "run"
    out = cli([*args, f"hydra.run.dir={run_dir}"], timeout=120)
    assert_clean_failure(out, culprit)
    assert not run_dir.exists()


def test_missing_dataset_says_what_where_and_how(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    out = cli(["dataset=mnist", f"dataset.root={empty}", "dataset.download=false",
               f"hydra.run.dir={tmp_path}/run"])
    assert_clean_failure(out, str(empty))
    assert "train-images-idx3-ubyte" in out.stderr and "dataset.download=true" in out.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_requested_without_cuda(tmp_path):
    assert_clean_failure(cli(["trainer.device=cuda", f"hydra.run.dir={tmp_path}/run"]), "trainer.device=cuda")


def test_random_bytes_as_checkpoint(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(os.urandom(4096))
    out = cli([f"resume={junk}", f"hydra.run.dir={tmp_path}/run"])
    assert_clean_failure(out, str(junk))


class RunsCode:
    """Unpickling this would create a file: the classic malicious-checkpoint payload."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_checkpoint_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"model": RunsCode(marker), "state": {}}, evil)
    with pytest.raises(CheckpointError, match="could run code"):
        load(evil)
    out = cli([f"resume={evil}", f"hydra.run.dir={tmp_path}/run"])
    assert_clean_failure(out, "evil.pt")
    assert not marker.exists()


def test_truncated_checkpoint_is_named(tmp_path):
    path = tmp_path / "last.pt"
    save_atomic({"model": {"w": torch.ones(1000)}}, path)
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(CheckpointError, match="truncated"):
        load(path)


def test_fresh_run_refuses_to_overwrite_a_run_directory(tmp_path):
    run_dir = tmp_path / "run"
    assert cli(["trainer.max_epochs=1", f"hydra.run.dir={run_dir}"]).returncode == 0
    before = (run_dir / "checkpoints" / "last.pt").read_bytes()
    out = cli(["trainer.max_epochs=1", f"hydra.run.dir={run_dir}"])
    assert_clean_failure(out, "resume=true")
    assert (run_dir / "checkpoints" / "last.pt").read_bytes() == before


def test_divergence_stops_with_advice_and_records_it(tmp_path):
    run_dir = tmp_path / "run"
    out = cli(["optim=sgd", "optim.lr=1e8", f"hydra.run.dir={run_dir}"])
    assert_clean_failure(out, "epoch 1, step")
    assert "optim.lr" in out.stderr and "clip" in out.stderr
    assert json.loads((run_dir / "metrics.json").read_text())["diverged"] is True


def test_divergence_keeps_the_last_good_checkpoint(run_dir, monkeypatch):
    import dlcourse.builders
    from dlcourse.errors import DivergenceError

    real_build_loss = dlcourse.builders.build_loss

    def loss_that_turns_nan(*args, **kwargs):
        inner, calls = real_build_loss(*args, **kwargs), [0]

        def loss(out, y):
            if not torch.is_inference_mode_enabled():
                calls[0] += 1
            value = inner(out, y)
            return value * float("nan") if calls[0] >= 30 else value  # step 30 falls in epoch 2
        return loss

    monkeypatch.setattr(dlcourse.builders, "build_loss", loss_that_turns_nan)
    with pytest.raises(DivergenceError, match="epoch 2, step 30.*keeps epoch 1"):
        train(run_dir, ["trainer.max_epochs=4"])
    ckpt = load(run_dir / "checkpoints" / "last.pt")
    assert ckpt["state"]["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values())
    assert json.loads((run_dir / "metrics.json").read_text())["diverged"] is True


def test_a_diverged_job_does_not_abort_the_sweep(tmp_path):
    out = cli(["-m", "optim=sgd", "optim.lr=1e8,0.05", "trainer.max_epochs=1",
               f"hydra.sweep.dir={tmp_path}/sweep"])
    assert out.returncode == 0, out.stderr
    jobs = sorted((tmp_path / "sweep").glob("[01]_*/metrics.json"))
    assert [json.loads(p.read_text())["diverged"] for p in jobs] == [True, False]
    report = (tmp_path / "sweep" / "report.md").read_text()  # the report lists it, with the reason
    assert "diverged: The training loss became" in report.split("## Failed and diverged jobs")[1]


# Kills and preemption: a LeNet on digits long enough to be interrupted mid-run.
LONG_RUN = ["model=lenet", "trainer.max_epochs=4", "trainer.batch_size=16", "trainer.deterministic=true", "seed=3",
            "dataset.subset=600", "trainer.device=cpu", "trainer.progress_bar=false", "model.dropout=0.1"]


def start(run_dir: Path, extra=()) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, str(ROOT / "train.py"), *LONG_RUN, *extra,
                             f"hydra.run.dir={run_dir}"], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_for_checkpoint(run_dir: Path, proc: subprocess.Popen, timeout: float = 120, epoch: int = 1) -> float:
    """Wait until last.pt holds `epoch` (it is replaced atomically after each epoch); returns the time then."""
    last, deadline = run_dir / "checkpoints" / "last.pt", time.time() + timeout
    seen = None
    while True:
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, f"no checkpoint of epoch {epoch} appeared"
        stamp = last.stat().st_mtime_ns if last.exists() else None
        if stamp is not None and stamp != seen:
            seen = stamp
            try:
                if load(last)["state"]["epoch"] >= epoch:
                    return time.time()
            except CheckpointError:
                pass
        time.sleep(0.005)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict:
    run_dir = tmp_path_factory.mktemp("straight") / "run"
    out = cli([*LONG_RUN, f"hydra.run.dir={run_dir}"])
    assert out.returncode == 0, out.stderr
    return json.loads((run_dir / "metrics.json").read_text())


@pytest.mark.slow
@pytest.mark.parametrize("when", ["after a checkpoint", "mid-epoch"])
def test_sigkill_then_resume_matches_an_uninterrupted_run(tmp_path, uninterrupted, when):
    run_dir = tmp_path / "run"
    proc = start(run_dir)
    first = wait_for_checkpoint(run_dir, proc)
    if when == "mid-epoch":  # halfway through epoch 3, an epoch's time measured between two checkpoints
        time.sleep((wait_for_checkpoint(run_dir, proc, epoch=2) - first) / 2)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    load(run_dir / "checkpoints" / "last.pt")  # never torn
    out = cli([*LONG_RUN, "resume=true", f"hydra.run.dir={run_dir}"])
    assert out.returncode == 0, out.stderr
    resumed = json.loads((run_dir / "metrics.json").read_text())
    assert resumed["epochs_run"] == uninterrupted["epochs_run"]
    assert resumed["test/acc"] == uninterrupted["test/acc"]
    assert resumed["test/loss"] == pytest.approx(uninterrupted["test/loss"], rel=1e-6)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_saves_and_explains_how_to_resume(tmp_path, sig):
    run_dir = tmp_path / "run"
    proc = start(run_dir, ["trainer.max_epochs=200"])
    wait_for_checkpoint(run_dir, proc)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig
    assert "resume=true" in stdout and f"hydra.run.dir={run_dir}" in stdout
    assert "Traceback" not in stderr
    state = load(run_dir / "checkpoints" / "last.pt")["state"]
    assert 1 <= state["epoch"] < 200


@pytest.mark.parametrize("seed", range(12))
def test_any_damaged_bytes_give_a_checkpoint_error(tmp_path, seed):
    import random

    junk = tmp_path / "junk.pt"
    junk.write_bytes(random.Random(seed).randbytes(4096))  # some of these made torch raise IndexError
    with pytest.raises(CheckpointError, match="junk.pt"):
        load(junk)
