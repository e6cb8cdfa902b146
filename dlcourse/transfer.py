"""Transfer learning: load pretrained weights (torchvision's or a checkpoint) into a model, tensor by tensor.

Tensors are matched by name and shape; the rest keep the model's initialisation and are reported, so a head
for another number of classes or a small-input stem never fails silently. torchvision is imported lazily.
"""
from __future__ import annotations

import math
import os
import pickle
from dataclasses import asdict, dataclass, field
from http.client import HTTPException
from pathlib import Path

import torch
from torch import nn

from dlcourse.errors import CheckpointError, ConfigError, DataError

PATH_SUFFIXES = {".pt", ".pth", ".ckpt", ".bin", ".tar"}


@dataclass
class Pretrained:
    """Weights to start from, with the input normalisation and classes they were trained with."""
    state_dict: dict[str, torch.Tensor]
    source: str
    mean: list[float] | None = None
    std: list[float] | None = None
    image_size: int | None = None
    classes: list[str] | None = None
    model_name: str | None = None  # the architecture the weights are for, where known


def load_pretrained(spec: str, model_name: str, download: bool = True, *, batch_norm: bool = False,
                    torchvision_name: str | None = None) -> Pretrained:
    """`spec` is a path to a checkpoint or state dict, or a torchvision weights name for `model_name`
    ("DEFAULT", "IMAGENET1K_V1", "ResNet18_Weights.IMAGENET1K_V1"); VGG with `batch_norm` uses the `_bn` weights."""
    path = Path(spec).expanduser()
    if path.exists():
        return _from_file(path)
    if path.suffix in PATH_SUFFIXES or "/" in spec or os.sep in spec:
        raise ConfigError(f"model.weights={spec!r}: no such file. Give the path of a checkpoint or state dict "
                          "(.pt), or the name of torchvision weights such as DEFAULT or IMAGENET1K_V1.")
    from torchvision.models import get_model_weights

    tv_name = torchvision_name or (f"{model_name}_bn" if batch_norm and model_name.startswith("vgg") else model_name)
    try:
        enum = get_model_weights(tv_name)
    except ValueError:
        raise ConfigError(f"model.weights={spec!r}: model={model_name} has no torchvision weights, so only the "
                          "path of a checkpoint (.pt) can give its starting weights. Give a file path, or "
                          "remove model.weights to train from scratch.") from None
    names = [w.name for w in enum] + ["DEFAULT"]
    prefix, _, name = spec.rpartition(".")
    if (prefix and prefix != enum.__name__) or name not in names:
        raise ConfigError(f"model.weights={spec!r} is neither an existing file nor weights torchvision has for "
                          f"{tv_name}: choose one of {', '.join(names)} (or {enum.__name__}.<name>), or give "
                          "the path of a checkpoint.")
    weights = enum[name]
    file = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)
    if file.is_file():
        state = _read(file, f"Delete it and fetch it again from {weights.url}.")
    else:
        state = _download(weights, file, download)
    preset = weights.transforms()
    return Pretrained(state, f"torchvision {weights} ({file})", list(preset.mean), list(preset.std),
                      int(preset.crop_size[0]), list(weights.meta["categories"]), tv_name)


def _download(weights, file: Path, download: bool) -> dict:
    """torch.hub's download into `file`; a failure (or no download) becomes a DataError saying what to copy where."""
    reason = "downloads are off"
    if download:
        created = [p for p in (file.parent, *file.parent.parents) if not p.exists()]
        try:
            return torch.hub.load_state_dict_from_url(weights.url, model_dir=str(file.parent), map_location="cpu",
                                                      weights_only=True, progress=True)
        except (OSError, HTTPException) as e:
            reason = f"downloading it failed ({str(e).strip() or type(e).__name__})"
            for p in created:  # leave no empty folders behind
                try:
                    p.rmdir()
                except OSError:
                    break
    raise DataError(f"The torchvision weights {weights} are not on this machine and {reason}: the file "
                    f"{file.name} is not in {file.parent} ($TORCH_HOME/hub/checkpoints). On a machine with "
                    f"internet, fetch {weights.url} and copy it to {file}, then run again.")


def _read(path: Path, advice: str) -> object:
    """torch.load(weights_only=True), with any failure as one CheckpointError naming `path`."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "GLOBAL" in str(e):
            raise CheckpointError(f"Refused to load {path}: it holds an object that could run code when "
                                  f"unpickled (nothing in it was executed). {advice}") from None
        raise CheckpointError(f"Cannot read {path}: it is not a PyTorch file. {advice}") from None
    except Exception as e:  # damaged bytes fail in many ways
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"Cannot read {path} ({first}): the file is truncated or not a PyTorch "
                              f"file. {advice}") from None


def _from_file(path: Path) -> Pretrained:
    """A dlcourse checkpoint (its "model", normalization and classes) or a plain state dict."""
    if not path.is_file():
        raise ConfigError(f"model.weights={str(path)!r} is a folder: give the path of a checkpoint file (.pt).")
    advice = "Give a checkpoint written by dlcourse or a state dict saved with torch.save(model.state_dict())."
    ckpt = _read(path, advice)
    info = ckpt if isinstance(ckpt, dict) and isinstance(ckpt.get("model"), dict) else {}
    state = info["model"] if info else ckpt
    if not info and isinstance(ckpt, dict) and isinstance(ckpt.get("state_dict"), dict):
        state = ckpt["state_dict"]  # {"state_dict": ...}, as other trainers save it
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} holds no state dict (a dict of tensors by name). {advice}")
    for prefix in ("module.", "_orig_mod."):  # saved from DistributedDataParallel or torch.compile
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    norm, shape = info.get("normalization") or {}, info.get("image_shape") or []
    size = int(shape[-1]) if len(shape) == 3 and shape[-1] == shape[-2] else None
    classes = list(info["classes"]) if info.get("classes") is not None else None
    return Pretrained(state, str(path), norm.get("mean"), norm.get("std"), size, classes, info.get("model_name"))


@dataclass
class TransferReport:
    """What `load_matching` did with each tensor of the model's state dict (and of the weights)."""
    source: str
    loaded: list[str] = field(default_factory=list)
    adapted: list[tuple[str, str]] = field(default_factory=list)
    reinitialised: list[tuple[str, str]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {**asdict(self), "adapted": [list(t) for t in self.adapted],
                "reinitialised": [list(t) for t in self.reinitialised]}

    def summary(self) -> str:
        total = len(self.loaded) + len(self.adapted) + len(self.reinitialised) + len(self.missing)
        parts = [f"loaded {len(self.loaded)} of {total} tensors from {self.source}"]
        if self.adapted:
            parts.append("adapted " + ", ".join(f"{n} ({how})" for n, how in self.adapted))
        if self.reinitialised:
            parts.append("re-initialised " + ", ".join(f"{n} ({why})" for n, why in self.reinitialised))
        if self.missing:
            parts.append(f"{len(self.missing)} not in the weights, kept as initialised ({_few(self.missing)})")
        if self.unused:
            parts.append(f"{len(self.unused)} in the weights unused ({_few(self.unused)})")
        return "; ".join(parts)

    @property
    def reinitialised_modules(self) -> set[str]:
        """Modules with a tensor that was not loaded (num_batches_tracked counters aside)."""
        names = [n for n, _ in self.reinitialised] + [n for n in self.missing if not n.endswith("num_batches_tracked")]
        return {n.rpartition(".")[0] for n in names}


def _few(names: list[str], n: int = 3) -> str:
    return ", ".join(names[:n]) + (", ..." if len(names) > n else "")


def _adapt_input_conv(weight: torch.Tensor, channels: int) -> tuple[torch.Tensor, str]:
    """RGB filters for `channels` inputs, as timm's adapt_input_conv: summed for 1, else repeated and scaled by 3/C."""
    w = weight.float()
    if channels == 1:
        return w.sum(dim=1, keepdim=True).to(weight.dtype), "summed over the 3 RGB input channels for 1 channel"
    w = w.repeat(1, math.ceil(channels / 3), 1, 1)[:, :channels] * (3 / channels)
    return w.to(weight.dtype), f"RGB filters repeated to {channels} input channels and scaled by 3/{channels}"


PARTIAL_HINT = "or load the tensors that fit anyway with finetune.allow_partial=true"


def load_matching(model: nn.Module, pretrained: Pretrained, min_fraction: float = 0.5, *,
                  model_name: str | None = None, allow_partial: bool = False) -> TransferReport:
    """Copy the tensors of `pretrained` that match the model's by name and shape (the first convolution is adapted
    to other input channels). A ConfigError when under `min_fraction` of the parameters match, and, unless
    `allow_partial`, when the weights are for another architecture: a checkpoint of another model, or tensors
    whose names the model does not have."""
    own, src = model.state_dict(), pretrained.state_dict
    if (model_name and pretrained.model_name and not allow_partial
            and pretrained.model_name not in (model_name, f"{model_name}_bn")):
        raise ConfigError(f"model.weights: {pretrained.source} is a checkpoint of model={pretrained.model_name} and "
                          f"does not fit model={model_name}. Give weights of model={model_name}, train "
                          f"model={pretrained.model_name} instead, {PARTIAL_HINT}.")
    report = TransferReport(pretrained.source, unused=[k for k in src if k not in own])
    heads = set(head_modules(model))
    first = next((f"{n}.weight" for n, m in model.named_modules() if isinstance(m, nn.Conv2d)), None)
    values: dict[str, torch.Tensor] = {}
    for name, mine in own.items():
        theirs = src.get(name)
        if theirs is None:
            report.missing.append(name)
        elif theirs.shape == mine.shape:
            report.loaded.append(name)
            values[name] = theirs
        elif (name == first and theirs.dim() == 4 and theirs.shape[1] == 3
              and theirs.shape[:1] + theirs.shape[2:] == mine.shape[:1] + mine.shape[2:]):
            values[name], how = _adapt_input_conv(theirs, mine.shape[1])
            report.adapted.append((name, how))
        else:
            module = name.rpartition(".")[0]
            role = "the head, " if module in heads else "the first convolution, " if name == first else ""
            report.reinitialised.append(
                (name, f"{role}shape {list(theirs.shape)} in the weights, {list(mine.shape)} here"))
    params = [n for n, _ in model.named_parameters()]
    matched = sum(n in values for n in params)
    if params and matched < min_fraction * len(params):
        name = model_name or type(model).__name__
        hint = (f"the weights are for {pretrained.model_name}, this model is {name}" if pretrained.model_name
                else f"the weights hold {_few(report.unused)} and this model has {_few(params)}")
        raise ConfigError(f"model.weights: {pretrained.source} does not fit model {name}: only {matched} of its "
                          f"{len(params)} parameter tensors match by name and shape ({hint}). Give weights of "
                          "the same architecture, or remove model.weights to train from scratch.")
    if report.unused and not allow_partial:  # shapes that differ (a head, a small-input stem) are listed, not refused
        raise ConfigError(f"model.weights: {pretrained.source} looks like weights of another architecture than model "
                          f"{model_name or type(model).__name__}: {len(report.unused)} of its tensors have no place in "
                          f"this model ({_few(report.unused)}). Give weights of the same architecture, {PARTIAL_HINT}.")
    with torch.no_grad():
        for name, value in values.items():
            own[name].copy_(value)
    return report


def head_modules(model: nn.Module) -> list[str]:
    """The classifier head: the module a model names as its `head` attribute (your own models may),
    else the last nn.Linear (ResNet "fc", VGG "classifier.6")."""
    own = getattr(model, "head", None)
    if isinstance(own, nn.Module):
        return [n for n, m in model.named_modules() if m is own and n][:1]
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    return names[-1:]


def _has_params(module: nn.Module) -> bool:
    return next(module.parameters(), None) is not None


def stages(model: nn.Module) -> list[list[str]]:
    """Module-name prefixes grouped into stages from input to output: `features` split at each pooling layer,
    then each top-level child, a normalisation (any parameter-holding leaf but Conv/Linear) joining its predecessor."""
    result: list[list[str]] = []
    for name, child in model.named_children():
        if name == "features" and isinstance(child, nn.Sequential):
            block: list[str] = []
            for sub, m in child.named_children():
                if _has_params(m):
                    block.append(f"{name}.{sub}")
                if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)) and block:
                    result.append(block)
                    block = []
            if block:
                result.append(block)
        elif _has_params(child):
            starts = isinstance(child, (nn.modules.conv._ConvNd, nn.Linear)) or next(child.children(), None) is not None
            if starts or not result:
                result.append([name])
            else:
                result[-1].append(name)
    return result
