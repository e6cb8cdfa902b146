"""Data switches for generalisation experiments: balanced subsets, label noise, a fixed pixel
permutation and the choice of input normalisation. Each is drawn from the split seed, so it is
the same for every training seed (Zhang et al., "Understanding deep learning requires rethinking
generalization", 2017, for the random-label and shuffled-pixel sets)."""
from __future__ import annotations

import dataclasses

import torch

from dlcourse.data.readers import InMemoryDataset
from dlcourse.errors import ConfigError

NORMALIZATIONS = ("per_channel", "per_pixel", "none")
_SALT = {"labels": 1_000_003, "pixels": 2_000_003}  # separate streams from the split's own draw


def per_class_indices(labels: torch.Tensor, per_class: int) -> torch.Tensor:
    """The first `per_class` images of every class, in stored order (a balanced subset)."""
    keep = [torch.nonzero(labels == c).flatten()[:per_class] for c in labels.unique()]
    short = [int(c) for c, k in zip(labels.unique(), keep) if len(k) < per_class]
    if short:
        raise ConfigError(f"dataset.per_class={per_class}: classes {short} have fewer training images. "
                          "Use a smaller dataset.per_class.")
    return torch.cat(keep).sort().values


def corrupt_labels(labels: torch.Tensor, indices: torch.Tensor, fraction: float, num_classes: int,
                   seed: int) -> torch.Tensor:
    """A copy of `labels` where round(fraction * len(indices)) of `indices`, drawn with `seed`, get
    another class, uniformly among the others (so exactly that fraction is wrong)."""
    g = torch.Generator().manual_seed(seed + _SALT["labels"])
    chosen = indices[torch.randperm(len(indices), generator=g)[:round(fraction * len(indices))]]
    shift = torch.randint(1, num_classes, (len(chosen),), generator=g)
    noisy = labels.clone()
    noisy[chosen] = (labels[chosen] + shift) % num_classes
    return noisy


def shuffle_pixels(dataset: InMemoryDataset, seed: int) -> InMemoryDataset:
    """Every image (training and test) with the same fixed permutation of its pixel positions."""
    c, h, w = dataset.image_shape
    g = torch.Generator().manual_seed(seed + _SALT["pixels"])
    order = torch.randperm(h * w, generator=g)

    def permute(images: torch.Tensor) -> torch.Tensor:
        return images.flatten(2)[:, :, order].reshape(images.shape)

    val = None if dataset.val_images is None else permute(dataset.val_images)
    return dataclasses.replace(dataset, train_images=permute(dataset.train_images),
                               test_images=permute(dataset.test_images), val_images=val)


def pixel_stats(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std of every pixel [C, H, W] over the images (uint8 scaled to [0, 1])."""
    x = images.to(torch.float64) / (255.0 if images.dtype == torch.uint8 else 1.0)
    return x.mean(0).float(), x.std(0).clamp_min(1e-3).float()  # a constant pixel must not divide by zero
