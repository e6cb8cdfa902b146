"""Transfer learning: weights resolved from the local torch hub cache (never the network), loaded by name and shape."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.error import URLError

import pytest
import torch
import torchvision

from dlcourse.errors import CheckpointError, ConfigError, DataError
from dlcourse.models import build_model
from dlcourse.transfer import Pretrained, head_modules, load_matching, load_pretrained, stages

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
FILE_NAME = os.path.basename(WEIGHTS.url)
IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


@pytest.fixture(scope="module")
def resnet18_file(tmp_path_factory) -> Path:
    """A torchvision-format resnet18 file (random, seeded weights)."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / FILE_NAME
    torch.save(torchvision.models.resnet18().state_dict(), path)
    return path


@pytest.fixture
def hub(tmp_path, monkeypatch) -> Path:
    """The checkpoints folder of a TORCH_HOME in tmp_path (not created)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch" / "hub" / "checkpoints"


@pytest.fixture
def cached(hub, resnet18_file) -> dict:
    """resnet18 weights in the hub cache, as torchvision would have downloaded them; returns their state dict."""
    hub.mkdir(parents=True)
    shutil.copy(resnet18_file, hub / FILE_NAME)
    return torch.load(resnet18_file, weights_only=True)


def fresh_state(model) -> dict:
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("spec", ["IMAGENET1K_V1", "DEFAULT", "ResNet18_Weights.IMAGENET1K_V1"])
def test_weights_names_resolve_to_the_cached_file(cached, hub, spec):
    pretrained = load_pretrained(spec, "resnet18", download=False)
    assert pretrained.state_dict.keys() == cached.keys()
    assert all(torch.equal(pretrained.state_dict[k], v) for k, v in cached.items())
    assert str(hub / FILE_NAME) in pretrained.source and "ResNet18_Weights.IMAGENET1K_V1" in pretrained.source
    assert pretrained.mean == pytest.approx(IMAGENET_MEAN) and pretrained.std == pytest.approx(IMAGENET_STD)
    assert pretrained.image_size == 224 and len(pretrained.classes) == 1000
    assert os.listdir(hub) == [FILE_NAME]


def test_resnet18_loads_all_but_the_head(cached):
    model = build_model("resnet18", (3, 224, 224), 10)
    head_before = model.fc.weight.detach().clone()
    report = load_matching(model, load_pretrained("IMAGENET1K_V1", "resnet18", download=False), model_name="resnet18")
    state = model.state_dict()
    assert all(torch.equal(state[n], cached[n]) for n in report.loaded)
    assert dict(report.reinitialised).keys() == {"fc.weight", "fc.bias"}
    why = dict(report.reinitialised)["fc.weight"]
    assert "[1000, 512]" in why and "[10, 512]" in why and "head" in why
    assert torch.equal(model.fc.weight, head_before)
    assert len(report.loaded) + len(report.adapted) + len(report.reinitialised) + len(report.missing) == len(state)
    assert len(report.loaded) == len(state) - 2 and not report.adapted and not report.missing and not report.unused
    assert report.reinitialised_modules == {"fc"}
    summary = report.summary()
    assert "\n" not in summary and f"loaded {len(state) - 2} of {len(state)}" in summary and "fc.bias" in summary
    assert json.loads(json.dumps(report.as_dict()))["reinitialised"][0][0] == "fc.weight"


def test_one_channel_input_conv_is_summed_over_rgb(cached):
    model = build_model("resnet18", (1, 224, 224), 10)
    report = load_matching(model, load_pretrained("DEFAULT", "resnet18", download=False))
    assert [n for n, _ in report.adapted] == ["conv1.weight"]
    assert torch.allclose(model.conv1.weight, cached["conv1.weight"].sum(dim=1, keepdim=True))
    assert "conv1" not in report.reinitialised_modules


def test_more_channels_repeat_rgb_filters_scaled(cached):
    model = build_model("resnet18", (5, 224, 224), 10)
    load_matching(model, load_pretrained("DEFAULT", "resnet18", download=False))
    rgb = cached["conv1.weight"]
    expected = torch.cat([rgb, rgb[:, :2]], dim=1) * 3 / 5
    assert torch.allclose(model.conv1.weight, expected)


def test_small_input_stem_is_reinitialised_with_reason(cached):
    model = build_model("resnet18", (3, 32, 32), 10)
    stem_before = model.conv1.weight.detach().clone()
    report = load_matching(model, load_pretrained("DEFAULT", "resnet18", download=False))
    reasons = dict(report.reinitialised)
    assert reasons.keys() == {"conv1.weight", "fc.weight", "fc.bias"}
    assert "[64, 3, 7, 7]" in reasons["conv1.weight"] and "[64, 3, 3, 3]" in reasons["conv1.weight"]
    assert torch.equal(model.conv1.weight, stem_before)
    assert all(n in report.loaded for n in cached if n.startswith(("layer", "bn1.")))


def test_missing_file_without_download_says_what_to_copy_where(hub):
    with pytest.raises(DataError) as e:
        load_pretrained("IMAGENET1K_V1", "resnet18", download=False)
    message = str(e.value)
    assert FILE_NAME in message and str(hub) in message and WEIGHTS.url in message and "\n" not in message
    assert not hub.parent.parent.exists()  # nothing written under TORCH_HOME


def test_failed_download_says_the_same_and_leaves_nothing(hub, monkeypatch):
    def offline(url, model_dir=None, **kwargs):
        os.makedirs(model_dir or hub, exist_ok=True)  # as torch.hub does before downloading
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(DataError) as e:
        load_pretrained("IMAGENET1K_V1", "resnet18")
    message = str(e.value)
    assert FILE_NAME in message and str(hub) in message and WEIGHTS.url in message and "failed" in message
    assert not hub.parent.parent.exists()


def test_download_goes_through_torch_hub(hub, monkeypatch):
    calls = []
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url",
                        lambda url, **kwargs: calls.append((url, kwargs)) or {"w": torch.ones(1)})
    pretrained = load_pretrained("IMAGENET1K_V1", "resnet18")
    assert calls[0][0] == WEIGHTS.url and calls[0][1]["weights_only"] and calls[0][1]["map_location"] == "cpu"
    assert list(pretrained.state_dict) == ["w"]


def test_batch_norm_vgg_uses_the_bn_weights(hub):
    with pytest.raises(DataError, match=os.path.basename(torchvision.models.VGG11_BN_Weights.DEFAULT.url)):
        load_pretrained("DEFAULT", "vgg11", download=False, batch_norm=True)


def test_damaged_cached_file_is_a_checkpoint_error(hub):
    hub.mkdir(parents=True)
    (hub / FILE_NAME).write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=FILE_NAME) as e:
        load_pretrained("DEFAULT", "resnet18", download=False)
    assert WEIGHTS.url in str(e.value)


def lenet_checkpoint(path: Path) -> dict:
    torch.manual_seed(1)
    state = build_model("lenet", (1, 28, 28), 10).state_dict()
    torch.save({"model": state, "normalization": {"mean": [0.2860], "std": [0.3530]},
                "classes": [str(i) for i in range(10)], "config": {"model": {"name": "lenet"}},
                "image_shape": [1, 28, 28], "model_name": "lenet"}, path)
    return state


def test_dlcourse_checkpoint_into_lenet_with_other_classes(tmp_path):
    state = lenet_checkpoint(tmp_path / "best.pt")
    pretrained = load_pretrained(str(tmp_path / "best.pt"), "lenet")
    assert pretrained.mean == [0.2860] and pretrained.std == [0.3530] and pretrained.classes[-1] == "9"
    assert pretrained.image_size == 28 and pretrained.model_name == "lenet"
    model = build_model("lenet", (1, 28, 28), 5)
    report = load_matching(model, pretrained)
    assert dict(report.reinitialised).keys() == {"classifier.7.weight", "classifier.7.bias"}
    assert report.reinitialised_modules == set(head_modules(model)) == {"classifier.7"}
    assert all(torch.equal(model.state_dict()[n], state[n]) for n in report.loaded)
    assert len(report.loaded) == len(state) - 2


def test_lenet_checkpoint_does_not_fit_resnet18(tmp_path):
    lenet_checkpoint(tmp_path / "best.pt")
    model = build_model("resnet18", (1, 28, 28), 10)
    before = fresh_state(model)
    with pytest.raises(ConfigError, match="does not fit") as e:
        load_matching(model, load_pretrained(str(tmp_path / "best.pt"), "resnet18"), model_name="resnet18")
    assert "lenet" in str(e.value) and "resnet18" in str(e.value)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # nothing copied


def test_plain_state_dict_without_batch_counters(tmp_path, resnet18_file):
    state = {k: v for k, v in torch.load(resnet18_file, weights_only=True).items()
             if not k.endswith("num_batches_tracked")}  # as in weights saved before PyTorch 0.4.1
    torch.save({f"module.{k}": v for k, v in state.items()}, tmp_path / "plain.pth")
    pretrained = load_pretrained(str(tmp_path / "plain.pth"), "resnet18")
    assert pretrained.mean is None and pretrained.classes is None and pretrained.image_size is None
    model = build_model("resnet18", (3, 224, 224), 10)
    report = load_matching(model, pretrained)
    assert report.missing and all(n.endswith("num_batches_tracked") for n in report.missing)
    assert report.reinitialised_modules == {"fc"}


def test_unknown_weights_name_lists_the_valid_ones():
    with pytest.raises(ConfigError, match="IMAGENET1K_V1, DEFAULT"):
        load_pretrained("IMAGENET1K_V9", "resnet18")
    with pytest.raises(ConfigError, match="IMAGENET1K_V2"):
        load_pretrained("imagenet", "resnet50")
    with pytest.raises(ConfigError, match="ResNet18_Weights"):
        load_pretrained("ResNet50_Weights.IMAGENET1K_V1", "resnet18")


@pytest.mark.parametrize("name", ["mlp", "lenet", "linear", "perceptron"])
def test_weights_name_for_a_model_without_torchvision_weights(name):
    with pytest.raises(ConfigError, match="only the path of a checkpoint"):
        load_pretrained("DEFAULT", name)


def test_missing_path_and_damaged_file(tmp_path):
    with pytest.raises(ConfigError, match="model.weights"):
        load_pretrained(str(tmp_path / "nowhere" / "best.pt"), "resnet18")
    (tmp_path / "bad.pt").write_bytes(b"\x00garbage")
    with pytest.raises(CheckpointError, match="bad.pt"):
        load_pretrained(str(tmp_path / "bad.pt"), "lenet")


def test_load_matching_takes_an_in_memory_state_dict():
    model = build_model("mlp", (4,), 3, hidden_sizes=[8])
    source = build_model("mlp", (4,), 2, hidden_sizes=[8])
    report = load_matching(model, Pretrained(source.state_dict(), "memory"))
    assert report.loaded == ["1.weight", "1.bias"] and head_modules(model) == ["3"]
    assert torch.equal(model[1].weight, source[1].weight)


def test_heads_and_stages():
    resnet = build_model("resnet18", (3, 32, 32), 10)
    assert head_modules(resnet) == ["fc"]
    assert stages(resnet) == [["conv1", "bn1"], ["layer1"], ["layer2"], ["layer3"], ["layer4"], ["fc"]]
    vgg = build_model("vgg11", (3, 32, 32), 10)
    assert head_modules(vgg) == ["classifier.6"]
    assert stages(vgg) == [["features.0"], ["features.3"], ["features.6", "features.8"],
                           ["features.11", "features.13"], ["features.16", "features.18"], ["classifier"]]
    vgg_bn = build_model("vgg11", (3, 32, 32), 10, batch_norm=True)
    assert stages(vgg_bn)[0] == ["features.0", "features.1"]
    lenet = build_model("lenet", (1, 28, 28), 10)
    assert head_modules(lenet) == ["classifier.7"]
    assert stages(lenet) == [["features.0"], ["features.3"], ["classifier"]]
    mlp = build_model("mlp", (1, 28, 28), 10, hidden_sizes=[32, 16], batch_norm=True)
    assert head_modules(mlp) == ["7"]
    assert stages(mlp) == [["1", "2"], ["4", "5"], ["7"]]


def test_import_does_not_import_torchvision():
    code = "import sys, dlcourse.transfer; assert 'torchvision' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=120)


@pytest.fixture(scope="module")
def resnet34_state() -> dict:
    torch.manual_seed(0)
    return torchvision.models.resnet34().state_dict()


def test_a_checkpoint_of_another_architecture_is_refused_naming_both(tmp_path, resnet34_state):
    torch.save({"model": resnet34_state, "model_name": "resnet34"}, tmp_path / "best.pt")
    model = build_model("resnet18", (3, 224, 224), 10)
    before = fresh_state(model)
    with pytest.raises(ConfigError) as e:
        load_matching(model, load_pretrained(str(tmp_path / "best.pt"), "resnet18"), model_name="resnet18")
    message = str(e.value)
    assert "\n" not in message and "model=resnet34" in message and "model=resnet18" in message
    assert "best.pt" in message and "finetune.allow_partial=true" in message
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # nothing copied


def test_a_state_dict_of_another_architecture_needs_allow_partial(tmp_path, resnet34_state):
    torch.save(resnet34_state, tmp_path / "resnet34.pth")
    pretrained = load_pretrained(str(tmp_path / "resnet34.pth"), "resnet18")
    model = build_model("resnet18", (3, 224, 224), 10)
    with pytest.raises(ConfigError) as e:
        load_matching(model, pretrained, model_name="resnet18")
    message = str(e.value)
    assert "\n" not in message and "resnet34.pth" in message and "finetune.allow_partial=true" in message
    assert "layer1.2.conv1.weight" in message  # names some tensors that fit nowhere
    report = load_matching(model, pretrained, model_name="resnet18", allow_partial=True)
    assert len(report.unused) == len(resnet34_state) - len(model.state_dict())
    assert torch.equal(model.state_dict()["layer4.1.conv2.weight"], resnet34_state["layer4.1.conv2.weight"])


def test_allow_partial_reaches_load_weights(tmp_path, resnet34_state):
    from conftest import compose_config
    from dlcourse.builders import dataset_info, load_weights, make_model, resolve_task

    torch.save(resnet34_state, tmp_path / "resnet34.pth")
    base = ["model=resnet18", f"model.weights={tmp_path / 'resnet34.pth'}", "model.small_input=false",
            "dataset=synthetic", "dataset.image_shape=[3,32,32]"]
    for extra, refused in (([], True), (["finetune.allow_partial=true"], False)):
        cfg = compose_config([*base, *extra])
        info = dataset_info(cfg)
        model, name = make_model(cfg, info, torch.device("cpu"), resolve_task(cfg, info))
        if refused:
            with pytest.raises(ConfigError, match="allow_partial"):
                load_weights(cfg, model, name)
        else:
            assert load_weights(cfg, model, name)[1].unused
