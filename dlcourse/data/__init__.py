"""Datasets as batch loaders on the training device.

`build_data` reads a dataset once (see `readers`), splits off a validation part, computes the
normalisation on the training split and returns loaders that yield normalised device tensors.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from dlcourse.data.arrays import to_dataset
from dlcourse.data.cifar import CIFAR_DATASETS, read_cifar
from dlcourse.data.folder import FolderLoader, build_folder_data, folder_classes
from dlcourse.data.loader import Normalize, TensorLoader, Transform, channel_stats
from dlcourse.data.own import OWN_DATASETS, Source, absolute, load_source
from dlcourse.data.readers import InMemoryDataset, read_digits, read_idx_dataset, read_synthetic
from dlcourse.data.samples import Samples, build_samples_data
from dlcourse.data.splits import Split
from dlcourse.data.switches import corrupt_labels, per_class_indices, pixel_stats
from dlcourse.data.toy import TOY_DATASETS, describe_toy, read_toy
from dlcourse.errors import ConfigError

__all__ = ["OWN_DATASETS", "TOY_DATASETS", "Source", "absolute", "build_samples_data", "load_source", "keep_classes", "Data", "DatasetInfo", "FolderLoader", "InMemoryDataset", "Normalize", "TensorLoader", "build_data",
           "build_folder_data", "describe_dataset", "read_dataset", "Split"]

IN_MEMORY_DATASETS = ("digits", "mnist", "fashion_mnist", "kmnist", "cifar10", "cifar100", "synthetic",
                      *TOY_DATASETS)
FILE_DATASETS = ("imagefolder",)  # read by build_folder_data, batch by batch
FOLDER_IMAGE_SIZE = 64  # side of image-folder inputs when dataset.image_size is null


@dataclass(frozen=True)
class DatasetInfo:
    """What a model and the checks need to know of a dataset before any image is read."""

    image_shape: tuple[int, ...]  # [C, H, W] of images, [D] of vectors
    num_classes: int  # classes; the target dimension for regression
    task: str = "classification"  # the dataset's own task (dlcourse/tasks.py)
    has_val: bool = False  # it brings its own validation split (your x_val)
    streamed: bool = False  # read batch by batch by DataLoader workers (your own torch Dataset)


_STATIC = {"mnist": ((1, 28, 28), 10), "fashion_mnist": ((1, 28, 28), 10), "kmnist": ((1, 28, 28), 10),
           "cifar10": ((3, 32, 32), 10), "cifar100": ((3, 32, 32), 100)}


def describe_dataset(name: str, root: str = "data", image_shape=None, num_classes=None,
                     image_size=None, arms: int = 2, source: Optional[Source] = None) -> DatasetInfo:
    """Input shape and class count of dataset `name` without reading it (an image folder's class
    folders are listed; your own data, `source`, is read and kept), so that every config error is
    raised before data is loaded."""
    if source is not None:
        own = load_source(source)
        return DatasetInfo(own.input_shape, own.num_classes, own.task, has_val="x_val" in getattr(own, "x", {}),
                           streamed=isinstance(own, Samples))
    if name in TOY_DATASETS:
        return DatasetInfo(*describe_toy(name, arms=arms))
    if name in _STATIC:
        shape, classes = _STATIC[name]
        return DatasetInfo(shape, classes)
    if name == "digits":
        side = image_size or 28
        return DatasetInfo((1, side, side), 10)
    if name == "synthetic":
        return DatasetInfo(tuple(int(s) for s in image_shape), int(num_classes))
    if name in FILE_DATASETS:
        side = image_size or FOLDER_IMAGE_SIZE
        return DatasetInfo((3, side, side), len(folder_classes(root)))
    known = ", ".join((*IN_MEMORY_DATASETS, *FILE_DATASETS, *OWN_DATASETS))
    raise ConfigError(f"dataset.name={name!r} is not known: choose one of {known}.")


@dataclass
class Data:
    train: TensorLoader
    val: Optional[TensorLoader]
    test: TensorLoader
    image_shape: tuple[int, ...]
    classes: list[str]
    normalize: Normalize
    num_outputs: int = 0  # regression: the target dimension

    @property
    def num_classes(self) -> int:
        """Classes; for regression (no classes) the target dimension."""
        return len(self.classes) or self.num_outputs


def read_dataset(name: str, root: str = "data", download: bool = False, seed: int = 0,
                 image_shape=None, num_classes=None, size=None, image_size=None,
                 toy: Optional[dict] = None, source: Optional[Source] = None) -> InMemoryDataset:
    """The whole dataset `name` in memory (`toy`: the options of dlcourse.data.toy.read_toy; `source`: your
    own arrays)."""
    if source is not None:
        return to_dataset(load_source(source), source.seed)
    if name in TOY_DATASETS:
        return read_toy(name, **(toy or {}))
    if name == "digits":
        return read_digits(image_size=image_size or 28)
    if name == "synthetic":
        return read_synthetic(tuple(image_shape), num_classes, size, seed=seed)
    if name in ("mnist", "fashion_mnist", "kmnist"):
        return read_idx_dataset(name, root, download)
    if name in CIFAR_DATASETS:
        return read_cifar(name, root, download)
    if name in FILE_DATASETS:
        raise ConfigError(f"dataset.name={name!r} is read from files by build_folder_data, not into memory.")
    known = ", ".join((*IN_MEMORY_DATASETS, *FILE_DATASETS, *OWN_DATASETS))
    raise ConfigError(f"dataset.name={name!r} is not known: choose one of {known}.")


def keep_classes(dataset: InMemoryDataset, classes: list[int]) -> InMemoryDataset:
    """Only the images of `classes`, relabelled 0..k-1 in that order (e.g. a transfer target made of
    classes the source model never saw)."""
    lookup = torch.full((len(dataset.classes),), -1, dtype=torch.long)
    lookup[torch.tensor(classes)] = torch.arange(len(classes))

    def pick(images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        new = lookup[labels]
        keep = new >= 0
        return images[keep], new[keep]

    val = (None, None) if dataset.val_images is None else pick(dataset.val_images, dataset.val_labels)
    return InMemoryDataset(*pick(dataset.train_images, dataset.train_labels), *pick(dataset.test_images, dataset.test_labels),
                           [dataset.classes[c] for c in classes], dataset.task, *val)


def data_device(dataset: InMemoryDataset, device: torch.device, budget_fraction: float = 0.5) -> torch.device:
    """Keep the dataset on a CUDA device when it takes less than `budget_fraction` of free memory."""
    if device.type != "cuda":
        return torch.device("cpu") if device.type != "mps" else device
    free, _ = torch.cuda.mem_get_info(device)
    nbytes = sum(t.numel() * t.element_size() for t in (dataset.train_images, dataset.test_images, dataset.val_images)
                 if t is not None)
    return device if nbytes < budget_fraction * free else torch.device("cpu")


def build_data(dataset: InMemoryDataset, *, batch_size: Optional[int], eval_batch_size: int, split: Split,
               seed: int, device: torch.device, subset: Optional[int] = None,
               train_transform: Optional[Transform] = None, limit_train_batches: Optional[int] = None,
               channels_last: bool = False, shard: tuple[int, int] = (0, 1),
               stats: Optional[tuple[list, list]] = None, normalize: str = "per_channel",
               per_class: Optional[int] = None, label_noise: float = 0.0) -> Data:
    """Loaders over `dataset`: shuffled (and augmented) training split, validation and test splits.
    `split` divides the training images into training and validation; `seed` draws the shuffling.
    With a data-parallel `shard` = (rank, world), this process trains on its share of each global
    batch and evaluates every world-th validation and test image. `batch_size=None` is the whole
    training split (full-batch gradient descent). `stats` = (mean, std) per channel replaces the
    training split's own statistics (the normalisation pretrained weights expect). `normalize`:
    per_channel statistics, per_pixel ones, or none (inputs in [0, 1]); `per_class` keeps the first N
    images of each class; `label_noise` gives that fraction of the training labels another class."""
    images, labels = dataset.train_images, dataset.train_labels
    if per_class is not None:
        keep = per_class_indices(labels, per_class)
        images, labels = images[keep], labels[keep]
    if subset is not None:
        images, labels = images[:subset], labels[:subset]
    if dataset.val_images is not None:  # a validation split of its own: the whole pool trains
        train_idx, val_x, val_y = torch.arange(len(labels)), dataset.val_images, dataset.val_labels
    else:
        train_idx, val_idx = split.indices(labels)
        val_x, val_y = images[val_idx], labels[val_idx]
    if len(train_idx) == 0:
        raise ConfigError(f"dataset.val_split={split.val_split} leaves no training images out of {len(labels)}.")
    if label_noise:
        labels = corrupt_labels(labels, train_idx, label_noise, len(dataset.classes), split.seed)
    batch_size = batch_size or len(train_idx)
    if stats is not None:
        mean, std = torch.tensor(stats[0]), torch.tensor(stats[1])
    elif normalize == "per_pixel":
        mean, std = pixel_stats(images[train_idx])
    elif normalize == "none":
        mean, std = torch.zeros(images.shape[1]), torch.ones(images.shape[1])
    else:
        mean, std = channel_stats(images[train_idx])
    normalize = Normalize(mean, std, device, ndim=images.dim())
    store = data_device(dataset, device)

    rank, world = shard

    def tensors(x: torch.Tensor, y: torch.Tensor, evaluated: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        if evaluated and world > 1:
            x, y = x[rank::world], y[rank::world]
        return x.to(store), y.to(store)

    common = dict(device=device, normalize=normalize, channels_last=channels_last)
    train = TensorLoader(*tensors(images[train_idx], labels[train_idx]), batch_size, shuffle=True,
                         generator=torch.Generator().manual_seed(seed), transform=train_transform,
                         limit_batches=limit_train_batches, shard=shard, **common)
    val = TensorLoader(*tensors(val_x, val_y, True), eval_batch_size, **common) if len(val_y) else None
    test = TensorLoader(*tensors(dataset.test_images, dataset.test_labels, True), eval_batch_size, **common)
    outputs = labels.shape[1] if labels.dim() > 1 else 0
    return Data(train, val, test, dataset.image_shape, dataset.classes, normalize, outputs)
