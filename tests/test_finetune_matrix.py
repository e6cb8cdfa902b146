"""Fine-tuning modes x strategies: after training, the weights a mode keeps frozen are bit-identical
to the loaded ones and every other weight moved, in one process and in 2 data-parallel (gloo) processes.
LeNet-5 stages, input first: features.0 | features.3 | classifier.1, classifier.4 | the head classifier.7."""
from __future__ import annotations

import pytest
import torch

from conftest import train
from test_distributed import torchrun
from test_finetune import lenet_checkpoint  # noqa: F401 (the module's weights fixture)

# 540 training images of classes 5-9 (3 global batches of 16 per epoch), 60 validation, 180 test
DATA = ["model=lenet", "dataset.classes=[5,6,7,8,9]", "dataset.subset=600", "trainer.batch_size=16",
        "trainer.limit_train_batches=3", "trainer.max_epochs=3", "trainer.deterministic=true",
        "figures.enabled=false", "trainer.device=cpu", "trainer.progress_bar=false"]
BACKBONE = ["features.0", "features.3", "classifier.1", "classifier.4"]
# mode -> (its overrides, the modules frozen for all 3 epochs); gradual thaws classifier at 2, features.3 at 3
MODES = {
    "feature_extractor": (["finetune=feature_extractor"], BACKBONE),
    "full": (["finetune=full"], []),
    "gradual": (["finetune=gradual"], ["features.0"]),
    "partial": (["finetune=partial_features0"], ["features.0"]),
}
PARTIAL = "# test only: LeNet's first convolution frozen\npretrained: true\nfreeze: [features.0]\nbn: frozen\n"


@pytest.fixture(scope="module")
def config_dir(tmp_path_factory):
    """A config folder adding finetune=partial_features0 (so that one sweep covers every mode)."""
    folder = tmp_path_factory.mktemp("configs")
    (folder / "finetune").mkdir()
    (folder / "finetune" / "partial_features0.yaml").write_text(PARTIAL)
    return folder


def check_frozen_and_moved(last_pt, source: dict, frozen: list[str]) -> None:
    trained = torch.load(last_pt, weights_only=True)["model"]
    for name, tensor in trained.items():
        module = name.rpartition(".")[0]
        if module in frozen:
            assert torch.equal(tensor, source[name]), f"{name} should be frozen"
        elif module != "classifier.7":
            assert not torch.equal(tensor, source[name]), f"{name} should have trained"
    assert not torch.equal(trained["classifier.7.weight"], torch.zeros_like(trained["classifier.7.weight"]))


@pytest.fixture(scope="module")
def one_process(tmp_path_factory, lenet_checkpoint):  # noqa: F811
    """Every mode trained in this process: {mode: its run directory}."""
    root = tmp_path_factory.mktemp("one_process")
    for mode, (overrides, _) in MODES.items():
        if mode == "partial":  # the keys of the test-only option, on the command line
            overrides = ["finetune=full", "finetune.freeze=[features.0]", "finetune.bn=frozen"]
        train(root / mode, [*DATA, f"model.weights={lenet_checkpoint}", *overrides])
    return {mode: root / mode for mode in MODES}


@pytest.mark.parametrize("mode", MODES)
def test_one_process(one_process, lenet_checkpoint, mode):  # noqa: F811
    source = torch.load(lenet_checkpoint, weights_only=True)["model"]
    check_frozen_and_moved(one_process[mode] / "checkpoints" / "last.pt", source, MODES[mode][1])
    assert ("feature cache" in (one_process[mode] / "train.log").read_text()) == (mode == "feature_extractor")


@pytest.mark.slow
def test_two_processes(tmp_path, lenet_checkpoint, config_dir, one_process):  # noqa: F811
    """Every mode in one torchrun launch (a Hydra sweep), so the 2-process start-up is paid once; the
    processes train like one process with the same global batch (a stage thawed late included)."""
    out = torchrun(["--config-dir", str(config_dir), "-m", f"model.weights={lenet_checkpoint}",
                    "finetune=" + ",".join(options[0][0].split("=")[1] for options in MODES.values()),
                    *DATA, "trainer.strategy=ddp", f"hydra.sweep.dir={tmp_path}/sweep",
                    "hydra.sweep.subdir=${hydra.job.num}"], tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    source = torch.load(lenet_checkpoint, weights_only=True)["model"]
    for i, (mode, (_, frozen)) in enumerate(MODES.items()):
        run_dir = tmp_path / "sweep" / str(i)
        check_frozen_and_moved(run_dir / "checkpoints" / "last.pt", source, frozen)
        two = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["model"]
        one = torch.load(one_process[mode] / "checkpoints" / "last.pt", weights_only=True)["model"]
        for name, tensor in one.items():
            torch.testing.assert_close(two[name], tensor, rtol=1e-4, atol=1e-5, msg=f"{mode}: {name}")
        log = (run_dir / "train.log").read_text()
        assert "540 train / 60 val / 180 test" in log and log.count("epoch 3/3") == 1, mode  # the whole splits
        if mode == "feature_extractor":
            assert "feature cache" in log
