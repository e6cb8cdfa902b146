"""Small generated datasets for the first exercises: logic gates, 2-D point clouds, 1-D regression.

Inputs are raw float32 feature tensors [N, D] (the loader standardises them on the training split);
labels are int64 [N] for the binary and classification sets and float32 [N, 1] targets for the
regression sets. Everything is drawn from `seed` (dataset.split_seed), the test set with `seed + 1`,
so the same call always gives the same tensors. scikit-learn is imported only by moons and circles.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from dlcourse.data.readers import InMemoryDataset
from dlcourse.errors import ConfigError

GATES = {"and": (0, 0, 0, 1), "or": (0, 1, 1, 1), "nand": (1, 1, 1, 0), "xor": (0, 1, 1, 0)}
TOY_DATASETS = ("and", "or", "nand", "xor", "blobs", "moons", "circles", "spiral", "sine", "function")
_CORNERS = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float64)  # truth-table order (x1, x2)
_DEFAULT_SIZE = {"blobs": 200, "moons": 500, "circles": 500, "sine": 200, "function": 200}
_NUMPY_NAMES = {name: getattr(np, name) for name in (
    "sin", "cos", "tan", "exp", "log", "abs", "sqrt", "tanh", "sinh", "cosh", "arctan", "sign",
    "maximum", "minimum", "pi", "e")}


def describe_toy(name: str, arms: int = 2) -> tuple[tuple[int, ...], int, str]:
    """(input shape, number of classes or target dimension, task) of a toy set, without generating it."""
    _check_name(name)
    if name == "spiral":
        return (2,), arms, "classification"
    if name in ("sine", "function"):
        return (1,), 1, "regression"
    return (2,), 2, "binary"


def read_toy(name: str, *, n_samples=None, noise: float = 0.0, replicas: int = 1, arms: int = 2,
             x_range=(-math.pi, math.pi), function: str = "sin(x)", seed: int = 0) -> InMemoryDataset:
    """Generate toy set `name`: a training pool of `n_samples` points and an independent test draw.

    Gates: the 4 corners of {0,1}^2, `replicas` times each (ceil(n_samples / 4) if n_samples is
    given), test set the same size. Other sets: test size n_samples // 2. `noise` is the std of
    Gaussian noise on the inputs (classification) or on the targets (regression).
    """
    _check_name(name)
    if n_samples is not None and (int(n_samples) != n_samples or n_samples < 4):
        raise ConfigError(f"dataset.n_samples={n_samples} is not a usable training pool size for the toy set "
                          f"'{name}'. Give an integer of at least 4, or null for the set's default.")
    if not noise >= 0:
        raise ConfigError(f"dataset.noise={noise} is negative (or not a number); it is the standard deviation "
                          "of Gaussian noise, so use 0 for exact data or a positive value such as 0.1.")
    _, _, task = describe_toy(name, arms)
    classes = ["0", "1"]
    if name in GATES:
        replicas = math.ceil(n_samples / 4) if n_samples is not None else replicas
        if int(replicas) != replicas or replicas < 1:
            raise ConfigError(f"dataset.replicas={replicas} must be a positive integer: the number of copies "
                              "of each corner of {0,1}^2. Use replicas=1 for the plain truth table.")
        n_train = n_test = 4 * int(replicas)
        make = lambda n, s: _gate(GATES[name], n // 4, noise, s)  # noqa: E731
    else:
        if name == "spiral":
            if int(arms) != arms or arms < 2:
                raise ConfigError(f"dataset.arms={arms} must be an integer of at least 2: the spiral has one "
                                  "arm per class. Use e.g. arms=2 or arms=3.")
            classes = [f"arm {i}" for i in range(arms)]
            make = lambda n, s: _spiral(n, int(arms), noise, s)  # noqa: E731
        elif name in ("sine", "function"):
            lo, hi = _check_range(x_range)
            f = _parse_function("sin(x)" if name == "sine" else function, lo, hi)
            classes, make = [], lambda n, s: _regression(f, n, lo, hi, noise, s)  # noqa: E731
        else:
            make = lambda n, s: _CLOUDS[name](n, noise, s)  # noqa: E731
        n_train = int(n_samples) if n_samples is not None else _DEFAULT_SIZE.get(name, 100 * int(arms))
        n_test = n_train // 2
    train_x, train_y = make(n_train, seed)
    test_x, test_y = make(n_test, seed + 1)
    label_dtype = torch.float32 if task == "regression" else torch.int64
    return InMemoryDataset(
        train_images=torch.as_tensor(train_x, dtype=torch.float32),
        train_labels=torch.as_tensor(train_y, dtype=label_dtype),
        test_images=torch.as_tensor(test_x, dtype=torch.float32),
        test_labels=torch.as_tensor(test_y, dtype=label_dtype),
        classes=classes, task=task)


def target_function(name: str, function: str = "sin(x)", x_range=(-math.pi, math.pi)):
    """The noise-free y = f(x) of a regression toy set (numpy in, numpy out); None for the others."""
    if name not in ("sine", "function"):
        return None
    lo, hi = _check_range(x_range)
    return _parse_function("sin(x)" if name == "sine" else function, lo, hi)


def _check_name(name: str) -> None:
    if name not in TOY_DATASETS:
        raise ConfigError(f"dataset.name='{name}' is not a toy dataset. The toy sets are: "
                          f"{', '.join(TOY_DATASETS)}.")


def _check_range(x_range) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in x_range)
    except (TypeError, ValueError):
        lo = hi = math.nan
    if not lo < hi:
        raise ConfigError(f"dataset.x_range={x_range} is not an interval [lo, hi] with lo < hi. "
                          "Give two numbers, e.g. dataset.x_range=[-3.14159265,3.14159265].")
    return lo, hi


def _parse_function(expression: str, lo: float, hi: float):
    """y = f(x) from a numpy expression in x; checked on the interval before any data is drawn."""
    def f(x: np.ndarray) -> np.ndarray:
        return np.broadcast_to(eval(code, {"__builtins__": {}}, {**_NUMPY_NAMES, "x": x}), x.shape)

    try:
        if "__" in expression:
            raise ValueError("double underscores are not allowed")
        code = compile(expression, "dataset.function", "eval")
        with np.errstate(all="ignore"):
            probe = np.asarray(f(np.linspace(lo, hi, 101)), dtype=np.float64)
    except Exception as e:  # any failure of a user expression is a config problem
        raise ConfigError(f"dataset.function='{expression}' cannot be evaluated as y = f(x): "
                          f"{type(e).__name__}: {e}. Write a numpy expression in x using only "
                          f"{', '.join(_NUMPY_NAMES)}, e.g. 'sin(x)' or 'x**2 - 0.5*abs(x)'.") from None
    if not np.isfinite(probe).all():
        raise ConfigError(f"dataset.function='{expression}' gives infinite or NaN values on dataset.x_range="
                          f"[{lo}, {hi}]. Choose a function defined on the whole interval, or narrow the range.")
    return f


def _gate(truth: tuple[int, ...], replicas: int, noise: float, seed: int):
    x = np.tile(_CORNERS, (replicas, 1))
    x = x + noise * np.random.default_rng(seed).standard_normal(x.shape)
    return x, np.tile(np.array(truth), replicas)


def _blobs(n: int, noise: float, seed: int, margin: float = 0.5):
    """Gaussian blobs around (-2,-2) and (2,2), std 0.6 + noise; points closer than `margin` to the
    line x1 + x2 = 0 (or on its wrong side) are redrawn, so the classes are always linearly separable."""
    rng, std = np.random.default_rng(seed), 0.6 + noise
    parts = []
    for label, (center, count) in enumerate(((-2.0, n // 2), (2.0, n - n // 2))):
        kept = np.empty((0, 2))
        while len(kept) < count:
            p = center + std * rng.standard_normal((2 * count, 2))
            kept = np.concatenate([kept, p[np.sign(center) * p.sum(axis=1) > margin]])
        parts.append((kept[:count], np.full(count, label)))
    order = rng.permutation(n)
    return np.concatenate([p[0] for p in parts])[order], np.concatenate([p[1] for p in parts])[order]


def _moons(n: int, noise: float, seed: int):
    from sklearn.datasets import make_moons

    return make_moons(n_samples=n, noise=noise, random_state=seed)


def _circles(n: int, noise: float, seed: int):
    from sklearn.datasets import make_circles

    return make_circles(n_samples=n, noise=noise, factor=0.5, random_state=seed)


_CLOUDS = {"blobs": _blobs, "moons": _moons, "circles": _circles}


def _spiral(n: int, arms: int, noise: float, seed: int):
    """The cs231n spiral: radius 0..1, angle growing with the radius (4 rad along an arm), arm j
    turned by 2*pi*j/arms, Gaussian angle noise of std 0.2 + noise. Points are shuffled."""
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for j in range(arms):
        count = n // arms + (j < n % arms)
        r = np.linspace(0.0, 1.0, count)
        t = 2 * np.pi * j / arms + 4 * r + (0.2 + noise) * rng.standard_normal(count)
        xs.append(np.stack([r * np.sin(t), r * np.cos(t)], axis=1))
        ys.append(np.full(count, j))
    order = rng.permutation(n)
    return np.concatenate(xs)[order], np.concatenate(ys)[order]


def _regression(f, n: int, lo: float, hi: float, noise: float, seed: int):
    rng = np.random.default_rng(seed)
    x = rng.uniform(lo, hi, n)
    y = f(x) + noise * rng.standard_normal(n)
    return x[:, None], y[:, None]
