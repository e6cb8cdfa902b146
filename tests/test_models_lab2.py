"""The CIFAR ResNets of He et al. (2016) and LeNet-5's width and batch-norm options."""
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from dlcourse.errors import ConfigError
from dlcourse.models import build_model, builder
from dlcourse.models.cifar_resnet import BasicBlock, ZeroPadShortcut

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "model"


def config_options(name: str) -> dict:
    options = OmegaConf.to_container(OmegaConf.load(CONFIGS / f"{name}.yaml"))
    assert options.pop("name") == name and options.pop("weights") is None
    return options


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def shapes(model: nn.Module) -> dict:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


# ---- CIFAR ResNet -------------------------------------------------------------------------------

@pytest.mark.parametrize("depth, millions, tolerance", [(20, 0.27, 0.005), (32, 0.46, 0.005), (56, 0.85, 0.01)])
def test_cifar_resnet_parameter_counts_match_the_paper(depth, millions, tolerance):
    with torch.device("meta"):  # structure only: no memory, no initialisation
        skip = builder("cifar_resnet")((3, 32, 32), 10, depth=depth)
        plain = builder("cifar_resnet")((3, 32, 32), 10, depth=depth, skip=False)
    assert count(skip) / 1e6 == pytest.approx(millions, abs=tolerance)
    assert count(plain) == count(skip)
    assert sum(isinstance(m, nn.Conv2d) for m in skip.modules()) + 1 == depth  # + the linear layer
    assert count(skip) == {20: 269_722, 32: 464_154, 56: 853_018}[depth]


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)], ids=["1x28x28", "3x32x32"])
@pytest.mark.parametrize("skip", [True, False], ids=["resnet", "plain"])
def test_cifar_resnet_forward_and_backward(shape, skip):
    torch.manual_seed(0)
    model = build_model("cifar_resnet", shape, 7, **{**config_options("cifar_resnet"), "skip": skip})
    logits = model(torch.randn(2, *shape))
    assert logits.shape == (2, 7)
    logits.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    assert model.activation == "relu"


def _blocks_with_zeroed_second_convs(skip: bool) -> list[BasicBlock]:
    torch.manual_seed(0)
    model = build_model("cifar_resnet", (3, 32, 32), 10, depth=20, skip=skip).eval()
    blocks = [m for m in model.modules() if isinstance(m, BasicBlock)]
    with torch.no_grad():
        for block in blocks:
            block.conv2.weight.zero_()
    return blocks


def test_shortcuts_are_identity_or_zero_padding_and_plain_has_none():
    x = torch.relu(torch.randn(2, 16, 32, 32))  # a block's input follows a ReLU
    skip, plain = _blocks_with_zeroed_second_convs(True), _blocks_with_zeroed_second_convs(False)
    with torch.no_grad():
        torch.testing.assert_close(skip[0](x), x)  # stride 1: residual 0, output = identity path
        assert torch.count_nonzero(plain[0](x)) == 0  # relu(0), nothing carried over
        down = skip[3]  # first block of stage 2: stride 2, 16 -> 32 channels
        assert isinstance(down.shortcut, ZeroPadShortcut)
        y = down(x)
        torch.testing.assert_close(y[:, :16], x[:, :, ::2, ::2])
        assert y.shape == (2, 32, 16, 16) and torch.count_nonzero(y[:, 16:]) == 0
    assert not any(isinstance(m, ZeroPadShortcut) for block in plain for m in block.modules())
    assert all(not block.skip for block in plain) and all(block.skip for block in skip)


def test_cifar_resnet_options():
    model = build_model("cifar_resnet", (3, 32, 32), 10, depth=8, width=8, activation="tanh",
                        zero_init_residual=True)
    assert model.activation == "tanh" and not any(isinstance(m, nn.ReLU) for m in model.modules())
    assert [model.layer1[0].conv1.out_channels, model.layer2[0].conv1.out_channels, model.fc.in_features] == [8, 16, 32]
    assert all(torch.count_nonzero(m.bn2.weight) == 0 for m in model.modules() if isinstance(m, BasicBlock))
    default = build_model("cifar_resnet", (3, 32, 32), 10)
    conv = default.layer3[1].conv1.weight  # Kaiming normal, fan_out = 64 * 3 * 3
    assert conv.std().item() == pytest.approx((2 / (64 * 9)) ** 0.5, rel=0.05)
    assert all(torch.count_nonzero(m.bn2.weight) > 0 for m in default.modules() if isinstance(m, BasicBlock))


@pytest.mark.parametrize("depth", [21, 22, 2, 0, "20"])
def test_cifar_resnet_bad_depth_is_a_config_error(depth):
    with pytest.raises(ConfigError, match=r"model.depth=.* 6n \+ 2"):
        build_model("cifar_resnet", (3, 32, 32), 10, depth=depth)


def test_cifar_resnet_unknown_option_is_a_config_error():
    with pytest.raises(ConfigError, match="model=cifar_resnet has no option model.dropout"):
        build_model("cifar_resnet", (3, 32, 32), 10, dropout=0.5)


# ---- LeNet-5 ------------------------------------------------------------------------------------

LENET_KEYS = {  # today's LeNet-5 on 1x28x28 with 10 classes: checkpoints depend on these names
    "features.0.weight": (6, 1, 5, 5), "features.0.bias": (6,),
    "features.3.weight": (16, 6, 5, 5), "features.3.bias": (16,),
    "classifier.1.weight": (120, 400), "classifier.1.bias": (120,),
    "classifier.4.weight": (84, 120), "classifier.4.bias": (84,),
    "classifier.7.weight": (10, 84), "classifier.7.bias": (10,),
}


def test_lenet_defaults_keep_the_state_dict():
    for options in ({}, config_options("lenet")):
        model = build_model("lenet", (1, 28, 28), 10, **options)
        assert list(model.state_dict()) == list(LENET_KEYS)
        assert shapes(model) == LENET_KEYS
        assert count(model) == 61_706
    rgb = build_model("lenet", (3, 32, 32), 10)
    assert shapes(rgb) == {**LENET_KEYS, "features.0.weight": (6, 3, 5, 5)}


def test_lenet_wide_variant_with_batch_norm():
    torch.manual_seed(0)
    model = build_model("lenet", (1, 28, 28), 10, channels=[20, 50], hidden=[500], batch_norm=True)
    # 28 -(pad 2, 5x5)-> 28 -pool-> 14 -(5x5)-> 10 -pool-> 5: 50 * 5 * 5 = 1250 features
    convs = 20 * 1 * 25 + 50 * 20 * 25  # no biases: the BatchNorm's shift replaces them
    norms = 2 * (20 + 50) + 2 * 500
    linears = 1250 * 500 + (500 * 10 + 10)
    assert count(model) == convs + norms + linears == 656_650
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 2
    assert sum(isinstance(m, nn.BatchNorm1d) for m in model.modules()) == 1
    assert all(m.bias is None for m in model.features if isinstance(m, nn.Conv2d))
    assert model.classifier[1].bias is None and model.classifier[-1].bias is not None
    state = model.state_dict()
    assert state["features.1.num_batches_tracked"].item() == 0 and torch.equal(state["features.1.running_var"],
                                                                               torch.ones(20))
    assert model(torch.randn(4, 1, 28, 28)).shape == (4, 10)


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)], ids=["1x28x28", "3x32x32"])
def test_lenet_batch_norm_on_both_image_sizes(shape):
    model = build_model("lenet", shape, 10, batch_norm=True)
    assert model.train()(torch.randn(3, *shape)).shape == (3, 10)
    assert sum(isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) for m in model.modules()) == 4
    assert count(model) == count(build_model("lenet", shape, 10)) - (6 + 16 + 120 + 84) + 2 * (6 + 16 + 120 + 84)


def test_lenet_bad_widths_are_config_errors():
    with pytest.raises(ConfigError, match="model.channels"):
        build_model("lenet", (1, 28, 28), 10, channels=[])
    with pytest.raises(ConfigError, match="model.hidden"):
        build_model("lenet", (1, 28, 28), 10, hidden=500)
    with pytest.raises(ConfigError, match="fewer model.channels"):
        build_model("lenet", (1, 28, 28), 10, channels=[8, 8, 8, 8])
    assert count(build_model("lenet", (1, 28, 28), 10, hidden=[])) == 6 * 26 + 16 * 151 + 401 * 10
