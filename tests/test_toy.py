"""Toy datasets (dlcourse/data/toy.py): truth tables, geometry, determinism, errors, lazy imports."""
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import compose_config, train
from dlcourse.data.toy import GATES, TOY_DATASETS, describe_toy, read_toy
from dlcourse.errors import ConfigError

CORNERS = torch.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])


@pytest.mark.parametrize("name,truth", [("and", [0, 0, 0, 1]), ("or", [0, 1, 1, 1]),
                                        ("nand", [1, 1, 1, 0]), ("xor", [0, 1, 1, 0])])
def test_gate_truth_tables_exact_without_noise(name, truth):
    data = read_toy(name)
    for x, y in ((data.train_images, data.train_labels), (data.test_images, data.test_labels)):
        assert torch.equal(x, CORNERS) and x.dtype == torch.float32
        assert y.tolist() == truth and y.dtype == torch.int64
    assert data.task == "binary" and data.classes == ["0", "1"]


def test_gate_replicas_and_noise_make_clouds_around_the_corners():
    data = read_toy("xor", replicas=50, noise=0.1, seed=3)
    x, y = data.train_images, data.train_labels
    assert x.shape == (200, 2) and y.shape == (200,) and data.test_images.shape == (200, 2)
    nearest = torch.cdist(x, CORNERS).argmin(dim=1)  # noise 0.1 << half the corner spacing
    assert torch.equal(nearest, torch.arange(4).repeat(50))
    assert torch.equal(y, torch.tensor(GATES["xor"]).repeat(50))
    offsets = x - CORNERS[nearest]
    assert 0.07 < offsets.std().item() < 0.13
    assert not torch.equal(x, data.test_images)  # the test set is an independent draw
    assert read_toy("and", n_samples=10).train_images.shape == (12, 2)  # replicas = ceil(10 / 4)


def test_blobs_are_linearly_separable_even_with_noise():
    from sklearn.svm import LinearSVC

    for seed in range(3):
        data = read_toy("blobs", n_samples=400, noise=1.0, seed=seed)
        x, y = data.train_images.numpy(), data.train_labels.numpy()
        assert x.shape == (400, 2) and np.bincount(y).tolist() == [200, 200]
        s = x.sum(axis=1)  # the line x1 + x2 = 0 separates them with a margin
        assert (s[y == 0] < 0).all() and (s[y == 1] > 0).all()
        svm = LinearSVC(C=1e4, max_iter=100_000).fit(x, y)
        assert svm.score(x, y) == 1.0


@pytest.mark.parametrize("name", ["moons", "circles"])
def test_moons_and_circles_shapes_balance_determinism(name):
    data = read_toy(name, n_samples=300, noise=0.1, seed=0)
    assert data.train_images.shape == (300, 2) and data.test_images.shape == (150, 2)
    assert data.train_labels.dtype == torch.int64 and data.task == "binary"
    assert torch.bincount(data.train_labels).tolist() == [150, 150]
    again = read_toy(name, n_samples=300, noise=0.1, seed=0)
    assert torch.equal(data.train_images, again.train_images)
    assert torch.equal(data.train_labels, again.train_labels)
    other = read_toy(name, n_samples=300, noise=0.1, seed=1)
    assert not torch.equal(data.train_images, other.train_images)
    assert not torch.equal(data.train_images[:150], data.test_images)
    assert read_toy(name).train_images.shape == (500, 2)


def test_circles_radii_without_noise():
    data = read_toy("circles", n_samples=100)
    r = data.train_images.norm(dim=1)
    assert torch.allclose(r[data.train_labels == 0], torch.tensor(1.0), atol=1e-5)  # outer circle
    assert torch.allclose(r[data.train_labels == 1], torch.tensor(0.5), atol=1e-5)  # inner, factor 0.5


@pytest.mark.parametrize("arms", [2, 3, 5])
def test_spiral_arms_and_radius(arms):
    data = read_toy("spiral", arms=arms, n_samples=100 * arms, seed=0)
    x, y = data.train_images, data.train_labels
    assert x.shape == (100 * arms, 2) and y.dtype == torch.int64
    assert torch.bincount(y).tolist() == [100] * arms
    assert data.classes == [f"arm {i}" for i in range(arms)] and data.task == "classification"
    assert x.norm(dim=1).max().item() <= 1.0 + 1e-6
    assert data.test_images.shape == (50 * arms, 2)
    assert not torch.equal(x, read_toy("spiral", arms=arms, n_samples=100 * arms, seed=1).train_images)
    assert torch.equal(x, read_toy("spiral", arms=arms, n_samples=100 * arms, seed=0).train_images)


def test_spiral_arms_are_rotated_copies():
    data = read_toy("spiral", arms=4, n_samples=4000, seed=0)
    x, y = data.train_images.double(), data.train_labels
    # along arm j the angle atan2(x1, x2) is about 2*pi*j/4 + 4*r: the mean residual is near 0
    for j in range(4):
        r = x[y == j].norm(dim=1)
        angle = torch.atan2(x[y == j, 0], x[y == j, 1])
        residual = torch.remainder(angle - 2 * math.pi * j / 4 - 4 * r + math.pi, 2 * math.pi) - math.pi
        assert residual.mean().abs().item() < 0.05 and 0.15 < residual.std().item() < 0.25


def test_sine_targets_and_noise():
    data = read_toy("sine")
    x, y = data.train_images, data.train_labels
    assert x.shape == (200, 1) and y.shape == (200, 1) and y.dtype == torch.float32
    assert data.test_images.shape == (100, 1) and data.task == "regression" and data.classes == []
    assert x.min() >= -math.pi and x.max() <= math.pi
    assert torch.allclose(y, torch.sin(x), atol=1e-6)
    noisy = read_toy("sine", n_samples=4000, noise=0.3, x_range=(0, 1), seed=5)
    x, y = noisy.train_images, noisy.train_labels
    assert 0 <= x.min() and x.max() <= 1
    assert abs((y - torch.sin(x)).std().item() - 0.3) < 0.02
    assert abs((noisy.test_labels - torch.sin(noisy.test_images)).std().item() - 0.3) < 0.03


def test_function_expression():
    data = read_toy("function", function="x**2 - 0.5*abs(x)", x_range=[-2, 2], n_samples=50)
    x, y = data.train_images, data.train_labels
    assert torch.allclose(y, x**2 - 0.5 * x.abs(), atol=1e-5)
    const = read_toy("function", function="pi", n_samples=10).train_labels
    assert torch.allclose(const, torch.full((10, 1), math.pi))


@pytest.mark.parametrize("expression", ["x +", "foo(x)", "open('f')", "x.__class__", "log(x)"])
def test_bad_function_is_a_config_error(expression):
    with pytest.raises(ConfigError, match="dataset.function"):
        read_toy("function", function=expression)


@pytest.mark.parametrize("kwargs,key", [({"name": "sprial"}, "dataset.name"),
                                        ({"name": "spiral", "arms": 1}, "dataset.arms"),
                                        ({"name": "xor", "replicas": 0}, "dataset.replicas"),
                                        ({"name": "moons", "n_samples": 2}, "dataset.n_samples"),
                                        ({"name": "moons", "noise": -0.1}, "dataset.noise"),
                                        ({"name": "sine", "x_range": [1, -1]}, "dataset.x_range")])
def test_bad_options_are_config_errors(kwargs, key):
    with pytest.raises(ConfigError, match=key):
        read_toy(**kwargs)


@pytest.mark.parametrize("name", TOY_DATASETS)
def test_describe_agrees_with_read(name):
    shape, n_out, task = describe_toy(name, arms=3)
    data = read_toy(name, arms=3, n_samples=60)
    assert tuple(data.train_images.shape[1:]) == shape and data.task == task
    if task == "regression":
        assert tuple(data.train_labels.shape[1:]) == (n_out,)
    else:
        assert data.train_labels.max().item() == n_out - 1 and len(data.classes) == n_out


def test_gates_spiral_sine_do_not_import_sklearn():
    code = ("import sys; from dlcourse.data.toy import read_toy; read_toy('xor'); read_toy('sine'); "
            "read_toy('spiral'); read_toy('function', function='x**2'); read_toy('blobs'); "
            "print('sklearn' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_the_perceptron_brings_its_textbook_rule_and_learns_and(tmp_path):
    overrides = ["model=perceptron", "dataset=and", "figures.enabled=false"]  # python train.py model=perceptron dataset=and
    cfg = compose_config(overrides)
    assert (cfg.optim._target_, cfg.init.name, cfg.trainer.batch_size) == ("torch.optim.SGD", "zeros", 1)
    metrics = train(tmp_path, overrides)
    assert metrics["test/acc"] == 1.0 and metrics["train/acc_last"] == 1.0
    adam = compose_config(["model=perceptron", "optim=adam"])  # the command line still chooses
    assert adam.optim._target_ == "torch.optim.Adam" and adam.optim.lr == 0.001
