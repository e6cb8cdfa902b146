"""CIFAR-10/100 from batches written in the real format, and image-folder trees of PNG files."""
from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from dlcourse.data import Split, build_data, build_folder_data, read_dataset
from dlcourse.errors import ConfigError, DataError

from conftest import compose_config


def write_cifar(root: Path, name: str, per_batch: int = 6, num_classes: int = 10, seed: int = 0) -> Path:
    """Pickled dicts with bytes keys, as the original Python-3 readers see them (encoding='bytes')."""
    rng = np.random.default_rng(seed)
    cifar100 = name == "cifar100"
    folder = root / ("cifar-100-python" if cifar100 else "cifar-10-batches-py")
    folder.mkdir(parents=True)
    files = ["train", "test"] if cifar100 else [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for i, f in enumerate(files):
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        data[:, 0] = i  # first red pixel = batch number, to check the order
        labels = [int(v) for v in rng.integers(0, num_classes, per_batch)]
        entry = {b"batch_label": f.encode(), b"data": data, b"filenames": [b"x.png"] * per_batch,
                 (b"fine_labels" if cifar100 else b"labels"): labels}
        if cifar100:
            entry[b"coarse_labels"] = [0] * per_batch
        (folder / f).write_bytes(pickle.dumps(entry, protocol=2))
    names = [f"class_{i}".encode() for i in range(num_classes)]
    meta = {b"fine_label_names": names, b"coarse_label_names": [b"all"]} if cifar100 else \
        {b"label_names": names, b"num_cases_per_batch": per_batch, b"num_vis": 3072}
    (folder / ("meta" if cifar100 else "batches.meta")).write_bytes(pickle.dumps(meta, protocol=2))
    return folder


def test_cifar10_reads_real_format(tmp_path):
    folder = write_cifar(tmp_path, "cifar10")
    ds = read_dataset("cifar10", root=str(tmp_path))
    assert ds.train_images.shape == (30, 3, 32, 32) and ds.train_images.dtype == torch.uint8
    assert ds.test_images.shape == (6, 3, 32, 32) and ds.train_labels.dtype == torch.int64
    assert ds.classes == [f"class_{i}" for i in range(10)]
    # batches in order 1..5, and [N, 3072] -> [N, 3, 32, 32] row-major as in torchvision
    assert ds.train_images[::6, 0, 0, 0].tolist() == [0, 1, 2, 3, 4]
    first = pickle.loads((folder / "data_batch_1").read_bytes())
    assert torch.equal(ds.train_images[0].flatten(), torch.from_numpy(first[b"data"][0]))
    assert ds.train_labels[:6].tolist() == first[b"labels"]


def test_cifar100_gz_and_str_keys_under_name_folder(tmp_path):
    folder = write_cifar(tmp_path / "cifar100", "cifar100", per_batch=8, num_classes=100)
    # a batch as torchvision hands it over (str keys), gzip-compressed
    train = {k.decode(): v for k, v in pickle.loads((folder / "train").read_bytes()).items()}
    with gzip.open(folder / "train.gz", "wb") as f:
        pickle.dump(train, f)
    (folder / "train").unlink()
    ds = read_dataset("cifar100", root=str(tmp_path))
    assert len(ds.classes) == 100 and ds.classes[99] == "class_99"
    assert ds.train_labels.tolist() == train["fine_labels"]
    data = build_data(ds, batch_size=4, eval_batch_size=8, split=Split(0.25), seed=0, device=torch.device("cpu"))
    assert data.train.num_samples == 6 and data.val.num_samples == 2
    x, y = next(iter(data.train))
    assert x.shape == (4, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64


def test_cifar_missing_says_what_where_and_how(tmp_path):
    with pytest.raises(DataError) as e:
        read_dataset("cifar10", root=str(tmp_path / "nowhere"))
    msg = str(e.value)
    for part in ("data_batch_1", "test_batch", "batches.meta", str(tmp_path / "nowhere"),
                 "/usr/share/datasets/cifar10", "cifar-10-batches-py", "dataset.download=true"):
        assert part in msg, part


def test_cifar_damaged_file(tmp_path):
    folder = write_cifar(tmp_path, "cifar10")
    (folder / "test_batch").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match="test_batch"):
        read_dataset("cifar10", root=str(tmp_path))


def test_cifar_configs_compose():
    for name in ("cifar10", "cifar100"):
        cfg = compose_config([f"dataset={name}"])
        assert cfg.dataset.name == name and cfg.dataset.root == "data" and cfg.dataset.download is False


def write_folder(root: Path, splits=("train",), classes=("cat", "dog", "owl"), per_class: int = 6) -> Path:
    """PNG files of 20x24 (W x H); each class has its own mean colour."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in splits:
        for c, name in enumerate(classes):
            (root / split / name).mkdir(parents=True)
            for i in range(per_class):
                pixels = np.clip(rng.normal(60 + 70 * c, 20, (24, 20, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(root / split / name / f"{i}.png")
    return root


def folder_data(root: Path, **kw):
    args = dict(image_size=16, batch_size=4, eval_batch_size=5, split=Split(0.25), seed=0,
                device=torch.device("cpu"), num_workers=0)
    return build_folder_data(str(root), **{**args, **kw})


def test_imagefolder_split_and_no_test_fallback(tmp_path, caplog):
    data = folder_data(write_folder(tmp_path))
    assert "no test/ folder" in caplog.text
    assert data.classes == ["cat", "dog", "owl"] and data.image_shape == (3, 16, 16)
    assert data.train.num_samples == 14 and data.val.num_samples == 4 and data.test is data.val
    assert len(data.train.labels) == 14 and len(data.train) == 4  # 14 = 4+4+4+2
    assert isinstance(data.train.generator, torch.Generator)
    epochs = [[(x, y) for x, y in data.train] for _ in range(2)]  # iterates twice
    assert [len(e) for e in epochs] == [4, 4]
    x = torch.cat([b[0] for b in epochs[0]])
    y = torch.cat([b[1] for b in epochs[0]])
    assert x.shape == (14, 3, 16, 16) and x.dtype == torch.float32 and type(x) is torch.Tensor
    assert y.dtype == torch.int64 and sorted(y.tolist()) == sorted(data.train.labels.tolist())
    assert x.mean().abs() < 0.3 and (x.std() - 1).abs() < 0.3  # normalised with training statistics
    assert x[y == 0].mean() < x[y == 2].mean()  # labels follow the class folders
    assert not torch.equal(epochs[0][0][1], epochs[1][0][1]) or not torch.equal(epochs[0][1][1], epochs[1][1][1])
    xv, yv = next(iter(data.val))
    assert xv.shape == (4, 3, 16, 16) and len(data.val) == 1


def test_imagefolder_same_seed_same_split_and_order(tmp_path):
    root = write_folder(tmp_path)
    a, b = folder_data(root), folder_data(root)
    assert torch.equal(a.val.labels, b.val.labels)
    assert all(torch.equal(ya, yb) for (_, ya), (_, yb) in zip(a.train, b.train))
    state = a.train.generator.get_state()  # what a checkpoint keeps: the next epoch replays
    first = [y for _, y in a.train]
    a.train.generator.set_state(state)
    assert all(torch.equal(p, q) for p, q in zip(first, [y for _, y in a.train]))


def test_imagefolder_val_test_folders_and_limit(tmp_path):
    root = write_folder(tmp_path, splits=("train", "val"), per_class=4)
    write_folder(tmp_path, splits=("test",), classes=("dog", "owl"), per_class=2)  # a class may be absent
    data = folder_data(root, limit_train_batches=2, channels_last=True)
    assert data.train.num_samples == 12 and data.val.num_samples == 12 and data.test.num_samples == 4
    assert data.test.labels.tolist() == [1, 1, 2, 2]  # indices of train/'s classes
    assert len(data.train) == 2 and len(list(data.train)) == 2
    x, _ = next(iter(data.train))
    assert x.is_contiguous(memory_format=torch.channels_last)


def test_imagefolder_custom_train_transform(tmp_path):
    from torchvision.transforms import v2

    tf = v2.Compose([v2.RandomResizedCrop(16), v2.RandomHorizontalFlip(), v2.ToImage(),
                     v2.ToDtype(torch.float32, scale=True)])
    data = folder_data(write_folder(tmp_path, splits=("train", "test")), train_transform=tf,
                       split=Split(0.0), batch_size=18)
    assert data.val is None and data.test.num_samples == 18
    assert len(data.train) == 1 and next(iter(data.train))[0].shape == (18, 3, 16, 16)


def test_imagefolder_errors(tmp_path):
    with pytest.raises(DataError, match="no train/ folder"):
        folder_data(tmp_path)
    root = write_folder(tmp_path / "a", splits=("train", "val"))
    write_folder(root, splits=("test",), classes=("emu",), per_class=1)
    with pytest.raises(DataError, match="emu"):
        folder_data(root)
    with pytest.raises(ConfigError, match="val_split"):
        folder_data(write_folder(tmp_path / "b"), split=Split(0.0))


def test_imagefolder_config_and_missing_root(tmp_path):
    cfg = compose_config(["dataset=imagefolder"])
    assert cfg.dataset.image_size == 64 and cfg.dataset.num_workers == 2
    with pytest.raises(DataError, match="dataset.root=data/images has no train/ folder"):
        folder_data(Path(cfg.dataset.root))
    with pytest.raises(DataError, match="needs dataset.root"):
        build_folder_data(None, 16, 4, 4, 0.1, 0, torch.device("cpu"))


def test_imagefolder_with_workers(tmp_path):
    root = write_folder(tmp_path, splits=("train", "val", "test"))
    data = folder_data(root, num_workers=2, limit_train_batches=3)
    plain = folder_data(root, num_workers=0, limit_train_batches=3)
    next(iter(data.train)), next(iter(plain.train))  # an abandoned epoch (prefetching workers)
    for _ in range(2):  # persistent workers, an epoch cut short by the limit, then a new one
        labels = [y for _, y in data.train]
        assert [len(y) for y in labels] == [4, 4, 4] and sum(len(y) for _, y in data.val) == 18
        # the order depends on the seed only, not on the workers
        assert all(torch.equal(a, b) for a, b in zip(labels, [y for _, y in plain.train]))
