"""Model zoo: `build_model(name, input_shape, num_classes, **options)`, and the user's own models
(`build_user_model`, for `model._target_`): both are checked on one tiny batch before training."""
from __future__ import annotations

import importlib
import re
from typing import Callable, Optional

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


def check_forward(model: nn.Module, input_shape: tuple[int, ...], name: str, num_outputs: Optional[int] = None) -> None:
    """Run one tiny batch through `model`; a layer that cannot take the input, or an output that is
    not `num_outputs` values per input, becomes a ConfigError."""
    current = {"layer": "input"}
    hooks = [m.register_forward_pre_hook(lambda mod, args, n=n: current.update(layer=n))
             for n, m in model.named_modules() if n and not list(m.children())]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            out = model(torch.zeros(2, *input_shape))
    except Exception as e:
        from dlcourse.usercode import user_frame

        frame = user_frame(e.__traceback__)
        if not isinstance(e, RuntimeError) and frame is None:
            raise
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        if frame is not None:
            reason += f", at {frame.filename}:{frame.lineno}"
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
    if num_outputs is not None and (not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, num_outputs)):
        got = f"a tensor of shape {tuple(out.shape)}" if isinstance(out, torch.Tensor) else type(out).__name__
        raise ConfigError(f"model={name} returns {got} for a batch of 2 inputs, but this run needs ({2}, {num_outputs}): "
                          f"{num_outputs} output(s) per input (one logit per class, 1 for a binary task, the target "
                          "dimension for regression). Give the last layer that many outputs; a model factory receives "
                          "the number as num_outputs when its signature names it.")


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
    check_forward(model, tuple(input_shape), name, num_classes)
    return model


def build_user_model(target: str, input_shape: tuple[int, ...], num_outputs: int, **options) -> nn.Module:
    """The user's model `target` (`model._target_`: an nn.Module class or a function returning one),
    given `input_shape` and `num_outputs` where its signature names them and `options` as keywords."""
    from dlcourse.usercode import UserCodeError, call, locate

    key = "model._target_"
    factory = locate(target, key, "model")
    model = call(factory, key, target, options, {"input_shape": tuple(input_shape), "num_outputs": num_outputs})
    if not isinstance(model, nn.Module):
        raise UserCodeError(f"{key}={target} returned {type(model).__name__}, not a torch.nn.Module: a model factory "
                            "must return the network (an nn.Module).")
    check_forward(model, tuple(input_shape), target, num_outputs)
    return model
