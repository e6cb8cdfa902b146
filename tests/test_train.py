"""End-to-end runs: the default experiment, outputs of a run, resume, multirun, real data."""
from __future__ import annotations

import json

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import cli, compose_config, needs_fashion_mnist, recompute_test_metrics, train

METRICS_KEYS = {"test/acc", "test/loss", "val/acc_best", "epochs_run", "train/images_per_s", "wall_time_s"}


def scalars(run_dir):
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [e.value for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_default_experiment_reaches_its_accuracy(run_dir):
    metrics = train(run_dir)
    assert metrics["test/acc"] >= 0.95
    assert metrics["epochs_run"] == 20


def test_run_directory_holds_metrics_tensorboard_and_checkpoints(run_dir):
    metrics = train(run_dir, ["trainer.max_epochs=3"])
    assert METRICS_KEYS <= set(metrics)
    assert metrics["epochs_run"] == 3 and metrics["train/images_per_s"] > 0
    tags = scalars(run_dir)
    for tag in ("train/loss", "train/acc", "val/loss", "val/acc", "train/lr", "val/acc_best"):
        assert len(tags[tag]) == 3, tag
    assert tags["val/acc_best"] == [max(tags["val/acc"][:i + 1]) for i in range(3)]
    assert not [t for t in tags if not t.startswith(("train/", "val/"))]  # two sections, no one-point charts
    assert tags["train/loss"][-1] < tags["train/loss"][0]
    for name in ("last.pt", "best.pt"):
        ckpt = torch.load(run_dir / "checkpoints" / name, weights_only=True)
        assert {"model", "optimizer", "state", "rng", "config"} <= set(ckpt)
    last = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert last["state"]["epoch"] == 3 and last["config"]["trainer"]["max_epochs"] == 3
    assert (run_dir / ".hydra" / "config.yaml").exists()


def test_tensorboard_hparams_name_the_command_line_keys_and_point_at_logged_scalars(tmp_path):
    from tensorboard.plugins.hparams import plugin_data_pb2

    from dlcourse.training import run

    overrides = ["optim=sgd", "optim.lr=0.05", "trainer.max_epochs=2"]
    run(compose_config(overrides), tmp_path / "run", overrides)
    acc = EventAccumulator(str(tmp_path / "run"), size_guidance={"scalars": 0})
    acc.Reload()
    content = acc.PluginTagToContent("hparams")
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    session = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info
    assert {m.name.tag for m in experiment.metric_infos} == {"val/acc_best", "val/acc", "val/loss", "train/loss"}
    assert session.hparams["optim"].string_value == "sgd" and session.hparams["optim.lr"].number_value == 0.05
    assert session.hparams["model.name"].string_value == "mlp" and "trainer.max_epochs" in session.hparams
    assert set(acc.Tags()["scalars"]) >= {m.name.tag for m in experiment.metric_infos}
    assert "custom_scalars__config__" in acc.Tags()["tensors"] or acc.PluginTagToContent("custom_scalars")


def test_resume_continues_and_extends_a_run(run_dir):
    train(run_dir, ["trainer.max_epochs=2"])
    first = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["state"]
    metrics = train(run_dir, ["trainer.max_epochs=4", "resume=true"])
    assert metrics["epochs_run"] == 4
    state = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["state"]
    assert state["step"] == 2 * first["step"]
    assert [h["epoch"] for h in state["history"]] == [1, 2, 3, 4]


def test_resume_gives_the_same_result_as_an_uninterrupted_run(tmp_path):
    common = ["trainer.deterministic=true", "seed=3", "model.dropout=0.2"]
    straight = train(tmp_path / "a", [*common, "trainer.max_epochs=4"])
    train(tmp_path / "b", [*common, "trainer.max_epochs=2"])
    resumed = train(tmp_path / "b", [*common, "trainer.max_epochs=4", "resume=true"])
    assert resumed["test/acc"] == straight["test/acc"]
    assert resumed["test/loss"] == pytest.approx(straight["test/loss"], rel=1e-6)


def test_resume_from_a_checkpoint_path(tmp_path):
    train(tmp_path / "a", ["trainer.max_epochs=1"])
    metrics = train(tmp_path / "b", ["trainer.max_epochs=2", f"resume={tmp_path / 'a/checkpoints/last.pt'}"])
    assert metrics["epochs_run"] == 2


def test_early_stopping_stops_when_the_monitor_stalls(run_dir):
    metrics = train(run_dir, ["trainer.max_epochs=30", "trainer.early_stopping.patience=1",
                              "trainer.monitor=val/loss", "optim.lr=0.03"])
    assert metrics["stopped_early"] and metrics["epochs_run"] < 30


@pytest.mark.parametrize("overrides", [
    ["model=lenet", "model.activation=tanh", "model.pooling=avg"],
    ["model=mlp", "model.batch_norm=true", "model.dropout=0.3"],
    ["dataset=synthetic", "dataset.image_shape=[3,32,32]", "model=lenet", "dataset.size=256"],
])
def test_short_runs_of_each_model_and_dataset(run_dir, overrides):
    metrics = train(run_dir, [*overrides, "trainer.max_epochs=1", "trainer.limit_train_batches=3"])
    assert metrics["epochs_run"] == 1 and metrics["steps"] == 3
    independent = recompute_test_metrics(run_dir)  # the checkpoint rebuilt from its own config
    assert metrics["test/acc"] == pytest.approx(independent["acc"])


@pytest.mark.parametrize("loss", ["cross_entropy", "nll", "mse", "mae", "hinge"])
def test_every_loss_trains(run_dir, loss):
    metrics = train(run_dir, [f"loss={loss}", "trainer.max_epochs=3", "optim.lr=0.003"])
    assert metrics["test/acc"] > 0.5, loss


def test_cli_default_command_and_output_layout(tmp_path):
    out = cli(["trainer.max_epochs=2", "trainer.device=cpu", f"hydra.run.dir={tmp_path}/run"])
    assert out.returncode == 0, out.stderr
    assert "epoch 2/2" in out.stdout and "test/acc" in out.stdout
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["epochs_run"] == 2
    assert (tmp_path / "run" / ".hydra" / "overrides.yaml").exists()


def test_cli_multirun_writes_one_run_directory_per_job(tmp_path):
    out = cli(["-m", "optim=sgd,adam", "trainer.max_epochs=1", "trainer.device=cpu",
               f"hydra.sweep.dir={tmp_path}/sweep"])
    assert out.returncode == 0, out.stderr
    jobs = sorted(p for p in (tmp_path / "sweep").iterdir() if p.is_dir() and p.name != "report")
    assert [p.name for p in jobs] == ["0_optim=sgd,trainer.device=cpu,trainer.max_epochs=1",
                                      "1_optim=adam,trainer.device=cpu,trainer.max_epochs=1"]  # named by overrides
    targets = [json.loads((p / "metrics.json").read_text()) and
               (p / ".hydra" / "config.yaml").read_text() for p in jobs]
    assert "torch.optim.SGD" in targets[0] and "torch.optim.Adam" in targets[1]


@needs_fashion_mnist
def test_lenet_on_real_fashion_mnist_learns(tmp_path):
    metrics = train(tmp_path / "run", ["model=lenet", "dataset=fashion_mnist", f"dataset.root={tmp_path}",
                                       "dataset.subset=12000", "trainer.max_epochs=1"])
    assert metrics["test/acc"] >= 0.70  # 1 epoch on 10.8k images; the full run reaches ~0.89 in 5


def test_image_folder_run_with_augmentation_and_mixup(tmp_path):
    from PIL import Image
    import numpy as np

    rng = np.random.default_rng(0)
    for cls in ("cat", "dog"):
        (tmp_path / "images" / "train" / cls).mkdir(parents=True)
        for i in range(10):
            Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(
                tmp_path / "images" / "train" / cls / f"{i}.png")
    metrics = train(tmp_path / "run", ["dataset=imagefolder", f"dataset.root={tmp_path / 'images'}",
                                       "dataset.image_size=32", "dataset.num_workers=0", "model=lenet",
                                       "augment=standard", "augment.mixup_alpha=0.2", "trainer.batch_size=8",
                                       "trainer.max_epochs=2", "dataset.val_split=0.2"])
    assert metrics["epochs_run"] == 2 and metrics["steps"] == 4  # 16 training images, batches of 8
    assert metrics["test/acc"] == pytest.approx(recompute_test_metrics(tmp_path / "run")["acc"])


def test_augmented_run_resumes_exactly(tmp_path):
    common = ["trainer.deterministic=true", "augment=strong", "augment.mixup_alpha=0.2", "model=lenet",
              "trainer.limit_train_batches=6"]
    straight = train(tmp_path / "a", [*common, "trainer.max_epochs=3"])
    train(tmp_path / "b", [*common, "trainer.max_epochs=1"])
    resumed = train(tmp_path / "b", [*common, "trainer.max_epochs=3", "resume=true"])
    assert resumed["test/loss"] == pytest.approx(straight["test/loss"], rel=1e-6)


def test_tensorboard_holds_each_epochs_scalars_and_the_runs_figures_as_written(tmp_path):
    """The epoch's scalars (written as one event per epoch) equal history.csv; a figure in TensorBoard is
    the PNG file itself, byte for byte, with its size."""
    import csv

    from PIL import Image

    from dlcourse.training import run

    overrides = ["experiment=xor_mlp", "trainer.max_epochs=30", "trainer.val_every_n_epochs=10"]
    run(compose_config(overrides), tmp_path / "run", overrides)
    tags = scalars(tmp_path / "run")
    rows = list(csv.DictReader(open(tmp_path / "run" / "history.csv")))
    assert len(rows) == 30
    for key in ("train/loss", "train/acc"):
        assert tags[key] == pytest.approx([float(r[key]) for r in rows], rel=1e-6), key
    assert len(tags["train/lr"]) == 30 and len(tags["train/loss_best"]) == 3  # the monitor, on validated epochs
    acc = EventAccumulator(str(tmp_path / "run"), size_guidance={"images": 0})
    acc.Reload()
    png = tmp_path / "run" / "figures" / "decision_boundary.png"
    [image] = acc.Images("viz/decision_boundary")
    assert image.encoded_image_string == png.read_bytes() and image.step == 30
    assert (image.width, image.height) == Image.open(png).size
