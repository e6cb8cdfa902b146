"""Readers, data location, splits and the in-memory batch loader."""
from __future__ import annotations

import gzip
import struct
import time

import numpy as np
import pytest
import torch

from conftest import needs_fashion_mnist
from dlcourse.data import Split, build_data, read_dataset
from dlcourse.data.loader import Normalize, TensorLoader
from dlcourse.data.readers import read_idx_file
from dlcourse.errors import DataError

CPU = torch.device("cpu")


def write_idx(path, array: np.ndarray, compress: bool = True) -> None:
    """An IDX file as the MNIST site ships it (big-endian header, unsigned bytes)."""
    header = struct.pack(">I", 0x0800 | array.ndim) + b"".join(struct.pack(">I", s) for s in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if compress:
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


def write_mnist(folder, n_train=120, n_test=40, compress=True, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    sfx = ".gz" if compress else ""
    arrays = {"train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28)),
              "train-labels-idx1-ubyte": rng.integers(0, 10, n_train),
              "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28)),
              "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test)}
    for name, a in arrays.items():
        write_idx(folder / f"{name}{sfx}", a, compress)
    return arrays


@pytest.mark.parametrize("compress", [True, False])
def test_mnist_reader_reads_idx_files_the_test_writes(tmp_path, compress):
    arrays = write_mnist(tmp_path / "mnist", compress=compress)
    ds = read_dataset("mnist", root=str(tmp_path))
    assert ds.train_images.shape == (120, 1, 28, 28) and ds.train_images.dtype == torch.uint8
    assert ds.test_images.shape == (40, 1, 28, 28)
    assert np.array_equal(ds.train_images[:, 0].numpy(), arrays["train-images-idx3-ubyte"])
    assert np.array_equal(ds.test_labels.numpy(), arrays["t10k-labels-idx1-ubyte"])
    assert ds.classes[0].startswith("0")


def test_torchvision_download_layout_is_found(tmp_path):
    write_mnist(tmp_path / "FashionMNIST" / "raw", compress=False)
    ds = read_dataset("fashion_mnist", root=str(tmp_path))
    assert len(ds.train_labels) == 120 and ds.classes[0] == "T-shirt/top"


def test_missing_data_message_says_what_where_and_how(tmp_path):
    with pytest.raises(DataError) as e:
        read_dataset("mnist", root=str(tmp_path / "empty"), download=False)
    msg = str(e.value)
    assert "train-images-idx3-ubyte" in msg and str(tmp_path / "empty") in msg
    assert "dataset.download=true" in msg


def test_damaged_idx_file_is_named(tmp_path):
    bad = tmp_path / "x-idx3-ubyte.gz"
    bad.write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match="x-idx3-ubyte.gz"):
        read_idx_file(bad)


def test_an_idx_file_is_decompressed_once_per_process_and_again_when_it_changes(tmp_path, monkeypatch):
    from dlcourse.data import readers

    opened = []
    real_open = gzip.open
    monkeypatch.setattr(readers.gzip, "open", lambda *a, **k: (a[1:] == ("rb",) and opened.append(a[0])) or real_open(*a, **k))
    arrays = write_mnist(tmp_path / "mnist", seed=1)
    path = tmp_path / "mnist" / "train-images-idx3-ubyte.gz"
    first = read_idx_file(path)
    first.zero_()  # the caller's copy: the next read is unaffected
    second = read_idx_file(path)
    assert np.array_equal(second.numpy(), arrays["train-images-idx3-ubyte"]) and len(opened) == 1
    time.sleep(0.01)
    changed = write_mnist(tmp_path / "mnist", n_train=7, seed=2)["train-images-idx3-ubyte"]
    assert np.array_equal(read_idx_file(path).numpy(), changed) and len(opened) == 2


def test_digits_are_28x28_uint8_with_fixed_test_split():
    a, b = read_dataset("digits"), read_dataset("digits")
    assert a.train_images.shape[1:] == (1, 28, 28) and a.train_images.dtype == torch.uint8
    assert len(a.train_labels) + len(a.test_labels) == 1797
    assert torch.equal(a.test_labels, b.test_labels)


def test_digits_read_without_scikit_learn_equal_scikit_learns():
    """The file and the stored split are scikit-learn's load_digits and stratified split, exactly."""
    import numpy as np
    import torch.nn.functional as F
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    train_idx, test_idx = train_test_split(np.arange(1797), test_size=0.2, stratify=digits.target, random_state=0)
    ours = read_dataset("digits", image_size=8)
    images = (torch.from_numpy(digits.images).float().unsqueeze(1) / 16 * 255).round().to(torch.uint8)
    assert torch.equal(ours.test_images, images[test_idx]) and torch.equal(ours.train_images, images[train_idx])
    assert torch.equal(ours.test_labels, torch.from_numpy(digits.target[test_idx]).long())
    resized = F.interpolate(torch.from_numpy(digits.images).float().unsqueeze(1) / 16, size=(28, 28),
                            mode="bilinear", align_corners=False)
    assert torch.equal(read_dataset("digits").train_images, (resized.clamp(0, 1) * 255).round().to(torch.uint8)[train_idx])


def test_split_is_disjoint_and_seeded():
    labels = torch.zeros(100, dtype=torch.long)
    tr, va = Split(0.2, seed=1).indices(labels)
    assert len(va) == 20 and len(set(tr.tolist()) | set(va.tolist())) == 100
    assert torch.equal(va, Split(0.2, seed=1).indices(labels)[1])
    assert not torch.equal(va, Split(0.2, seed=2).indices(labels)[1])


def test_loader_normalises_on_the_fly_and_covers_each_sample_once():
    images = torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1).expand(10, 1, 2, 2).contiguous()
    labels = torch.arange(10)
    norm = Normalize(torch.tensor([0.0]), torch.tensor([1.0]), CPU)
    loader = TensorLoader(images, labels, 4, device=CPU, normalize=norm, shuffle=True,
                          generator=torch.Generator().manual_seed(0))
    batches = list(loader)
    assert len(batches) == len(loader) == 3
    seen = torch.cat([y for _, y in batches])
    assert sorted(seen.tolist()) == list(range(10))
    for x, y in batches:
        assert x.dtype == torch.float32
        assert torch.allclose(x[:, 0, 0, 0], y.float() / 255)
    second = torch.cat([y for _, y in loader])
    assert not torch.equal(seen, second)  # a new permutation each epoch


def test_loader_drops_a_last_single_sample_batch_when_training():
    images, labels = torch.zeros(9, 1, 2, 2, dtype=torch.uint8), torch.zeros(9, dtype=torch.long)
    norm = Normalize(torch.tensor([0.0]), torch.tensor([1.0]), CPU)
    assert len(TensorLoader(images, labels, 4, device=CPU, normalize=norm, shuffle=True)) == 2
    assert len(TensorLoader(images, labels, 4, device=CPU, normalize=norm)) == 3
    assert len(TensorLoader(images, labels, 4, device=CPU, normalize=norm, limit_batches=1)) == 1


def test_build_data_normalises_with_training_statistics():
    data = build_data(read_dataset("digits"), batch_size=256, eval_batch_size=512, split=Split(0.1),
                      seed=0, device=CPU)
    x = torch.cat([x for x, _ in data.train])
    assert abs(x.mean().item()) < 0.05 and abs(x.std().item() - 1) < 0.05
    assert data.val.num_samples + data.train.num_samples == len(read_dataset("digits").train_labels)
    assert data.num_classes == 10 and data.image_shape == (1, 28, 28)


@needs_fashion_mnist
def test_real_fashion_mnist_from_debian_package(tmp_path):
    ds = read_dataset("fashion_mnist", root=str(tmp_path))  # empty root: falls back to Debian's copy
    assert ds.train_images.shape == (60000, 1, 28, 28) and ds.test_images.shape == (10000, 1, 28, 28)
    assert torch.bincount(ds.test_labels).tolist() == [1000] * 10
    assert torch.bincount(ds.train_labels).tolist() == [6000] * 10
    assert ds.classes[0] == "T-shirt/top" and ds.classes[9] == "Ankle boot"
    assert ds.train_images.dtype == torch.uint8 and ds.train_images.max() == 255 and ds.train_images.min() == 0
