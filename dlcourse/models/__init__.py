"""Model zoo: `build_model(name, input_shape, num_classes, **options)`."""
from __future__ import annotations

import importlib
import re
from typing import Callable

import torch
from torch import nn

from dlcourse.errors import ConfigError

# name -> the module of its builder(input_shape, num_classes, **options), imported when first used:
# the big models sit on torchvision, which a run of the MLP or LeNet-5 need not import.
MODELS: dict[str, str] = {
    "linear": "linear",
    "perceptron": "linear",
    "mlp": "mlp",
    "lenet": "lenet",
    "alexnet": "alexnet",
    "vgg11": "vgg",
    "vgg13": "vgg",
    "vgg16": "vgg",
    "vgg19": "vgg",
    "resnet18": "resnet",
    "resnet34": "resnet",
    "resnet50": "resnet",
    "cifar_resnet": "cifar_resnet",
}


def builder(name: str) -> Callable[..., nn.Module]:
    """The builder function of model `name`."""
    if name not in MODELS:
        raise ConfigError(f"model.name={name!r} is not known: choose one of {', '.join(MODELS)}.")
    return getattr(importlib.import_module(f"dlcourse.models.{MODELS[name]}"), name)


def check_forward(model: nn.Module, input_shape: tuple[int, ...], name: str) -> None:
    """Run one tiny batch through `model`; a layer that cannot take the input becomes a ConfigError."""
    current = {"layer": "input"}
    hooks = [m.register_forward_pre_hook(lambda mod, args, n=n: current.update(layer=n))
             for n, m in model.named_modules() if n and not list(m.children())]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(2, *input_shape))
    except RuntimeError as e:
        reason = str(e).strip().splitlines()[0]
        shrinks = "too small" in reason or "smaller than kernel" in reason
        why = ("The feature map shrinks below the layer's kernel: use a dataset with larger images, a "
               "shallower model, or model.small_input=true where the model has it." if shrinks else
               "Check that the model's options fit the data (channels, image size).")
        raise ConfigError(f"model={name} cannot take {'x'.join(map(str, input_shape))} inputs: layer "
                          f"'{current['layer']}' failed ({reason}). {why}") from None
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()


def build_model(name: str, input_shape: tuple[int, ...], num_classes: int, **options) -> nn.Module:
    """Instantiate model `name` for inputs of `input_shape` ((C, H, W) images or (D,) vectors) and
    `num_classes` outputs (one logit per class, 1 for a binary task, the target dimension for regression)."""
    make = builder(name)
    try:
        model = make(tuple(input_shape), num_classes, **options)
    except TypeError as e:
        bad = re.search(r"unexpected keyword argument '(\w+)'", str(e))
        if not bad:
            raise
        raise ConfigError(f"model={name} has no option model.{bad.group(1)}: remove it, or pick a model "
                          "that has it (see configs/model/).") from None
    check_forward(model, tuple(input_shape), name)
    return model
