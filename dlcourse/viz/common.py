"""What the pictures share: the layers of a model, image grids, overlays."""
from __future__ import annotations

from pathlib import Path

from dlcourse.viz import headless  # noqa: E402

headless()
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from dlcourse.errors import ConfigError  # noqa: E402


def layers_of(model: nn.Module, kind: type) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, kind)]


def layer(model: nn.Module, name: str) -> nn.Module:
    modules = dict(model.named_modules())
    if name not in modules:
        convs = [n for n, _ in layers_of(model, nn.Conv2d)]
        raise ConfigError(f"--layer {name}: the model has no such layer. Convolutions: {', '.join(convs) or 'none'}.")
    return modules[name]


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """Each image of x [N, C, H, W] scaled to [0, 1] on its own."""
    flat = x.flatten(1)
    low, high = flat.min(1).values.view(-1, 1, 1, 1), flat.max(1).values.view(-1, 1, 1, 1)
    return (x - low) / (high - low).clamp_min(1e-12)


def signed_unit(x: torch.Tensor) -> torch.Tensor:
    """Each image of x [N, C, H, W] scaled by its largest |value| into [0, 1] with 0 at 0.5: on a
    diverging colour map, white is a zero weight and the two colours are the two signs."""
    peak = x.flatten(1).abs().max(1).values.view(-1, 1, 1, 1).clamp_min(1e-12)
    return 0.5 + 0.5 * x / peak


def show(ax, image: torch.Tensor, cmap: str = "gray") -> None:
    """One image [C, H, W] in [0, 1] on `ax` (grayscale or colour)."""
    picture = image.detach().cpu().permute(1, 2, 0).numpy()
    ax.imshow(picture[..., 0] if picture.shape[-1] == 1 else picture.clip(0, 1),
              cmap=cmap if picture.shape[-1] == 1 else None, vmin=0, vmax=1)
    ax.set_xticks([])
    ax.set_yticks([])


def grid_figure(images: torch.Tensor, titles: list[str], title: str, path: Path, cols: int = 8,
                cmap: str = "gray", size: float = 1.5) -> Path:
    n = len(images)
    cols = min(cols, n)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(size * cols, (size + 0.25) * rows + 0.5), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, img, t in zip(axes.flat, images, titles):
        ax.axis("on")
        show(ax, img, cmap)
        ax.set_title(t, fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
