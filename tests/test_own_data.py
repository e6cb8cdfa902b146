"""Your own data: arrays in .npz/.pt files, CSV tables and dataset factories, written here in the real formats."""
from __future__ import annotations

import gzip
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from conftest import FASHION_MNIST, ROOT, needs_fashion_mnist, recompute_test_metrics, train
from dlcourse.errors import UserError

QUICK = ["trainer.max_epochs=1", "figures.enabled=false", "trainer.batch_size=32"]


def stored_data(run_dir: Path):
    """The run's data rebuilt from the config its checkpoint stores."""
    from dlcourse.builders import dataset_info, make_data

    cfg = OmegaConf.create(torch.load(run_dir / "checkpoints" / "best.pt", weights_only=True)["config"])
    return make_data(cfg, dataset_info(cfg), torch.device("cpu"))[0]


def checkpoint(run_dir: Path) -> dict:
    return torch.load(run_dir / "checkpoints" / "best.pt", weights_only=True)


def write_idx(path: Path, array: np.ndarray) -> None:
    header = (0x0800 + array.ndim).to_bytes(4, "big") + b"".join(int(s).to_bytes(4, "big") for s in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture(scope="module")
def fashion(tmp_path_factory):
    """The first 2,000 training and 500 test images of Fashion-MNIST, as IDX files and as arrays."""
    from dlcourse.data import read_dataset

    full = read_dataset("fashion_mnist", root=str(FASHION_MNIST))
    parts = {"x": full.train_images[:2000, 0].numpy(), "y": full.train_labels[:2000].numpy(),
             "x_test": full.test_images[:500, 0].numpy(), "y_test": full.test_labels[:500].numpy()}
    folder = tmp_path_factory.mktemp("fashion")
    for stem, key in (("train-images-idx3-ubyte", "x"), ("train-labels-idx1-ubyte", "y"),
                      ("t10k-images-idx3-ubyte", "x_test"), ("t10k-labels-idx1-ubyte", "y_test")):
        write_idx(folder / f"{stem}.gz", parts[key])
    return folder, parts, full.classes


@needs_fashion_mnist
def test_fashion_mnist_as_npz_and_pt_reaches_the_builtin_readers_metrics(fashion, tmp_path):
    folder, parts, classes = fashion
    np.savez(tmp_path / "fm.npz", **parts, classes=np.array(classes))  # (N, H, W) uint8
    torch.save({"x": torch.from_numpy(parts["x"]).unsqueeze(1), "y": torch.from_numpy(parts["y"]),  # (N, C, H, W)
                "x_test": torch.from_numpy(parts["x_test"]).unsqueeze(1), "y_test": torch.from_numpy(parts["y_test"]),
                "classes": list(classes)}, tmp_path / "fm.pt")
    common = [*QUICK, "augment=standard", "trainer.limit_train_batches=8"]
    builtin = train(tmp_path / "idx", ["dataset=fashion_mnist", f"dataset.root={folder}", *common])
    for name in ("fm.npz", "fm.pt"):
        own = train(tmp_path / f"run_{name}", ["dataset=tensors", f"dataset.path={tmp_path / name}", *common])
        assert (own["test/acc"], own["test/loss"]) == (builtin["test/acc"], builtin["test/loss"])
        assert checkpoint(tmp_path / f"run_{name}")["classes"] == list(classes)
    test = stored_data(tmp_path / "run_fm.npz").test
    assert torch.equal(test.images, torch.from_numpy(parts["x_test"]).unsqueeze(1))
    assert torch.equal(test.labels, stored_data(tmp_path / "idx").test.labels)


def test_x_val_is_the_validation_split_and_float_channels_last_images_are_read(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.random((120, 10, 10, 3), dtype=np.float32)  # (N, H, W, C) in [0, 1]
    y = (x[..., 0].mean((1, 2)) > 0.5).astype(np.int64)
    np.savez(tmp_path / "rgb.npz", x=x, y=y, x_val=x[:30], y_val=y[:30])
    metrics = train(tmp_path / "run", ["dataset=tensors", f"dataset.path={tmp_path / 'rgb.npz'}", *QUICK])
    data = stored_data(tmp_path / "run")
    assert data.image_shape == (3, 10, 10) and data.val.num_samples == 30
    assert data.train.num_samples + data.test.num_samples == 120 and data.test.num_samples == 24  # 20 % held out
    assert torch.allclose(data.val.images, torch.from_numpy(x[:30]).permute(0, 3, 1, 2))
    assert metrics["val/acc_best"] >= 0


def test_vectors_with_float_targets_are_a_regression(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 3))
    np.savez(tmp_path / "reg.npz", x=x, y=x @ np.array([1.0, -2.0, 0.5]))
    metrics = train(tmp_path / "run", ["dataset=tensors", f"dataset.path={tmp_path / 'reg.npz'}", *QUICK])
    assert {"test/mse", "test/mae", "test/r2"} <= set(metrics) and checkpoint(tmp_path / "run")["task"] == "regression"


def test_csv_with_a_text_target_names_the_classes_and_one_hot_encodes_text_features(tmp_path):
    import pandas as pd

    rng = np.random.default_rng(2)
    size = rng.normal(size=150)
    table = pd.DataFrame({"size": size, "colour": rng.choice(["red", "blue"], 150),
                          "kind": np.where(size > 0, "large", "small")})
    table.to_csv(tmp_path / "t.csv", index=False)
    metrics = train(tmp_path / "run", ["dataset=csv", f"dataset.path={tmp_path / 't.csv'}", "dataset.target=kind", *QUICK])
    ckpt = checkpoint(tmp_path / "run")
    assert ckpt["classes"] == ["large", "small"] and ckpt["image_shape"] == [3]  # size + colour one-hot
    assert recompute_test_metrics(tmp_path / "run")["acc"] == pytest.approx(metrics["test/acc"], abs=1e-12)


def test_csv_regression_with_a_test_table(tmp_path):
    import pandas as pd

    rng = np.random.default_rng(3)
    for name, n in (("train.csv", 120), ("test.csv", 40)):
        a, b = rng.normal(size=n), rng.integers(0, 100, n)
        pd.DataFrame({"a": a, "b": b, "price": 3 * a + 0.1 * b}).to_csv(tmp_path / name, index=False)
    metrics = train(tmp_path / "run", ["dataset=csv", f"dataset.path={tmp_path / 'train.csv'}", "dataset.target=price",
                                       f"dataset.test_path={tmp_path / 'test.csv'}", *QUICK])
    assert "test/mse" in metrics and stored_data(tmp_path / "run").test.num_samples == 40


def test_a_fold_of_cross_validation_on_npz(tmp_path):
    rng = np.random.default_rng(4)
    np.savez(tmp_path / "v.npz", x=rng.normal(size=(100, 4)), y=rng.integers(0, 2, 100), x_test=rng.normal(size=(20, 4)),
             y_test=rng.integers(0, 2, 20))
    train(tmp_path / "run", ["dataset=tensors", f"dataset.path={tmp_path / 'v.npz'}", "cv.folds=2", "cv.fold=0", "task=binary",
                               *QUICK])
    assert checkpoint(tmp_path / "run")["task"] == "binary"  # two integer classes, binary when asked
    data = stored_data(tmp_path / "run")
    assert (data.train.num_samples, data.val.num_samples, data.test.num_samples) == (50, 50, 20)


FACTORIES = """
import numpy as np
import torch
from torch.utils.data import Dataset

def blobs(n=100, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    return {"x": rng.normal(size=(n, 2)) + 3 * y[:, None], "y": y, "classes": ["a", "b", "c"]}

class Squares(Dataset):
    classes = ["dark", "bright"]

    def __init__(self, n=100, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.targets = torch.randint(0, 2, (n,), generator=g)
        self.x = (torch.rand(n, 1, 8, 8, generator=g) * 0.5 + 0.5 * self.targets.view(n, 1, 1, 1)).float()

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, i):
        return self.x[i], int(self.targets[i])

def nothing():
    return [1, 2, 3]
"""


@pytest.fixture
def lab(tmp_path, monkeypatch):
    (tmp_path / "owndata.py").write_text(textwrap.dedent(FACTORIES))
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    sys.modules.pop("owndata", None)


def test_a_factory_returning_arrays_gets_its_kwargs_and_the_split_seed(lab):
    metrics = train(lab / "run", ["dataset._target_=owndata.blobs", "+dataset.kwargs.n=150", "dataset.split_seed=3",
                                  *QUICK])
    ckpt = checkpoint(lab / "run")
    assert ckpt["classes"] == ["a", "b", "c"] and ckpt["config"]["dataset"]["name"] == "owndata.blobs"
    data = stored_data(lab / "run")
    assert data.train.num_samples + data.val.num_samples + data.test.num_samples == 150
    import owndata
    from dlcourse.data.arrays import hold_out_test

    x = owndata.blobs(150, seed=3)["x"]  # the factory was called with n and seed=dataset.split_seed
    assert torch.allclose(data.test.images, torch.from_numpy(x[hold_out_test(150, 3)[1].numpy()]).float())
    assert recompute_test_metrics(lab / "run")["acc"] == pytest.approx(metrics["test/acc"], abs=1e-12)


def test_a_factory_returning_a_dataset_takes_the_dataloader_path(lab):
    metrics = train(lab / "run", ["dataset._target_=owndata.Squares", "dataset.kwargs={n:120}", "dataset.num_workers=1",
                                  "augment=crop", *QUICK])
    data = stored_data(lab / "run")
    assert type(data.train).__name__ == "FolderLoader"
    assert (data.train.num_samples, data.val.num_samples, data.test.num_samples) == (86, 10, 24)
    assert checkpoint(lab / "run")["classes"] == ["dark", "bright"]
    assert recompute_test_metrics(lab / "run")["acc"] == pytest.approx(metrics["test/acc"], abs=1e-12)


def test_evaluate_from_another_directory_reproduces_the_test_accuracy(tmp_path):
    rng = np.random.default_rng(5)
    x = rng.integers(0, 256, (150, 8, 8), dtype=np.uint8)
    np.savez(tmp_path / "e.npz", x=x, y=(x.mean((1, 2)) > 127).astype(np.int64))
    (tmp_path / "launch").mkdir()
    (tmp_path / "elsewhere").mkdir()
    run = subprocess.run([sys.executable, str(ROOT / "train.py"), "dataset=tensors", "dataset.path=../e.npz", *QUICK,
                          "trainer.device=cpu", f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path / "launch",
                         capture_output=True, text=True, timeout=300, env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})
    assert run.returncode == 0, run.stderr
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "evaluate.py"), str(tmp_path / "run")],
                         cwd=tmp_path / "elsewhere", capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    evaluated = json.loads((tmp_path / "run" / "eval" / "test" / "metrics.json").read_text())
    assert evaluated["acc"] == json.loads((tmp_path / "run" / "metrics.json").read_text())["test/acc"]


def _csv(path: Path) -> str:
    path.write_text("a,b,label\n1,2,x\n3,4,y\n")
    return str(path)


@pytest.mark.parametrize("make, overrides, words", [
    (lambda d: None, ["dataset=tensors", "dataset.path={d}/none.npz"], ["dataset.path=", "no such file"]),
    (lambda d: np.savez(d / "a.npz", x=np.zeros((4, 2)), labels=np.zeros(4)), ["dataset=tensors", "dataset.path={d}/a.npz"],
     ["no array 'y'", "'x', 'labels'"]),
    (lambda d: np.savez(d / "a.npz", x=np.zeros((5, 2)), y=np.zeros(4, int)), ["dataset=tensors", "dataset.path={d}/a.npz"],
     ["'x' holds 5 samples", "'y' holds 4"]),
    (lambda d: np.savez(d / "a.npz", x=np.zeros((4, 2)), y=np.array([0, 1, 2, 0]), classes=np.array(["a", "b"])),
     ["dataset=tensors", "dataset.path={d}/a.npz"], ["'y' holds class indices from 0 to 2", "'classes'"]),
    (lambda d: np.savez(d / "a.npz", x=np.array([[0.0, np.nan], [np.inf, 1], [0, 0]]), y=np.array([0, 1, 0])),
     ["dataset=tensors", "dataset.path={d}/a.npz"], ["'x' holds 1 NaN and 1 infinite", "2 of its 3 samples"]),
    (lambda d: _csv(d / "t.csv"), ["dataset=csv", "dataset.path={d}/t.csv", "dataset.target=kind"],
     ["no column 'kind'", "a, b, label"]),
    (lambda d: np.savez(d / "a.npz", x=np.zeros((4, 28, 3, 28), np.uint8), y=np.array([0, 1, 0, 1])),
     ["dataset=tensors", "dataset.path={d}/a.npz"], ["shape (4, 28, 3, 28)", "(N, H, W, C)"]),
    (lambda d: (d / "badfactory.py").write_text("def build():\n    return 'data'\n"),
     ["dataset._target_=badfactory.build"], ["returned a builtins.str", "a tuple (x, y)"]),
])
def test_errors_are_one_paragraph_before_anything_is_written(tmp_path, monkeypatch, make, overrides, words):
    monkeypatch.chdir(tmp_path)
    make(tmp_path)
    with pytest.raises(UserError) as e:
        train(tmp_path / "run", [o.format(d=tmp_path) for o in overrides])
    sys.modules.pop("badfactory", None)
    assert all(w in str(e.value) for w in words), str(e.value)
    assert "\n" not in str(e.value) and not (tmp_path / "run").exists()


def test_data_switches_work_on_arrays_with_their_own_validation_split(tmp_path):
    rng = np.random.default_rng(6)
    x, y = rng.integers(0, 256, (90, 6, 6), dtype=np.uint8), np.repeat([0, 1, 2], 30)
    np.savez(tmp_path / "s.npz", x=x, y=y, x_val=x[:30], y_val=y[:30], x_test=x[::3], y_test=y[::3])
    train(tmp_path / "run", ["dataset=tensors", f"dataset.path={tmp_path / 's.npz'}", "dataset.classes=[2,0]",
                             "dataset.per_class=12", "dataset.label_noise=0.5", "dataset.shuffle_pixels=true", *QUICK])
    data = stored_data(tmp_path / "run")
    assert (data.train.num_samples, data.val.num_samples, data.test.num_samples) == (24, 30, 20)  # x_val: classes 0 only
    assert data.classes == ["2", "0"] and set(data.val.labels.tolist()) == {1}
    assert not torch.equal(data.val.images, torch.from_numpy(x[:30]).unsqueeze(1))  # the pixels are shuffled too
