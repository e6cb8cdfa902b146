"""Image-folder datasets (torchvision's ImageFolder layout), read by a DataLoader with workers.

Layout under `root`: `train/<class>/<image>` (required), `val/<class>/...` and `test/<class>/...`
(optional). Without val/, a part of train/ is held out as for the in-memory datasets (a seeded
`val_split` share, or a cross-validation fold: `dlcourse.data.splits`); with val/, that is ignored. Without test/, the validation images also serve as
the test set, and a note says so. Class indices follow train/'s sorted folder names; val/ and
test/ may lack classes but not add new ones.
"""
from __future__ import annotations

import copy
import itertools
import logging
from pathlib import Path
from typing import Callable, Iterator, Optional

import torch
from torch.utils.data import DataLoader, Dataset, Sampler, Subset

from dlcourse.data.loader import Normalize, scale
from dlcourse.data.splits import Split
from dlcourse.errors import ConfigError, DataError

LAYOUT = ("an image-folder dataset is laid out as <root>/train/<class>/<image files>, with optional "
          "val/ and test/ folders of the same classes (torchvision's ImageFolder layout)")


def folder_transform(image_size: int) -> Callable:
    """Resize the short side, crop the centre square, to float [0, 1]: evaluation (and default training)."""
    from torchvision.transforms import v2

    return v2.Compose([v2.Resize(image_size), v2.CenterCrop(image_size), v2.ToImage(),
                       v2.ToDtype(torch.float32, scale=True)])


def _image_folder(path: Path, classes: list[str], transform: Callable, allow_empty: bool):
    """torchvision's ImageFolder over `path`, its labels renumbered by train/'s class list."""
    from torchvision.datasets import ImageFolder

    extra = sorted(d.name for d in path.iterdir() if d.is_dir() and d.name not in classes)
    if extra:
        raise DataError(f"{path} has class folders that train/ lacks: {', '.join(extra)}. Every class "
                        f"of val/ and test/ needs a folder in train/ ({LAYOUT}).")
    try:
        dataset = ImageFolder(str(path), transform=transform, allow_empty=allow_empty)
    except FileNotFoundError as e:
        raise DataError(f"Cannot read the image folder {path}: {e} ({LAYOUT}).") from None
    if len(dataset) == 0:
        raise DataError(f"{path} holds no images ({LAYOUT}).")
    # a plain ImageFolder (not a subclass defined here) so that spawned workers can unpickle it
    index = {c: i for i, c in enumerate(classes)}
    dataset.samples = dataset.imgs = [(f, index[dataset.classes[t]]) for f, t in dataset.samples]
    dataset.targets = [t for _, t in dataset.samples]
    dataset.classes, dataset.class_to_idx = list(classes), index
    return dataset


def _channel_stats(dataset: Dataset, indices: torch.Tensor, num_workers: int,
                   max_images: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std over up to `max_images` images spread evenly over `indices`."""
    pick = indices[torch.linspace(0, len(indices) - 1, min(max_images, len(indices))).round().long()]
    total = total_sq = 0.0
    pixels = 0
    for x, _ in DataLoader(Subset(dataset, pick.tolist()), batch_size=64, num_workers=num_workers):
        x = x.as_subclass(torch.Tensor).to(torch.float64) / (255.0 if x.dtype == torch.uint8 else 1.0)
        dims = (0, *range(2, x.dim()))  # per channel of images, per feature of vectors
        total = total + x.sum(dim=dims)
        total_sq = total_sq + (x * x).sum(dim=dims)
        pixels += x.numel() // x.shape[1]
    mean = total / pixels
    std = (total_sq / pixels - mean * mean).clamp_min(0).sqrt().clamp_min(1e-3)
    return mean.float(), std.float()


class EpochShuffle(Sampler):
    """One permutation per epoch and one seed per image, drawn from `generator`: yields (index, seed).

    Only `generator` decides the order and the random transforms (see `SeededSamples`), so both
    are the same whatever `num_workers`, and a resumed run (whose checkpoint restores the
    generator) replays the epochs an uninterrupted run would have seen."""

    def __init__(self, n: int, generator: torch.Generator, batch_size: int = 1, shard: tuple[int, int] = (0, 1)):
        self.n, self.generator, self.batch_size = n, generator, batch_size
        self.rank, self.world = shard  # data-parallel: this process's share of each global batch

    def __len__(self) -> int:
        return self.n if self.world == 1 else self.n // self.batch_size * self.batch_size // self.world

    def __iter__(self):
        order = torch.randperm(self.n, generator=self.generator)
        seeds = torch.randint(0, 2 ** 62, (self.n,), generator=self.generator)
        if self.world > 1:  # whole global batches only, strided by rank
            batches = self.n // self.batch_size
            mine = torch.arange(batches * self.batch_size).view(batches, self.batch_size)[:, self.rank::self.world]
            order, seeds = order[mine.reshape(-1)], seeds[mine.reshape(-1)]
        return zip(order.tolist(), seeds.tolist())


class SeededSamples(Dataset):
    """Reads item (index, seed) with torch's RNG seeded by `seed` (torchvision's transforms draw
    from it); the caller's RNG state is restored afterwards (it matters with num_workers=0)."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]):
        index, seed = key
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.dataset[index]


class FolderLoader:
    """Batches from a DataLoader over image files, normalised on the device; TensorLoader's interface."""

    def __init__(self, dataset: Dataset, labels: torch.Tensor, batch_size: int, *, device: torch.device,
                 normalize: Normalize, shuffle: bool = False, generator: Optional[torch.Generator] = None,
                 num_workers: int = 0, limit_batches: Optional[int] = None, channels_last: bool = False,
                 shard: tuple[int, int] = (0, 1), transform: Optional[Callable] = None):
        self.labels, self.batch_size, self.device, self.transform = labels, batch_size, device, transform
        self.normalize, self.generator, self.limit_batches = normalize, generator, limit_batches
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        # `generator` draws the order and the per-image seeds of the random transforms (EpochShuffle),
        # so a checkpoint of it replays the next epoch. The DataLoader's own worker seeds come from
        # a private generator, so that neither `generator` nor the global RNG depends on whether a
        # run was resumed. A lone last sample is dropped when training, as in TensorLoader.
        sampler, world = None, shard[1]
        if shuffle:
            sampler, dataset = EpochShuffle(len(dataset), generator, batch_size, shard), SeededSamples(dataset)
            batch_size //= world
        worker_seeds = torch.Generator().manual_seed(generator.initial_seed() if generator else 0)
        self.loader = DataLoader(dataset, batch_size, sampler=sampler, generator=worker_seeds,
                                 num_workers=num_workers, pin_memory=device.type == "cuda",
                                 persistent_workers=num_workers > 0,
                                 drop_last=shuffle and world == 1 and len(dataset) % batch_size == 1)

    @property
    def num_samples(self) -> int:
        return len(self.labels)

    def __len__(self) -> int:
        n = len(self.loader)
        return n if self.limit_batches is None else min(n, self.limit_batches)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for x, y in itertools.islice(self.loader, len(self)):
            x = x.as_subclass(torch.Tensor).to(self.device, non_blocking=True)
            x = x if x.dtype == torch.float32 else scale(x)  # uint8 (your own Dataset's) to [0, 1]
            y = y.to(self.device, non_blocking=True)
            if self.transform is not None:  # batched augmentation on the device (your own Dataset's images)
                x = self.transform(x)
            yield self.normalize(x).contiguous(memory_format=self.memory_format), y


def folder_classes(root: Optional[str]) -> list[str]:
    """The class names of the image folder `root` (sorted names of train/'s sub-folders)."""
    if root is None or root == "???":
        raise DataError(f"dataset=imagefolder needs dataset.root, the folder of your images: {LAYOUT}. "
                        "E.g. python train.py dataset=imagefolder dataset.root=/path/to/images")
    if not (Path(root) / "train").is_dir():
        raise DataError(f"dataset.root={root} has no train/ folder: {LAYOUT}. Point dataset.root at it, "
                        "e.g. python train.py dataset=imagefolder dataset.root=/path/to/images")
    from torchvision.datasets.folder import find_classes

    try:
        return find_classes(str(Path(root) / "train"))[0]
    except FileNotFoundError as e:
        raise DataError(f"{Path(root) / 'train'}: {e} ({LAYOUT}).") from None


def build_folder_data(root: str, image_size: int, batch_size: int, eval_batch_size: int, split: Split,
                      seed: int, device: torch.device, num_workers: int = 2,
                      train_transform: Optional[Callable] = None, limit_train_batches: Optional[int] = None,
                      channels_last: bool = False, stats_images: int = 500, shard: tuple[int, int] = (0, 1),
                      stats: Optional[tuple[list, list]] = None):
    """Loaders over the image folders in `root` (see the module docstring); returns a `Data`.
    A `None` batch size (full batch) is not supported for files: they are not held in memory."""
    if batch_size is None:
        raise ConfigError("trainer.batch_size=null (the whole training set as one batch) is for in-memory "
                          "datasets; image folders are read batch by batch. Give a batch size, e.g. 64.")
    classes = folder_classes(root)
    root_dir = Path(root)
    eval_tf = folder_transform(image_size)
    train_set = _image_folder(root_dir / "train", classes, train_transform or eval_tf, allow_empty=False)
    train_eval = copy.copy(train_set)  # the same files, read without augmentation
    train_eval.transform = eval_tf
    train_labels = torch.tensor(train_set.targets, dtype=torch.int64)

    if (root_dir / "val").is_dir():
        val_set = _image_folder(root_dir / "val", classes, eval_tf, allow_empty=True)
        val_labels = torch.tensor(val_set.targets, dtype=torch.int64)
        train_idx = torch.arange(len(train_set))
    else:
        train_set, train_labels, train_idx, val_set, val_labels = hold_out(train_set, train_eval, train_labels, split)

    if (root_dir / "test").is_dir():
        test_set = _image_folder(root_dir / "test", classes, eval_tf, allow_empty=True)
        test_labels = torch.tensor(test_set.targets, dtype=torch.int64)
    elif val_set is not None:
        logging.getLogger(__name__).warning(
            f"note: {root_dir} has no test/ folder, so the validation images serve as the test set; "
            "test metrics are then optimistic (the best epoch was chosen on them).")
        test_set, test_labels = val_set, val_labels
    else:
        raise ConfigError(f"{root_dir} has neither val/ nor test/ and dataset.val_split=0: nothing to "
                          "evaluate on. Add a val/ or test/ folder, or set dataset.val_split>0.")
    return dataset_loaders((train_set, train_labels), (val_set, val_labels) if val_set is not None else None,
                           (test_set, test_labels), (train_eval, train_idx), (3, image_size, image_size), classes,
                           batch_size=batch_size, eval_batch_size=eval_batch_size, seed=seed, device=device,
                           num_workers=num_workers, limit_train_batches=limit_train_batches,
                           channels_last=channels_last, stats_images=stats_images, shard=shard, stats=stats)


def hold_out(train_set: Dataset, train_eval: Dataset, labels: torch.Tensor, split: Split):
    """(training set, its labels, its indices, validation set or None, its labels): `split` of `train_set`, the
    validation part read from `train_eval` (the same samples without augmentation)."""
    train_idx, val_idx = split.indices(labels)
    if len(train_idx) == 0:
        raise ConfigError(f"dataset.val_split={split.val_split} leaves no training images out of {len(labels)}.")
    val_set = Subset(train_eval, val_idx.tolist()) if len(val_idx) else None
    return Subset(train_set, train_idx.tolist()), labels[train_idx], train_idx, val_set, labels[val_idx]


def dataset_loaders(train: tuple, val: Optional[tuple], test: tuple, stats_from: tuple, image_shape: tuple,
                    classes: list[str], *, batch_size: int, eval_batch_size: int, seed: int, device: torch.device,
                    num_workers: int = 2, limit_train_batches: Optional[int] = None, channels_last: bool = False,
                    stats_images: int = 500, shard: tuple[int, int] = (0, 1),
                    stats: Optional[tuple[list, list]] = None, transform: Optional[Callable] = None):
    """A `Data` of DataLoaders over (dataset, labels) pairs; the normalisation is measured on `stats_from` =
    (dataset, indices) unless `stats` are given; `transform` augments training batches on the device."""
    from dlcourse.data import Data  # the package imports this module

    if stats is None:  # the training images' own statistics, unless given (pretrained weights expect theirs)
        stats = _channel_stats(*stats_from, num_workers, stats_images)
    normalize = Normalize(torch.as_tensor(stats[0]), torch.as_tensor(stats[1]), device, ndim=1 + len(image_shape))
    common = dict(device=device, normalize=normalize, num_workers=num_workers, channels_last=channels_last)
    train_loader = FolderLoader(*train, batch_size, shuffle=True, shard=shard, transform=transform,
                                generator=torch.Generator().manual_seed(seed), limit_batches=limit_train_batches,
                                **common)
    rank, world = shard

    def evaluated(dataset, labels):  # data-parallel: every world-th image, the sums are combined
        if world == 1:
            return dataset, labels
        return Subset(dataset, list(range(rank, len(dataset), world))), labels[rank::world]

    val_loader = FolderLoader(*evaluated(*val), eval_batch_size, **common) if val is not None else None
    test_loader = (val_loader if val is not None and test[0] is val[0] else
                   FolderLoader(*evaluated(*test), eval_batch_size, **common))
    outputs = train[1].shape[1] if train[1].dim() > 1 else 0  # regression: the target dimension
    return Data(train_loader, val_loader, test_loader, tuple(image_shape), list(classes), normalize, outputs)
