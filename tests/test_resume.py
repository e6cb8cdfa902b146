"""Resume: what may change, what may not, the run's own overrides, and exact resume of image folders."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import cli, train
from dlcourse.errors import ConfigError


def test_resume_refuses_keys_that_change_what_the_checkpoint_means(run_dir):
    train(run_dir, ["model.hidden_sizes=[32]", "trainer.max_epochs=1"])
    with pytest.raises(ConfigError) as e:
        train(run_dir, ["model.hidden_sizes=[64]", "trainer.batch_size=32", "trainer.max_epochs=2", "resume=true"])
    message = str(e.value)
    assert "model.hidden_sizes: [32] in the checkpoint, [64] now" in message
    assert "trainer.batch_size: 64 in the checkpoint, 32 now" in message
    assert "trainer.max_epochs" not in message.split("Keys such as")[0]
    assert f"model.weights={run_dir / 'checkpoints' / 'last.pt'} starts it from this checkpoint's weights" in message
    assert torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["state"]["epoch"] == 1


@pytest.mark.parametrize("override", ["seed=5", "dataset.val_split=0.2", "dataset.split_seed=3", "loss=mse",
                                      "augment=flip", "optim=sgd"])
def test_each_meaning_key_is_compared(run_dir, override):
    train(run_dir, ["trainer.max_epochs=1"])
    with pytest.raises(ConfigError, match=override.split("=")[0].replace(".", r"\.")):
        train(run_dir, [override, "trainer.max_epochs=2", "resume=true"])


def test_resume_may_change_the_horizon_patience_logging_and_device(run_dir):
    train(run_dir, ["trainer.max_epochs=1"])
    metrics = train(run_dir, ["trainer.max_epochs=2", "trainer.early_stopping.patience=5", "resume=true",
                              "trainer.log_every_n_steps=7", "dataset.num_workers=0"])
    assert metrics["epochs_run"] == 2


def test_command_line_resume_continues_with_the_runs_own_overrides(tmp_path):
    run = tmp_path / "run"
    first = cli(["model=lenet", "optim=sgd", "trainer.max_epochs=1", "trainer.limit_train_batches=3",
                 f"hydra.run.dir={run}"])
    assert first.returncode == 0, first.stderr
    again = cli(["trainer.max_epochs=2", "resume=true", f"hydra.run.dir={run}"])
    assert again.returncode == 0, again.stderr
    assert "model=lenet optim=sgd" in again.stdout and "epoch 2/2" in again.stdout
    assert again.stdout.rstrip().endswith(f"TensorBoard: tensorboard --logdir {run}")
    ckpt = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["model_name"] == "lenet" and ckpt["config"]["optim"]["_target_"] == "torch.optim.SGD"
    assert ckpt["state"]["epoch"] == 2 and ckpt["state"]["step"] == 6
    changed = cli(["model=mlp", "trainer.max_epochs=3", "resume=true", f"hydra.run.dir={run}"])
    assert changed.returncode == 2 and "Traceback" not in changed.stderr
    assert "model.name: 'lenet' in the checkpoint, 'mlp' now" in changed.stderr


def write_images(root, n=12):
    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (root / "train" / cls).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (36, 36, 3), dtype=np.uint8)).save(root / "train" / cls / f"{i}.png")
    return root


@pytest.mark.slow
def test_image_folder_run_with_workers_resumes_exactly(tmp_path):
    images = write_images(tmp_path / "images")
    common = [f"dataset.root={images}", "dataset=imagefolder", "dataset.image_size=32", "model=lenet",
              "augment=strong", "augment.mixup_alpha=0.2", "trainer.batch_size=6", "dataset.val_split=0.25",
              "trainer.deterministic=true", "model.dropout=0.2"]
    straight = train(tmp_path / "a", [*common, "dataset.num_workers=2", "trainer.max_epochs=3"])
    train(tmp_path / "b", [*common, "dataset.num_workers=2", "trainer.max_epochs=1"])
    resumed = train(tmp_path / "b", [*common, "dataset.num_workers=2", "trainer.max_epochs=3", "resume=true"])
    single = train(tmp_path / "c", [*common, "dataset.num_workers=0", "trainer.max_epochs=3"])
    weights = {k: torch.load(tmp_path / k / "checkpoints" / "last.pt", weights_only=True)["model"] for k in "abc"}
    for name, tensor in weights["a"].items():
        assert torch.equal(tensor, weights["b"][name]), name  # resumed == uninterrupted
        assert torch.equal(tensor, weights["c"][name]), name  # and the same with no workers
    assert resumed["test/loss"] == straight["test/loss"] == single["test/loss"]
    losses = [json.loads((tmp_path / k / "metrics.json").read_text())["test/loss"] for k in "ab"]
    assert losses[0] == losses[1]
