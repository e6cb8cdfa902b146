"""Data augmentation: `build_augmentation(num_classes, device, seed, **options)` turns the
`augment.*` keys (options.py) into
  - `transform`: float [N, C, H, W] in [0, 1] -> same, per image, batched on the device (batch.py);
  - `batch_transform`: mixup / cutmix on the normalised batch, (x, labels) -> (x, soft targets) (mix.py);
  - `generator`: the one torch.Generator, on the device, that every random draw uses; the engine
    saves its state in checkpoints, so a resumed run sees the same augmented batches.
`folder_transforms` (folder.py) gives the same operations as a torchvision pipeline for image folders.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np
import torch

from dlcourse.data.augment.batch import BatchAugment, padding_pixels
from dlcourse.data.augment.folder import folder_transforms
from dlcourse.data.augment.mix import MixBatch, sample_beta
from dlcourse.data.augment.options import OFF, AugmentOptions, check_options

__all__ = ["OFF", "Augmentation", "AugmentOptions", "BatchAugment", "MixBatch", "augment_seed",
           "build_augmentation", "check_options", "folder_transforms", "padding_pixels", "sample_beta"]


@dataclass
class Augmentation:
    """What the training loop needs: the per-image transform and the batch transform (None when
    off), and the generator they draw from (its state goes into checkpoints)."""

    transform: Optional[Callable[[torch.Tensor], torch.Tensor]]
    batch_transform: Optional[Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]]
    generator: torch.Generator
    options: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        on = [f"{k}={v}" for k, v in self.options.items() if v != OFF[k]]
        return ", ".join(on) if on else "none"


def augment_seed(seed: int) -> int:
    """The generator's seed, derived from the run seed so that it differs from the shuffling's."""
    return int(np.random.SeedSequence([seed, 0xA06]).generate_state(1, np.uint64)[0] >> 1)


def build_augmentation(num_classes: int, device: torch.device, seed: int, **options) -> Augmentation:
    """The augmentation that `options` (the `augment.*` keys) describe, seeded, on `device`."""
    o = check_options(options)
    generator = torch.Generator(device=device).manual_seed(augment_seed(seed))
    per_image = any(o[k] != OFF[k] for k in OFF if k not in ("mixup_alpha", "cutmix_alpha"))
    transform = BatchAugment(o, generator) if per_image else None
    mixing = o["mixup_alpha"] or o["cutmix_alpha"]
    batch_transform = (MixBatch(num_classes, o["mixup_alpha"], o["cutmix_alpha"], generator)
                       if mixing else None)
    return Augmentation(transform, batch_transform, generator, o)
