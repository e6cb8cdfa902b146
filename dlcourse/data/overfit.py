"""`trainer.overfit_batches=n`: the first n training batches as the whole training and validation
set, the sanity check a model of one's own should pass first (Karpathy's "overfit one batch")."""
from __future__ import annotations

import dataclasses
import logging

import torch

from dlcourse.data.augment import Augmentation
from dlcourse.data.loader import TensorLoader
from dlcourse.errors import ConfigError

log = logging.getLogger(__name__)


def overfit_batches(data, augmentation: Augmentation, n: int, name: str):
    """`data` (dlcourse.data.Data) whose training and validation sets are its first n training
    batches, unshuffled and unaugmented, so a model that can learn drives the loss to ~0; the test
    set stays as it is. Returns (data, augmentation without its transforms)."""
    train = data.train
    if not isinstance(train, TensorLoader):
        raise ConfigError(f"trainer.overfit_batches={n} works on in-memory datasets; dataset={name} is read from files "
                          "batch by batch. Use dataset.subset=<N images> with augment=none for the same check.")
    size = min(n * train.batch_size, train.num_samples)
    images, labels = train.images[:size], train.labels[:size]
    common = dict(device=train.device, normalize=train.normalize, shard=(train.rank, train.world),
                  channels_last=train.memory_format == torch.channels_last)
    fixed = TensorLoader(images, labels, train.batch_size, **common)
    same = TensorLoader(images, labels, data.val.batch_size if data.val else train.batch_size, **common)
    plain = dataclasses.replace(augmentation, transform=None, batch_transform=None, options={})
    log.warning(f"trainer.overfit_batches={n}: training and validating on the same {size} images "
                f"({len(fixed)} batch(es), no shuffling, no augmentation); the loss should go to ~0.")
    return dataclasses.replace(data, train=fixed, val=same), plain
