"""Readers: each returns a whole dataset in memory as uint8 NCHW image tensors and int64 labels."""
from __future__ import annotations

import functools
import gzip
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from dlcourse.data.sources import locate
from dlcourse.errors import DataError


@dataclass
class InMemoryDataset:
    """Train and test splits of a dataset, held as tensors."""

    train_images: torch.Tensor  # uint8 [N, C, H, W] images, or float32 [N, D] vectors (toy data)
    train_labels: torch.Tensor  # int64 [N] classes, or float32 [N, D] regression targets
    test_images: torch.Tensor
    test_labels: torch.Tensor
    classes: list[str]  # empty for regression
    task: str = "classification"  # the dataset's own task (dlcourse/tasks.py)
    val_images: Optional[torch.Tensor] = None  # a validation split of its own (your x_val): no hold-out is drawn
    val_labels: Optional[torch.Tensor] = None

    @property
    def image_shape(self) -> tuple[int, ...]:
        return tuple(self.train_images.shape[1:])


def read_digits(image_size: int = 28) -> InMemoryDataset:
    """scikit-learn's bundled 8x8 handwritten digits (1,797 images), resized once to `image_size`.

    The held-out test part (20 %) is fixed (stratified, independent of the run's seed) so that test
    accuracies of different runs are comparable. The file and the split are read directly
    (digits_split.txt holds scikit-learn's stratified split), so the default run does not import
    scikit-learn: that import alone costs 1.3 s of a 1-epoch run.
    """
    import importlib.util

    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("dataset=digits needs scikit-learn (its bundled digits): pip install scikit-learn.")
    table = np.loadtxt(Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "digits.csv.gz",
                       delimiter=",", dtype=np.float32)
    images = torch.from_numpy(table[:, :-1]).view(-1, 1, 8, 8) / 16.0  # [N, 1, 8, 8] in [0, 1]
    if image_size != 8:
        images = F.interpolate(images, size=(image_size, image_size), mode="bilinear", align_corners=False)
    images = (images.clamp(0, 1) * 255).round().to(torch.uint8)
    labels = torch.from_numpy(table[:, -1].astype(np.int64))
    train_idx, test_idx = digits_split()
    return InMemoryDataset(images[train_idx], labels[train_idx], images[test_idx], labels[test_idx],
                           [str(i) for i in range(10)])


def digits_split() -> tuple[torch.Tensor, torch.Tensor]:
    """(train, test) indices of the digits: train_test_split(test_size=0.2, stratify, random_state=0)."""
    lines = (Path(__file__).with_name("digits_split.txt")).read_text().splitlines()
    parts = {line.split(" ", 1)[0]: line.split()[1:] for line in lines if not line.startswith("#")}
    return (torch.tensor([int(i) for i in parts["train"]]), torch.tensor([int(i) for i in parts["test"]]))


def read_synthetic(image_shape, num_classes: int, size: int, seed: int = 0) -> InMemoryDataset:
    """Random images and labels: for smoke tests and throughput, never for real results."""
    g = torch.Generator().manual_seed(seed)
    test_size = max(1, size // 5)
    images = torch.randint(0, 256, (size + test_size, *image_shape), generator=g, dtype=torch.uint8)
    labels = torch.randint(0, num_classes, (size + test_size,), generator=g)
    return InMemoryDataset(images[:size], labels[:size], images[size:], labels[size:],
                           [str(i) for i in range(num_classes)])


# torchvision's dataset classes, which know the download mirrors and the class names.
_IDX_DATASETS = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST", "kmnist": "KMNIST"}
_IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
              "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def read_idx_file(path: Path) -> torch.Tensor:
    """One IDX file (the MNIST format), plain or gzip-compressed, as a uint8 tensor.

    torchvision's reader opens uncompressed files only, while Debian's dataset packages and the
    original sites ship `.gz`; this reads both without writing anything. Within one process a file
    is decompressed once (0.5 s for Fashion-MNIST's training images, each run of a notebook paid it)
    and read again only when it changes.
    """
    try:
        stat = Path(path).stat()
    except OSError as e:
        raise _unreadable(path, e) from None
    return _read_idx_file(str(Path(path).resolve()), stat.st_mtime_ns, stat.st_size).clone()


def _unreadable(path: Path, e: Exception) -> DataError:
    return DataError(f"Cannot read the IDX file {path}: {e}. The file is damaged or not in the "
                     "MNIST format; delete it and get it again (dataset.download=true).")


@functools.lru_cache(maxsize=8)
def _read_idx_file(path_name: str, mtime_ns: int, size: int) -> torch.Tensor:
    path = Path(path_name)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
        magic = int.from_bytes(data[0:4], "big")
        ndim, dtype = magic & 0xFF, magic >> 8
        if dtype != 0x08 or not 1 <= ndim <= 3:
            raise ValueError(f"magic number {magic:#x} is not that of an unsigned-byte IDX file")
        shape = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
        array = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
        return torch.from_numpy(array.reshape(shape).copy())
    except (OSError, ValueError, EOFError) as e:
        raise _unreadable(path, e) from None


def read_idx_dataset(name: str, root: str, download: bool) -> InMemoryDataset:
    """MNIST-format datasets (MNIST, Fashion-MNIST, KMNIST) from their four IDX files."""
    import torchvision.datasets as tvd

    tv_class = getattr(tvd, _IDX_DATASETS[name])

    def fetch(target: Path) -> None:
        tv_class(str(target), train=True, download=True)
        tv_class(str(target), train=False, download=True)

    folder = locate(name, root, _IDX_FILES, download, fetch, subdirs=(f"{tv_class.__name__}/raw", "raw"))
    tensors = {}
    for stem in _IDX_FILES:
        path = folder / stem if (folder / stem).exists() else folder / f"{stem}.gz"
        tensors[stem] = read_idx_file(path)
    train_x, train_y, test_x, test_y = (tensors[s] for s in _IDX_FILES)
    return InMemoryDataset(train_x.unsqueeze(1), train_y.long(), test_x.unsqueeze(1), test_y.long(),
                           list(tv_class.classes))
