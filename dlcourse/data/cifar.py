"""CIFAR-10 and CIFAR-100 from their "python version" pickled batches, as uint8 tensors.

torchvision's classes know the archive URLs, checksums and file names, and we use them for
those. We read the batches ourselves (the same way torchvision does) rather than through the
class constructor: it insists on the MD5 of every file, so data made in the real format for
tests, or a re-packed copy, could not be read; overriding its private `_check_integrity`
would tie us to torchvision internals. The download itself is still checked (archive MD5).
"""
from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np
import torch

from dlcourse.data.readers import InMemoryDataset
from dlcourse.data.sources import locate
from dlcourse.errors import DataError

CIFAR_DATASETS = {"cifar10": "CIFAR10", "cifar100": "CIFAR100"}


def _text(value):
    """Keys and class names are bytes when a batch was pickled by Python 3 (or read with encoding='bytes')."""
    return value.decode("latin1") if isinstance(value, bytes) else value


def read_cifar_batch(path: Path) -> dict:
    """One pickled batch (or meta) file, plain or .gz, with str keys."""
    if not path.exists() and path.with_name(path.name + ".gz").exists():
        path = path.with_name(path.name + ".gz")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            # latin1 reads the original Python 2 pickles, numpy arrays included (as torchvision does)
            entry = pickle.load(f, encoding="latin1")
        return {_text(k): v for k, v in entry.items()}
    except (OSError, EOFError, pickle.UnpicklingError, AttributeError, ValueError) as e:
        raise DataError(f"Cannot read the CIFAR file {path}: {e}. The file is damaged or not a CIFAR "
                        "'python version' batch; delete it and get it again (dataset.download=true).") from None


def _images_and_labels(folder: Path, files: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = [], []
    for name in files:
        entry = read_cifar_batch(folder / name)
        try:
            images.append(np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            labels.extend(entry["labels"] if "labels" in entry else entry["fine_labels"])
        except (KeyError, ValueError) as e:
            raise DataError(f"The CIFAR file {folder / name} lacks the expected 'data' [N, 3072] and "
                            f"'labels'/'fine_labels' entries ({e!r}); get it again (dataset.download=true).") from None
    images = torch.from_numpy(np.concatenate(images))
    labels = torch.tensor(labels, dtype=torch.int64)
    if len(images) != len(labels):
        raise DataError(f"The CIFAR files in {folder} hold {len(images)} images but {len(labels)} labels.")
    return images, labels


def read_cifar(name: str, root: str, download: bool) -> InMemoryDataset:
    """CIFAR-10 or CIFAR-100 (fine labels): 50k train / 10k test, uint8 [N, 3, 32, 32]."""
    import torchvision.datasets as tvd
    from torchvision.datasets.utils import download_and_extract_archive

    tv = getattr(tvd, CIFAR_DATASETS[name])
    train_files = [f for f, _ in tv.train_list]
    test_files = [f for f, _ in tv.test_list]
    meta = tv.meta["filename"]

    def fetch(target: Path) -> None:
        # what tv.download() does, without the constructor loading all arrays once more
        download_and_extract_archive(tv.url, str(target), filename=tv.filename, md5=tv.tgz_md5)

    folder = locate(name, root, (*train_files, *test_files, meta), download, fetch,
                    subdirs=(tv.base_folder,),
                    note=f"The archive {tv.filename} ({tv.url}) unpacks to {tv.base_folder}/.")
    train_x, train_y = _images_and_labels(folder, train_files)
    test_x, test_y = _images_and_labels(folder, test_files)
    meta_entry = read_cifar_batch(folder / meta)
    if tv.meta["key"] not in meta_entry:
        raise DataError(f"The CIFAR meta file {folder / meta} has no '{tv.meta['key']}' entry.")
    classes = [_text(c) for c in meta_entry[tv.meta["key"]]]
    top = int(max(train_y.max(), test_y.max()))
    if top >= len(classes):
        raise DataError(f"The CIFAR files in {folder} use label {top}, but {meta} names {len(classes)} classes.")
    return InMemoryDataset(train_x, train_y, test_x, test_y, classes)
