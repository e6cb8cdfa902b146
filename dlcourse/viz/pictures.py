"""The pictures of `scripts/visualize.py`, each written as a PNG (and returned with its numbers for
tests): first-layer filters, feature maps, saliency (captum: vanilla gradient and SmoothGrad),
Grad-CAM (captum's LayerGradCam on the last convolution), class-model images by gradient ascent."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from torch import nn

from dlcourse.errors import ConfigError
from dlcourse.viz.common import grid_figure, layer, layers_of, show, signed_unit, to_unit


def filters(model: nn.Module, image_shape: tuple[int, int, int], path: Path, limit: int = 64) -> torch.Tensor:
    """The first layer's weights as images: conv kernels (RGB in colour), or for an MLP the
    first hidden units' weights over the input image."""
    convs = layers_of(model, nn.Conv2d)
    if convs:
        name, conv = convs[0]
        w = conv.weight.detach().cpu()[:limit]
        images = to_unit(w) if w.shape[1] == 3 else signed_unit(w[:, :1])
        what = f"{name}: {conv.out_channels} filters of {w.shape[-2]}x{w.shape[-1]}" + (
            "" if w.shape[1] in (1, 3) else f" (input channel 0 of {w.shape[1]})")
    else:
        linears = layers_of(model, nn.Linear)
        if not linears:
            raise ConfigError("The model has neither a convolution nor a linear layer to show.")
        name, lin = linears[0]
        w = lin.weight.detach().cpu()[:limit]
        images = to_unit(w.view(-1, *image_shape)) if image_shape[0] == 3 else signed_unit(w.view(-1, *image_shape)[:, :1])
        what = f"{name}: weights of {min(limit, lin.out_features)} of {lin.out_features} hidden units over the input"
    signs = "\nred: positive, blue: negative, white: 0 (each filter scaled by its largest |weight|)"
    grid_figure(images, [str(i) for i in range(len(images))],
                f"first-layer filters — {what}" + (signs if images.shape[1] == 1 else ""), path,
                cmap="RdBu_r" if images.shape[1] == 1 else "gray")
    return images


def feature_maps(model: nn.Module, image: torch.Tensor, shown: torch.Tensor, layer_name: Optional[str],
                 path: Path, limit: int = 63) -> torch.Tensor:
    """The activations of `layer_name` (default: the first convolution) for one input image."""
    if layer_name is None:
        convs = layers_of(model, nn.Conv2d)
        if not convs:
            raise ConfigError("The model has no convolution: feature maps are for convolutional models. For "
                              "this model, draw `filters`, `saliency` or `class_model`.")
        layer_name = convs[0][0]
    seen = {}
    handle = layer(model, layer_name).register_forward_hook(lambda m, i, o: seen.update(out=o.detach()))
    with torch.no_grad():
        model(image[None])
    handle.remove()
    maps = seen["out"][0].cpu()
    if maps.ndim != 3:
        raise ConfigError(f"--layer {layer_name} gives a vector, not feature maps: pick a convolution.")
    # maps drawn at the input's size (nearest neighbour: each map pixel stays a visible square)
    scaled = F.interpolate(to_unit(maps[:limit, None]), size=tuple(shown.shape[-2:]), mode="nearest")
    images = torch.cat([shown[None].cpu().mean(1, keepdim=True), scaled])
    titles = ["input"] + [f"channel {i}" for i in range(min(limit, len(maps)))]
    grid_figure(images, titles, f"feature maps of {layer_name} ({len(maps)} channels, "
                f"{maps.shape[-2]}x{maps.shape[-1]})", path, cmap="viridis")
    return maps


def saliency(model, x: torch.Tensor, shown: torch.Tensor, titles: list[str], path: Path,
             samples: int = 16) -> dict[str, torch.Tensor]:
    """|d score / d pixel| of the predicted class (max over channels): vanilla gradient and SmoothGrad."""
    from captum.attr import NoiseTunnel, Saliency

    target = model(x).argmax(1)
    vanilla = Saliency(model).attribute(x, target=target, abs=True).amax(1, keepdim=True)
    noise = 0.15 * float(x.detach().max() - x.detach().min())
    smooth = NoiseTunnel(Saliency(model)).attribute(x, nt_type="smoothgrad", nt_samples=samples, stdevs=noise,
                                                    target=target, abs=True).amax(1, keepdim=True)
    maps = {"gradient": vanilla.detach(), "SmoothGrad": smooth.detach()}
    _rows(shown, maps, titles, "saliency of the predicted class", path)
    return maps


def gradcam(model: nn.Module, x: torch.Tensor, shown: torch.Tensor, titles: list[str], path: Path,
            layer_name: Optional[str] = None, forward=None) -> torch.Tensor:
    """Grad-CAM on the last convolution (or `layer_name`), upsampled to the input and overlaid;
    `forward`: the class scores (default: the model's outputs)."""
    from captum.attr import LayerAttribution, LayerGradCam

    convs = layers_of(model, nn.Conv2d)
    if not convs and layer_name is None:
        raise ConfigError("Grad-CAM needs a convolutional model (the MLP has no feature maps): for this "
                          "model, draw `filters`, `saliency` or `class_model`.")
    name = layer_name or convs[-1][0]
    forward = forward or model
    target = forward(x).argmax(1)
    cam = LayerGradCam(forward, layer(model, name)).attribute(x, target=target, relu_attributions=True)
    cam = LayerAttribution.interpolate(cam, tuple(x.shape[-2:]), interpolate_mode="bilinear").detach()
    _rows(shown, {f"Grad-CAM ({name})": cam}, titles, "Grad-CAM of the predicted class", path)
    return cam


def _rows(shown: torch.Tensor, maps: dict[str, torch.Tensor], titles: list[str], title: str, path: Path) -> None:
    """One column per image: the image, then each map overlaid on it (a row per kind of map)."""
    rows, cols = 1 + len(maps), len(shown)
    fig, axes = plt.subplots(rows, cols, figsize=(1.9 * cols + 0.8, 1.9 * rows + 0.6), squeeze=False)
    for j, img in enumerate(shown):
        show(axes[0][j], img)
        axes[0][j].set_title(titles[j].replace(", ", "\n"), fontsize=7)
        for i, (name, m) in enumerate(maps.items(), start=1):
            show(axes[i][j], img)
            axes[i][j].imshow(to_unit(m[j:j + 1])[0, 0].cpu().numpy(), cmap="jet", alpha=0.5, vmin=0, vmax=1)
    for i, name in enumerate(["image", *maps], start=0):
        axes[i][0].set_ylabel(name, fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 0.9, 1), h_pad=1.2)
    if maps:  # the overlays' scale, beside their rows
        from matplotlib.cm import ScalarMappable

        top, bottom = axes[1][-1].get_position().y1, axes[-1][-1].get_position().y0
        bar = fig.add_axes((0.915, bottom, 0.015, top - bottom))
        fig.colorbar(ScalarMappable(cmap="jet"), cax=bar).set_label("low → high (per map)", fontsize=7)
        bar.tick_params(labelsize=6)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def class_model(model, image_shape: tuple[int, int, int], num_classes: int, mean: torch.Tensor,
                std: torch.Tensor, steps: int = 200, lr: float = 0.1, l2: float = 1e-3, jitter: int = 2,
                blur_every: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One input per class that the model scores highly (Simonyan et al., 2014): gradient ascent on
    the class score from a blank image, with L2 decay, random jitter and a light blur every few
    steps as regularisers. `mean` and `std`: the run's input normalisation, broadcastable to
    [N, C, H, W] (per channel or per pixel). Returns (images in [0, 1], softmax probability of their
    class at the start and at the end)."""
    from torchvision.transforms.functional import gaussian_blur

    g = torch.Generator().manual_seed(seed)
    classes = torch.arange(num_classes)
    x = torch.zeros(num_classes, *image_shape, requires_grad=True)
    with torch.no_grad():
        start = F.softmax(model(x), 1)[classes, classes]
    opt = torch.optim.Adam([x], lr=lr)
    for step in range(steps):
        dy, dx = (torch.randint(-jitter, jitter + 1, (2,), generator=g) if jitter else (0, 0))
        shifted = torch.roll(x, shifts=(int(dy), int(dx)), dims=(2, 3))
        score = model(shifted)[classes, classes]
        loss = -score.sum() + l2 * x.square().sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if blur_every and (step + 1) % blur_every == 0 and step < steps - 1:
            with torch.no_grad():
                x.copy_(gaussian_blur(x, kernel_size=3, sigma=0.5))
    with torch.no_grad():
        end = F.softmax(model(x), 1)[classes, classes]
        images = (x * std + mean).clamp(0, 1)
    return images.detach(), start, end
