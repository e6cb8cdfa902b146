"""The large models: torchvision's networks at 224x224 RGB, adapted to small and grayscale images."""
from pathlib import Path

import pytest
import torch
import torchvision
from omegaconf import OmegaConf
from torch import nn

from dlcourse.errors import ConfigError
from dlcourse.models import builder, build_model

ZOO = ["alexnet", "vgg11", "vgg13", "vgg16", "vgg19", "resnet18", "resnet34", "resnet50"]
VGGS = ["vgg11", "vgg13", "vgg16", "vgg19"]
CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "model"


def config_options(name: str) -> dict:
    """The model's options as configs/model/<name>.yaml sets them (the builder's; not model.weights)."""
    options = OmegaConf.to_container(OmegaConf.load(CONFIGS / f"{name}.yaml"))
    assert options.pop("name") == name
    assert options.pop("weights") is None  # every model config has the key, off by default
    return options


def on_meta(name: str, input_shape, num_classes: int = 1000, **options) -> nn.Module:
    """Build without allocating or initialising weights: for checks of structure only."""
    with torch.device("meta"):
        return builder(name)(input_shape, num_classes, **options)


def shapes(model: nn.Module) -> dict:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)], ids=["1x28x28", "3x32x32"])
@pytest.mark.parametrize("name", ZOO)
def test_small_images_forward_and_backward(name, shape):
    torch.manual_seed(0)
    model = build_model(name, shape, 7, **config_options(name))
    logits = model(torch.randn(2, *shape))
    assert logits.shape == (2, 7)
    nn.functional.cross_entropy(logits, torch.tensor([0, 6])).backward()
    for key, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), key


@pytest.mark.parametrize("name, batch_norm", [(n, False) for n in ZOO] + [(n, True) for n in VGGS])
def test_imagenet_variant_is_torchvision(name, batch_norm):
    options = {"batch_norm": True} if batch_norm else {}
    model = on_meta(name, (3, 224, 224), **options)
    with torch.device("meta"):
        reference = getattr(torchvision.models, name + ("_bn" if batch_norm else ""))(weights=None)
    assert count(model) == count(reference)
    assert shapes(model) == shapes(reference)
    reference.load_state_dict(model.state_dict(), strict=True, assign=True)


@pytest.mark.parametrize("name", ["alexnet", "resnet18"])
def test_torchvision_weights_load_and_compute_the_same(name):
    torch.manual_seed(0)
    reference = getattr(torchvision.models, name)(weights=None).eval()
    model = builder(name)((3, 224, 224), 1000)
    model.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(1, 3, 64, 64)  # the ImageNet variant takes 64 px too; cheaper than 224
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), reference(x))


@pytest.mark.parametrize("name, first_conv", [("alexnet", "features.0"), ("vgg11", "features.0"),
                                              ("resnet18", "conv1")])
def test_grayscale_replaces_only_the_first_convolution(name, first_conv):
    rgb, gray = shapes(on_meta(name, (3, 224, 224))), shapes(on_meta(name, (1, 224, 224)))
    key = f"{first_conv}.weight"
    assert gray[key] == (rgb[key][0], 1, *rgb[key][2:])  # same kernel, one input channel
    assert {k: v for k, v in gray.items() if k != key} == {k: v for k, v in rgb.items() if k != key}


@pytest.mark.parametrize("name", ["alexnet", "vgg11", "resnet18"])
def test_small_input_threshold_is_64_pixels(name):
    def imagenet_variant(model):
        return count(model) == count(on_meta(name, (3, 224, 224), 10))

    assert imagenet_variant(on_meta(name, (3, 64, 64), 10))
    assert imagenet_variant(on_meta(name, (3, 64, 300), 10))
    assert not imagenet_variant(on_meta(name, (3, 63, 63), 10))
    assert not imagenet_variant(on_meta(name, (3, 64, 32), 10))
    assert not imagenet_variant(on_meta(name, (3, 224, 224), 10, small_input=True))
    assert imagenet_variant(on_meta(name, (3, 32, 32), 10, small_input=False))


def test_resnet_small_stem():
    model = on_meta("resnet18", (3, 32, 32), 10)
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    assert isinstance(model.maxpool, nn.Identity)


def test_vgg_pads_images_under_32_pixels():
    model = build_model("vgg11", (1, 20, 29), 5)  # odd, non-square: five poolings still end at 1x1
    assert model.features[0].padding == (7, 3)
    assert model(torch.randn(2, 1, 20, 29)).shape == (2, 5)


def test_too_small_for_the_imagenet_variant_is_a_config_error():
    with pytest.raises(ConfigError, match="model=alexnet cannot take 3x32x32 inputs"):
        build_model("alexnet", (3, 32, 32), 10, small_input=False)


@pytest.mark.parametrize("name", VGGS)
def test_vgg_batch_norm_switch(name):
    def batch_norms(model):
        return sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())

    convs = sum(isinstance(m, nn.Conv2d) for m in on_meta(name, (3, 32, 32), 10).modules())
    assert batch_norms(on_meta(name, (3, 32, 32), 10)) == 0
    assert batch_norms(on_meta(name, (3, 32, 32), 10, batch_norm=True)) == convs
    assert batch_norms(on_meta(name, (3, 224, 224), batch_norm=True)) == convs


def test_materialised_weights_are_initialised():
    """The meta-built models are materialised from uninitialised memory: every tensor must be set."""
    torch.manual_seed(0)
    model = build_model("vgg11", (3, 32, 32), 10, batch_norm=True)
    for key, t in model.state_dict().items():
        assert torch.isfinite(t.float()).all(), key
    bn = model.features[1]
    assert torch.equal(bn.running_var, torch.ones(64)) and torch.equal(bn.running_mean, torch.zeros(64))
    assert bn.num_batches_tracked.item() == 0
    assert model.classifier[0].weight.std().item() == pytest.approx(0.01, rel=0.1)  # torchvision's VGG init
    alexnet = build_model("alexnet", (1, 28, 28), 10)
    for key, t in alexnet.state_dict().items():
        assert torch.isfinite(t).all() and t.abs().max() < 1, key


@pytest.mark.parametrize("shape", [(3, 32, 32), (3, 224, 224)], ids=["small", "imagenet"])
@pytest.mark.parametrize("name", ["alexnet", "vgg11"])
def test_dropout_option(name, shape):
    model = on_meta(name, shape, 10, dropout=0.3)
    dropouts = [m.p for m in model.modules() if isinstance(m, nn.Dropout)]
    assert dropouts == [0.3, 0.3]


@pytest.mark.parametrize("shape", [(3, 32, 32), (3, 224, 224)], ids=["small", "imagenet"])
@pytest.mark.parametrize("name, layers", [("alexnet", 7), ("vgg11", 10)])
def test_activation_option(name, layers, shape):
    model = on_meta(name, shape, 10, activation="tanh")
    assert not any(isinstance(m, nn.ReLU) for m in model.modules())
    assert sum(isinstance(m, nn.Tanh) for m in model.modules()) == layers
    assert model.activation == "tanh"
    assert on_meta(name, shape, 10).activation == "relu"


def test_resnet_zero_init_residual():
    model = builder("resnet18")((3, 32, 32), 10, zero_init_residual=True)
    assert all(torch.count_nonzero(block.bn2.weight) == 0 for block in model.modules()
               if isinstance(block, torchvision.models.resnet.BasicBlock))
    assert model.activation == "relu"


@pytest.mark.parametrize("name, option", [("resnet18", "dropout"), ("vgg11", "depth"),
                                          ("alexnet", "batch_norm")])
def test_unknown_option_is_a_config_error(name, option):
    with pytest.raises(ConfigError, match=f"model={name} has no option model.{option}"):
        build_model(name, (3, 32, 32), 10, **{option: 1})


def test_unknown_activation_is_a_config_error():
    with pytest.raises(ConfigError, match="model.activation='swish' is not known"):
        on_meta("vgg11", (3, 32, 32), 10, activation="swish")
