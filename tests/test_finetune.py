"""Fine-tuning runs: torchvision-format weights through model.weights, freezing, unfreezing across
resume, learning-rate multipliers and feature caching."""
from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from conftest import cli, train

SYNTHETIC = ["dataset=synthetic", "dataset.image_shape=[3,32,32]", "dataset.num_classes=10", "dataset.size=64",
             "trainer.batch_size=16", "figures.enabled=false"]


@pytest.fixture
def resnet18_file(tmp_path, monkeypatch):
    """A torchvision-format ResNet-18 weights file (random tensors) where torchvision looks for it."""
    import torchvision

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    weights = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    folder = tmp_path / "torch" / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    torch.manual_seed(123)
    state = torchvision.models.resnet18().state_dict()
    torch.save(state, folder / weights.url.rsplit("/", 1)[-1])
    return state


def test_imagenet_weights_load_by_name_and_a_frozen_backbone_stays_bit_identical(tmp_path, resnet18_file):
    run_dir = tmp_path / "run"
    metrics = train(run_dir, ["model=resnet18", "model.weights=IMAGENET1K_V1", "model.small_input=false",
                              "finetune=feature_extractor", "finetune.cache_features=false", "trainer.max_epochs=2",
                              *SYNTHETIC])
    report = json.loads((run_dir / "transfer.json").read_text())
    assert {name for name, _ in report["reinitialised"]} == {"fc.weight", "fc.bias"}  # a head for 10 classes
    assert "IMAGENET1K_V1" in report["source"] and len(report["loaded"]) == len(resnet18_file) - 2
    trained = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["model"]
    for name in report["loaded"]:  # weights and batch-norm statistics of the frozen backbone did not move
        assert torch.equal(trained[name], resnet18_file[name]), name
    assert not torch.equal(trained["fc.weight"][:, :5], torch.zeros(10, 5))
    assert metrics["epochs_run"] == 2
    log = (run_dir / "train.log").read_text()
    assert "model.weights: loaded" in log and "fc.weight (a new head" in log


def test_imagenet_normalisation_comes_with_the_weights(tmp_path, resnet18_file):
    run_dir = tmp_path / "run"
    train(run_dir, ["model=resnet18", "model.weights=DEFAULT", "finetune=feature_extractor", "trainer.max_epochs=1",
                    *SYNTHETIC])
    stored = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["normalization"]
    assert stored["mean"] == pytest.approx([0.485, 0.456, 0.406]) and stored["std"] == pytest.approx([0.229, 0.224, 0.225])
    report = json.loads((run_dir / "transfer.json").read_text())
    assert "conv1.weight" in {n for n, _ in report["reinitialised"]}  # the 32-px stem: said, not silent


def test_missing_weights_offline_is_one_clear_paragraph(tmp_path):
    run_dir = tmp_path / "run"
    result = cli(["model=resnet18", "model.weights=IMAGENET1K_V1", *SYNTHETIC, f"hydra.run.dir={run_dir}",
                  "trainer.progress_bar=false"], env_extra={"TORCH_HOME": str(tmp_path / "empty")})
    assert result.returncode != 0
    err = result.stderr.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert "resnet18-f37072fd.pth" in err and str(tmp_path / "empty" / "hub" / "checkpoints") in err
    assert "https://download.pytorch.org/models/resnet18-f37072fd.pth" in err
    assert not (run_dir / "checkpoints").exists() and not (run_dir / "metrics.json").exists()


@pytest.fixture(scope="module")
def lenet_checkpoint(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("source") / "run"
    train(run_dir, ["model=lenet", "trainer.max_epochs=1", "figures.enabled=false", "dataset.classes=[0,1,2,3,4]"])
    return run_dir / "checkpoints" / "best.pt"


COMMON = ["model=lenet", "trainer.deterministic=true", "figures.enabled=false", "dataset.subset=300"]


@pytest.mark.parametrize("sched", ["none", "onecycle"])
def test_unfreeze_at_epoch_unfreezes_then_under_every_schedule(tmp_path, lenet_checkpoint, sched):
    source = torch.load(lenet_checkpoint, weights_only=True)["model"]
    train(tmp_path / "r", [*COMMON, f"model.weights={lenet_checkpoint}", "finetune.freeze=backbone",
                           "finetune.unfreeze_at_epoch=3", f"sched={sched}", "diagnostics=norms", "trainer.max_epochs=4"])
    norms = pd.read_csv(tmp_path / "r" / "history.csv")["diag/weight_norm/layer1"].tolist()  # features.0
    assert norms[0] == norms[1] == pytest.approx(source["features.0.weight"].norm().item(), rel=1e-6)
    assert norms[2] != norms[1] and norms[3] != norms[2]  # trains from epoch 3 on


def test_resume_restores_the_freeze_state_of_its_epoch(tmp_path, lenet_checkpoint):
    ft = [*COMMON, f"model.weights={lenet_checkpoint}", "finetune.freeze=backbone", "finetune.unfreeze_at_epoch=3",
          "finetune.backbone_lr_mult=0.5"]
    source = torch.load(lenet_checkpoint, weights_only=True)["model"]
    train(tmp_path / "a", [*ft, "trainer.max_epochs=2"])
    after2 = torch.load(tmp_path / "a/checkpoints/last.pt", weights_only=True)["model"]
    assert torch.equal(after2["features.0.weight"], source["features.0.weight"])  # frozen for epochs 1-2
    assert not torch.equal(after2["classifier.7.weight"], source["classifier.7.weight"])
    resumed = train(tmp_path / "a", [*ft, "trainer.max_epochs=4", "resume=true"])
    straight = train(tmp_path / "b", [*ft, "trainer.max_epochs=4"])
    a = torch.load(tmp_path / "a/checkpoints/last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "b/checkpoints/last.pt", weights_only=True)["model"]
    assert not torch.equal(a["features.0.weight"], source["features.0.weight"])  # trained from epoch 3
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed["test/loss"] == straight["test/loss"]


def test_head_lr_multiplier_reaches_the_optimizer_and_the_logs(tmp_path, lenet_checkpoint):
    from conftest import compose_config
    from dlcourse.builders import make_optimizer, make_model, dataset_info, resolve_task

    overrides = [*COMMON, f"model.weights={lenet_checkpoint}", "optim.lr=0.002", "finetune.head_lr_mult=10"]
    cfg = compose_config(overrides)
    info = dataset_info(cfg)
    model, _ = make_model(cfg, info, torch.device("cpu"), resolve_task(cfg, info))
    groups = make_optimizer(cfg, model).param_groups
    head = [g for g in groups if g["part"] == "head"]
    assert head and all(g["lr"] == pytest.approx(0.02) for g in head)
    assert all(g["lr"] == pytest.approx(0.002) for g in groups if g["part"] != "head")
    assert {id(p) for g in groups for p in g["params"]} == {id(p) for p in model.parameters()}
    train(tmp_path / "r", [*overrides, "trainer.max_epochs=1"])
    row = pd.read_csv(tmp_path / "r" / "history.csv").iloc[0]
    assert row["lr"] == pytest.approx(0.02) and row["lr_backbone"] == pytest.approx(0.002)


def test_cached_features_train_the_same_head_as_the_uncached_path(tmp_path, lenet_checkpoint):
    ft = [*COMMON, f"model.weights={lenet_checkpoint}", "finetune=feature_extractor", "trainer.max_epochs=2"]
    train(tmp_path / "cached", [*ft, "finetune.cache_features=true"])
    train(tmp_path / "plain", [*ft, "finetune.cache_features=false"])
    assert "feature cache" in (tmp_path / "cached" / "train.log").read_text()
    assert "feature cache" not in (tmp_path / "plain" / "train.log").read_text()
    a = torch.load(tmp_path / "cached/checkpoints/last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "plain/checkpoints/last.pt", weights_only=True)["model"]
    for name in a:
        assert torch.allclose(a[name], b[name], atol=1e-5), name


def test_caching_on_request_refuses_when_features_would_change(tmp_path, lenet_checkpoint):
    from dlcourse.errors import ConfigError

    with pytest.raises(ConfigError, match="finetune.cache_features=true.*augmentation"):
        train(tmp_path / "r", [*COMMON, f"model.weights={lenet_checkpoint}", "finetune=feature_extractor",
                               "finetune.cache_features=true", "augment=flip", "trainer.max_epochs=1"])


def test_scratch_ignores_the_weights_and_a_wrong_architecture_is_refused(tmp_path, lenet_checkpoint):
    from dlcourse.errors import ConfigError

    train(tmp_path / "s", [*COMMON, f"model.weights={lenet_checkpoint}", "finetune=scratch", "trainer.max_epochs=1"])
    assert not (tmp_path / "s" / "transfer.json").exists()
    with pytest.raises(ConfigError, match="model=lenet and does not fit model=mlp"):
        train(tmp_path / "m", ["model=mlp", f"model.weights={lenet_checkpoint}", "trainer.max_epochs=1"])


def test_feature_extractor_on_an_image_folder_with_imagenet_weights(tmp_path, resnet18_file):
    """The first command of the transfer section: ImageNet ResNet-18 on a folder, features cached."""
    from test_datasets_extra import write_folder

    root = write_folder(tmp_path / "images", splits=("train", "val"))
    run_dir = tmp_path / "run"
    metrics = train(run_dir, ["model=resnet18", "model.weights=IMAGENET1K_V1", "dataset=imagefolder",
                              f"dataset.root={root}", "dataset.num_workers=0", "finetune=feature_extractor",
                              "trainer.batch_size=4", "trainer.max_epochs=2", "figures.enabled=false"])
    assert "feature cache" in (run_dir / "train.log").read_text()
    trained = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert torch.equal(trained["layer4.1.conv2.weight"], resnet18_file["layer4.1.conv2.weight"])
    assert trained["fc.weight"].shape == (3, 512) and metrics["epochs_run"] == 2


OTHER_CLASSES = [*COMMON, "dataset.classes=[5,6,7,8,9]"]


def test_a_partial_freeze_trains_every_unfrozen_layer_and_is_not_cached(tmp_path, lenet_checkpoint):
    from dlcourse.errors import ConfigError

    source = torch.load(lenet_checkpoint, weights_only=True)["model"]
    ft = [*OTHER_CLASSES, f"model.weights={lenet_checkpoint}", "finetune.freeze=features.0", "finetune.bn=frozen",
          "trainer.max_epochs=2"]
    auto = train(tmp_path / "auto", ft)
    plain = train(tmp_path / "plain", [*ft, "finetune.cache_features=false"])
    assert "feature cache" not in (tmp_path / "auto" / "train.log").read_text()
    a = torch.load(tmp_path / "auto/checkpoints/last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "plain/checkpoints/last.pt", weights_only=True)["model"]
    assert torch.equal(a["features.0.weight"], source["features.0.weight"])
    for name in ("features.3.weight", "classifier.1.weight", "classifier.4.weight"):
        assert not torch.equal(a[name], source[name]), name
    assert all(torch.equal(a[k], b[k]) for k in a) and auto["test/acc"] == plain["test/acc"]
    with pytest.raises(ConfigError, match="cache_features=true.*features.3"):
        train(tmp_path / "forced", [*ft, "finetune.cache_features=true"])


def test_gradual_trains_the_head_alone_first_then_one_more_stage_per_epoch(tmp_path, lenet_checkpoint):
    source = torch.load(lenet_checkpoint, weights_only=True)["model"]
    train(tmp_path / "r", [*OTHER_CLASSES, f"model.weights={lenet_checkpoint}", "finetune=gradual",
                           "diagnostics=norms", "trainer.max_epochs=3"])
    history = pd.read_csv(tmp_path / "r" / "history.csv")
    norm = {layer: history[f"diag/weight_norm/{layer}"].tolist() for layer in ("layer1", "layer2", "layer3", "layer5")}
    start = {layer: source[f"{name}.weight"].norm().item() for layer, name in
             (("layer1", "features.0"), ("layer2", "features.3"), ("layer3", "classifier.1"))}
    assert norm["layer1"] == pytest.approx([start["layer1"]] * 3, rel=1e-6)  # never thawed in 3 epochs
    assert norm["layer2"][:2] == pytest.approx([start["layer2"]] * 2, rel=1e-6) and norm["layer2"][2] != norm["layer2"][1]
    assert norm["layer3"][0] == pytest.approx(start["layer3"], rel=1e-6) and norm["layer3"][1] != norm["layer3"][0]
    assert norm["layer5"][1] != norm["layer5"][0]  # the head trains from epoch 1
    log = (tmp_path / "r" / "train.log").read_text()
    assert "epoch 2: unfreezing classifier.1, classifier.4 (finetune=gradual" in log
    assert "epoch 3: unfreezing features.3 (finetune=gradual" in log and "epoch 1: unfreezing" not in log


@pytest.mark.parametrize("mode", [["finetune=feature_extractor"], ["finetune=gradual", "finetune.normalize=weights"]])
def test_a_transfer_run_resumes_without_its_weights_file(tmp_path, lenet_checkpoint, mode):
    import shutil

    weights = tmp_path / "weights.pt"
    shutil.copy(lenet_checkpoint, weights)
    ft = [*OTHER_CLASSES, f"model.weights={weights}", *mode]
    train(tmp_path / "a", [*ft, "trainer.max_epochs=1"])
    weights.unlink()
    resumed = train(tmp_path / "a", [*ft, "trainer.max_epochs=2", "resume=true"])
    shutil.copy(lenet_checkpoint, weights)
    straight = train(tmp_path / "b", [*ft, "trainer.max_epochs=2"])
    a = torch.load(tmp_path / "a/checkpoints/last.pt", weights_only=True)
    b = torch.load(tmp_path / "b/checkpoints/last.pt", weights_only=True)
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert a["normalization"] == b["normalization"] and resumed["test/loss"] == straight["test/loss"]


def test_an_unexpected_error_is_recorded_in_train_log(tmp_path, lenet_checkpoint, monkeypatch):
    from dlcourse.engine import Engine

    def broken(self):
        raise RuntimeError("something broke inside the loop")

    monkeypatch.setattr(Engine, "fit", broken)
    with pytest.raises(RuntimeError):
        train(tmp_path / "r", [*OTHER_CLASSES, f"model.weights={lenet_checkpoint}", "trainer.max_epochs=1"])
    assert "Error: RuntimeError: something broke inside the loop" in (tmp_path / "r" / "train.log").read_text()


def test_the_model_summary_counts_the_frozen_parameters(tmp_path, lenet_checkpoint):
    train(tmp_path / "r", [*OTHER_CLASSES, f"model.weights={lenet_checkpoint}", "finetune=feature_extractor",
                           "trainer.max_epochs=1"])
    source = torch.load(lenet_checkpoint, weights_only=True)["model"]
    frozen = sum(v.numel() for k, v in source.items() if not k.startswith("classifier.7"))
    assert f"Non-trainable params: {frozen:,}" in (tmp_path / "r" / "train.log").read_text()
