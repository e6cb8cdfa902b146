"""Model zoo: `build_model(name, input_shape, num_classes, **options)`."""
from __future__ import annotations

import re
from typing import Callable

import torch
from torch import nn

from dlcourse.errors import ConfigError
from dlcourse.models.alexnet import alexnet
from dlcourse.models.lenet import lenet
from dlcourse.models.mlp import mlp
from dlcourse.models.resnet import resnet18, resnet34, resnet50
from dlcourse.models.vgg import vgg11, vgg13, vgg16, vgg19

# name -> builder(input_shape, num_classes, **options)
MODELS: dict[str, Callable[..., nn.Module]] = {
    "mlp": mlp,
    "lenet": lenet,
    "alexnet": alexnet,
    "vgg11": vgg11,
    "vgg13": vgg13,
    "vgg16": vgg16,
    "vgg19": vgg19,
    "resnet18": resnet18,
    "resnet34": resnet34,
    "resnet50": resnet50,
}


def check_forward(model: nn.Module, input_shape: tuple[int, int, int], name: str) -> None:
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


def build_model(name: str, input_shape: tuple[int, int, int], num_classes: int, **options) -> nn.Module:
    """Instantiate model `name` for images of `input_shape` = (C, H, W) and `num_classes` outputs."""
    if name not in MODELS:
        raise ConfigError(f"model.name={name!r} is not known: choose one of {', '.join(MODELS)}.")
    try:
        model = MODELS[name](tuple(input_shape), num_classes, **options)
    except TypeError as e:
        bad = re.search(r"unexpected keyword argument '(\w+)'", str(e))
        if not bad:
            raise
        raise ConfigError(f"model={name} has no option model.{bad.group(1)}: remove it, or pick a model "
                          "that has it (see configs/model/).") from None
    check_forward(model, tuple(input_shape), name)
    return model
