"""Mini-batches straight from in-memory tensors: no Dataset, no workers, no per-sample Python.

An epoch is one `randperm`; a batch is an `index_select` into the uint8 images, moved to the
device, scaled to [0, 1], augmented (training only) and normalised there.
"""
from __future__ import annotations

from typing import Callable, Iterator, Optional

import torch

Transform = Callable[[torch.Tensor], torch.Tensor]


def scale(x: torch.Tensor) -> torch.Tensor:
    """uint8 images to float in [0, 1]; float features (toy and vector data) as they are. Always a new
    tensor: the batch is normalised in place, and a slice of the stored features must stay untouched."""
    return x.to(torch.float32).mul_(1.0 / 255.0) if x.dtype == torch.uint8 else x.to(torch.float32, copy=True)


def channel_stats(images: torch.Tensor, chunk: int = 2048) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std of images [N, C, H, W] (uint8 scaled to [0, 1]), or per feature of
    vectors [N, D]; summed in float64 chunks so no float copy of the whole dataset is ever made."""
    dims = (0, *range(2, images.dim()))
    unit = 255.0 if images.dtype == torch.uint8 else 1.0
    total = torch.zeros(images.shape[1], dtype=torch.float64)
    total_sq = torch.zeros_like(total)
    for start in range(0, len(images), chunk):
        x = images[start:start + chunk].to(torch.float64)
        total += x.sum(dim=dims)
        total_sq += x.square().sum(dim=dims)
    count = images.numel() / images.shape[1]
    mean = total / count
    var = (total_sq / count - mean.square()) * count / max(count - 1, 1)
    std = var.clamp_min(0).sqrt() / unit
    return (mean / unit).float(), std.clamp_min(1e-3).float()  # a constant channel must not divide by zero


class Normalize:
    """(x - mean) / std per channel (or per feature of vectors), in place, on the batch's device."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, device: torch.device, ndim: int = 4):
        shape = (1, -1, *[1] * (ndim - 2)) if mean.dim() == 1 else (1, *mean.shape)  # per channel, or per pixel
        self.mean = mean.reshape(shape).to(device)
        self.std = std.reshape(shape).to(device)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x.sub_(self.mean).div_(self.std)

    def invert(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.std + self.mean


class TensorLoader:
    """Iterates over (images, labels) batches of tensors held in memory, ready for the model."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int, *,
                 device: torch.device, normalize: Normalize, shuffle: bool = False,
                 generator: Optional[torch.Generator] = None, transform: Optional[Transform] = None,
                 limit_batches: Optional[int] = None, channels_last: bool = False, shard: tuple[int, int] = (0, 1)):
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images, self.labels = images, labels
        self.batch_size = batch_size
        self.device = device
        self.normalize = normalize
        self.shuffle = shuffle
        self.generator = generator
        self.transform = transform
        self.limit_batches = limit_batches
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        # data-parallel training: `batch_size` is the global batch, this process takes its
        # `shard` = (rank, world) of each (strided); partial last batches are dropped
        self.rank, self.world = shard

    @property
    def num_samples(self) -> int:
        return len(self.labels)

    def __len__(self) -> int:
        n = self.num_samples // self.batch_size
        rest = self.num_samples % self.batch_size
        if self.world > 1:
            rest = 0
        # a last batch of one sample is dropped when shuffling: batch norm cannot train on it
        if rest > 1 or (rest == 1 and not self.shuffle):
            n += 1
        return n if self.limit_batches is None else min(n, self.limit_batches)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        bs, source = self.batch_size, self.images.device
        order = None
        if self.shuffle:
            order = torch.randperm(self.num_samples, generator=self.generator).to(source)
        for b in range(len(self)):
            if order is None:
                x, y = self.images[b * bs:(b + 1) * bs], self.labels[b * bs:(b + 1) * bs]
            else:
                idx = order[b * bs:(b + 1) * bs][self.rank::self.world]
                x, y = self.images.index_select(0, idx), self.labels.index_select(0, idx)
            x = scale(x.to(self.device, non_blocking=True))
            y = y.to(self.device, non_blocking=True)
            if self.transform is not None:
                x = self.transform(x)
            x = self.normalize(x).contiguous(memory_format=self.memory_format)
            yield x, y
