"""Your own `torch.utils.data.Dataset` (what `dataset._target_` returned): (input, label) pairs read batch by
batch by DataLoader workers (dlcourse.data.folder's loaders), the training batches augmented on the device.

Inputs are tensors [C, H, W] (uint8, or float in [0, 1]) or feature vectors [D]; labels are class indices
(classification; the class names from the dataset's `classes` attribute if it has one) or float tensors
[D] (regression). The labels are taken from its `targets` attribute when it has one (torchvision's
convention), else read once, item by item, before training. A seeded 20 % of the samples (drawn from
dataset.split_seed) is the test set; the validation split is drawn from the rest as usual.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Optional

import torch
from torch.utils.data import DataLoader, Dataset, Subset

from dlcourse.data.arrays import hold_out_test, test_note
from dlcourse.data.folder import dataset_loaders, hold_out
from dlcourse.data.splits import Split
from dlcourse.errors import DataError


@dataclass
class Samples:
    """A Dataset of yours with what the run needs to know of it."""

    dataset: Dataset
    labels: torch.Tensor  # int64 [N] class indices, or float32 [N, D] targets
    classes: list[str]  # empty for regression
    input_shape: tuple[int, ...]
    source: str

    @property
    def task(self) -> str:
        return "regression" if self.labels.is_floating_point() else "classification"

    @property
    def num_classes(self) -> int:
        return len(self.classes) or self.labels.shape[1]


def describe_samples(dataset: Dataset, source: str) -> Samples:
    """Check the first item and the labels of `dataset`; one DataError for each thing that does not fit."""
    try:
        n = len(dataset)
    except TypeError:
        raise DataError(f"{source} returned a {type(dataset).__name__} without a length: give it __len__ "
                        "(an iterable dataset cannot be split into training, validation and test parts).") from None
    if n < 3:
        raise DataError(f"{source} returned a dataset of {n} samples: too few to split into training and test parts.")
    first = dataset[0]
    if not (isinstance(first, (tuple, list)) and len(first) == 2 and isinstance(first[0], torch.Tensor)):
        raise DataError(f"{source}: its items must be (input tensor, label) pairs; item 0 is "
                        f"{type(first).__name__}{f' of {len(first)}' if isinstance(first, (tuple, list)) else ''}.")
    shape = tuple(first[0].shape)
    if len(shape) not in (1, 3):
        raise DataError(f"{source}: its inputs have shape {shape}; give images [C, H, W] or feature vectors [D].")
    targets = getattr(dataset, "targets", None)
    labels = (torch.as_tensor(targets) if targets is not None and len(targets) == n else
              torch.cat([torch.as_tensor(y).reshape(len(x), -1).squeeze(1) for x, y in DataLoader(dataset, batch_size=256)]))
    if labels.is_floating_point():
        return Samples(dataset, labels.float().reshape(n, -1), [], shape, source)
    labels = labels.long()
    names = getattr(dataset, "classes", None)
    classes = [str(c) for c in names] if names is not None else [str(i) for i in range(int(labels.max()) + 1)]
    if labels.min() < 0 or labels.max() >= len(classes):
        raise DataError(f"{source}: its labels run from {int(labels.min())} to {int(labels.max())}, outside the range of "
                        f"its {len(classes)} classes (0..{len(classes) - 1}). Fix the labels or the classes attribute.")
    return Samples(dataset, labels, classes, shape, source)


def build_samples_data(samples: Samples, *, split: Split, split_seed: int, subset: Optional[int] = None,
                       batch_size: Optional[int], **loader_options):
    """A `Data` of DataLoaders: a seeded test part, then the validation split of the rest (`split`)."""
    if batch_size is None:
        raise DataError(f"trainer.batch_size=null (full batch) is for arrays in memory; {samples.source} is a Dataset "
                        "read batch by batch. Give a batch size, e.g. 64.")
    rest, test_idx = hold_out_test(len(samples.labels), split_seed)
    logging.getLogger(__name__).warning(test_note(samples.source, len(test_idx), len(samples.labels), split_seed))
    rest = rest[:subset] if subset is not None else rest
    pool = Subset(samples.dataset, rest.tolist())
    train_set, train_labels, train_idx, val_set, val_labels = hold_out(pool, pool, samples.labels[rest], split)
    test = (Subset(samples.dataset, test_idx.tolist()), samples.labels[test_idx])
    return dataset_loaders((train_set, train_labels), (val_set, val_labels) if val_set is not None else None, test,
                           (pool, train_idx), samples.input_shape, samples.classes, batch_size=batch_size,
                           **loader_options)
