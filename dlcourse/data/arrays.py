"""Your own arrays (from a .npz/.pt file, a CSV table or a factory of yours) checked and turned into an
`InMemoryDataset` once, so they take the same in-memory path as MNIST.

The contract: `x` and `y` (required), `x_val`/`y_val` (a validation split of its own), `x_test`/`y_test`,
`classes` (class names). `x` holds images (N, H, W), (N, H, W, C) or (N, C, H, W) — uint8 in 0..255 or
float in [0, 1] — or vectors (N, D). `y` holds class indices (integers), class names (strings) or
regression targets (floats, (N,) or (N, D)). Without `x_test`, a seeded 20 % of the samples is the test set.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from dlcourse.data.readers import InMemoryDataset
from dlcourse.errors import DataError

ARRAY_KEYS = ("x", "y", "x_val", "y_val", "x_test", "y_test", "classes")
TEST_FRACTION = 0.2  # of the samples held out as the test set when no x_test is given
_TEST_SALT = 3_000_017  # the test draw is a stream of its own, apart from the validation split's
_SPLITS = (("x", "y"), ("x_val", "y_val"), ("x_test", "y_test"))


@dataclass
class Arrays:
    """Checked tensors: inputs uint8/float32 [N, C, H, W] or float32 [N, D]; labels int64 [N] or float32 [N, D]."""

    x: dict[str, torch.Tensor]  # "x", and "x_val", "x_test" when given
    y: dict[str, torch.Tensor]  # "y", ...
    classes: list[str]  # empty for regression
    source: str  # where they came from, for messages (e.g. "dataset.path=/data/my.npz")

    @property
    def task(self) -> str:
        return "regression" if self.y["y"].is_floating_point() else "classification"

    @property
    def num_classes(self) -> int:
        return len(self.classes) or self.y["y"].shape[1]

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x["x"].shape[1:])


def check_arrays(raw: dict, source: str) -> Arrays:
    """Check the user's arrays (numpy arrays, tensors or lists) against the contract above and convert them;
    every problem is one DataError that names `source`, the array and what to do."""
    unknown = sorted(set(raw) - set(ARRAY_KEYS))
    missing = [k for k in ("x", "y") if k not in raw]
    if missing:
        raise DataError(f"{source} has no array {' or '.join(repr(m) for m in missing)}: it holds "
                        f"{', '.join(repr(k) for k in raw) or 'nothing'}. Give the inputs as 'x' and the labels or targets "
                        f"as 'y' (optional: x_val, y_val, x_test, y_test, classes), e.g. np.savez('my.npz', x=images, y=labels).")
    if unknown:
        logging.getLogger(__name__).warning(f"note: {source}: ignored the arrays {', '.join(unknown)} (used: "
                                            f"{', '.join(ARRAY_KEYS)}).")
    arrays = {k: _numpy(raw[k], k, source) for k in ARRAY_KEYS[:-1] if k in raw}
    for xk, yk in _SPLITS:
        if (xk in arrays) != (yk in arrays):
            given, lacking = (xk, yk) if xk in arrays else (yk, xk)
            raise DataError(f"{source} has '{given}' but no '{lacking}': give both or neither.")
        if xk in arrays and len(arrays[xk]) != len(arrays[yk]):
            raise DataError(f"{source}: '{xk}' holds {len(arrays[xk])} samples but '{yk}' holds {len(arrays[yk])}: "
                            f"every input needs one label. Save the same number of each.")
    for k, a in arrays.items():
        _check_finite(a, k, source)
    x = {k: _inputs(a, k, source) for k, a in arrays.items() if k.startswith("x")}
    for k, a in x.items():
        if a.shape[1:] != x["x"].shape[1:]:
            raise DataError(f"{source}: '{k}' has samples of shape {tuple(a.shape[1:])} but 'x' of "
                            f"{tuple(x['x'].shape[1:])} (after putting channels first). Save them alike.")
    y, classes = _labels({k: a for k, a in arrays.items() if k.startswith("y")}, raw.get("classes"), source)
    return Arrays(x, y, classes, source)


def to_inputs(value, source: str) -> torch.Tensor:
    """Raw inputs in any layout the contract accepts as [N, C, H, W] images or [N, D] vectors (for predictions)."""
    return _inputs(_numpy(value, "x", source), "x", source)


def to_dataset(arrays: Arrays, seed: int) -> InMemoryDataset:
    """The arrays as an InMemoryDataset; without x_test, a seeded TEST_FRACTION of them is the test set."""
    x, y = arrays.x["x"], arrays.y["y"]
    if "x_test" in arrays.x:
        test_x, test_y = arrays.x["x_test"], arrays.y["y_test"]
    else:
        train_idx, test_idx = hold_out_test(len(y), seed)
        if len(train_idx) < 2:
            raise DataError(f"{arrays.source} holds {len(y)} samples: too few to hold out a test set. Give more, "
                            "or a test set of its own (x_test, y_test).")
        logging.getLogger(__name__).warning(test_note(arrays.source, len(test_idx), len(y), seed))
        x, y, test_x, test_y = x[train_idx], y[train_idx], x[test_idx], y[test_idx]
    return InMemoryDataset(x, y, test_x, test_y, arrays.classes, arrays.task,
                           arrays.x.get("x_val"), arrays.y.get("y_val"))


def hold_out_test(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sorted (rest, test) indices: a random TEST_FRACTION of `n` samples, drawn from `seed` (dataset.split_seed)."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed + _TEST_SALT))
    n_test = max(1, int(round(n * TEST_FRACTION)))
    return order[n_test:].sort().values, order[:n_test].sort().values


def test_note(source: str, n_test: int, n: int, seed: int) -> str:
    return (f"note: {source} has no test set of its own, so {n_test} of its {n} samples ({TEST_FRACTION:.0%}, drawn "
            f"with dataset.split_seed={seed}) are held out as the test set.")


def _numpy(value, key: str, source: str) -> np.ndarray:
    a = value.numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
    a = a if a.flags.writeable else a.copy()  # e.g. pandas' arrays: tensors must not share read-only memory
    if a.ndim == 0 or len(a) == 0:
        raise DataError(f"{source}: '{key}' is {'empty' if a.ndim else 'a single value'}; it must hold one entry per sample.")
    return a


def _check_finite(a: np.ndarray, key: str, source: str) -> None:
    if a.dtype.kind in "fc":
        bad = ~np.isfinite(a)
        if bad.any():
            rows = int(bad.reshape(len(a), -1).any(axis=1).sum())
            raise DataError(f"{source}: '{key}' holds {int(np.isnan(a).sum())} NaN and {int(np.isinf(a).sum())} "
                            f"infinite values (in {rows} of its {len(a)} samples). Remove or fill those samples before "
                            "saving; training on them would make the loss NaN.")


def _inputs(a: np.ndarray, key: str, source: str) -> torch.Tensor:
    """Images to [N, C, H, W] (uint8, or float32 in [0, 1]); vectors [N, D] to float32."""
    if a.dtype.kind not in "biuf":
        raise DataError(f"{source}: '{key}' holds {a.dtype} values; inputs must be numbers (uint8 images, float "
                        "images in [0, 1], or float feature vectors).")
    if a.ndim == 2:
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
    if a.ndim == 3:
        a = a[:, None]
    elif a.ndim == 4 and a.shape[1] > min(a.shape[2:]):
        if a.shape[3] > min(a.shape[1:3]):
            raise DataError(_shape_message(a, key, source))
        a = a.transpose(0, 3, 1, 2)  # (N, H, W, C): channels are the last and smallest axis
    elif a.ndim != 4:
        raise DataError(_shape_message(a, key, source))
    if a.dtype.kind == "f":
        lo, hi = float(a.min()), float(a.max())
        if lo < 0 or hi > 1:
            raise DataError(f"{source}: '{key}' holds float images with values from {lo:g} to {hi:g}; float images are "
                            "read as intensities in [0, 1]. Divide 0..255 values by 255, or save them as uint8.")
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
    if a.min() < 0 or a.max() > 255:
        raise DataError(f"{source}: '{key}' holds integer images with values from {a.min()} to {a.max()}; integer "
                        "images are read as 0..255 intensities. Save them as uint8 (or float in [0, 1]).")
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.uint8))


def _shape_message(a: np.ndarray, key: str, source: str) -> str:
    return (f"{source}: '{key}' has shape {a.shape}, which is neither images (N, H, W), (N, H, W, C) or (N, C, H, W) "
            "(channels: the smallest of the last three axes) nor vectors (N, D). Reshape it to one of those.")


def _labels(ys: dict[str, np.ndarray], names, source: str) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Class indices int64 [N] with the class names, or regression targets float32 [N, D] (no names)."""
    kinds = {a.dtype.kind for a in ys.values()}
    given = [str(c) for c in np.asarray(names).tolist()] if names is not None else None
    if kinds <= {"f"}:
        return {k: torch.from_numpy(np.ascontiguousarray(a.reshape(len(a), -1), dtype=np.float32))
                for k, a in ys.items()}, []
    for k, a in ys.items():
        if a.ndim > 2 or (a.ndim == 2 and a.shape[1] != 1):
            raise DataError(f"{source}: '{k}' has shape {a.shape}; class labels are one per sample, (N,). Float "
                            "arrays are regression targets and may have several columns.")
    ys = {k: a.reshape(-1) for k, a in ys.items()}
    if kinds <= {"b", "i", "u"}:
        indices = {k: a.astype(np.int64) for k, a in ys.items()}
        top = max(int(a.max()) for a in indices.values())
        classes = given or [str(i) for i in range(top + 1)]
        for k, a in indices.items():
            if a.min() < 0 or a.max() >= len(classes):
                where = f"the {len(classes)} names in 'classes'" if given else "0, 1, ..."
                raise DataError(f"{source}: '{k}' holds class indices from {a.min()} to {a.max()}, outside the range of "
                                f"{where} (0..{len(classes) - 1}). Labels are indices into 'classes': fix the labels "
                                "or the class list.")
    elif kinds <= {"U", "S", "O"}:  # class names: indices into the sorted names, or into `classes`
        text = {k: a.astype(str) for k, a in ys.items()}
        classes = given or sorted(set().union(*(set(a.tolist()) for a in text.values())))
        index = {c: i for i, c in enumerate(classes)}
        for k, a in text.items():
            unknown = sorted(set(a.tolist()) - set(index))
            if unknown:
                raise DataError(f"{source}: '{k}' holds labels {', '.join(unknown[:5])} that 'classes' does not list "
                                f"({', '.join(classes)}). Add them to 'classes' or fix the labels.")
        indices = {k: np.array([index[v] for v in a.tolist()], dtype=np.int64) for k, a in text.items()}
    else:
        raise DataError(f"{source}: the labels mix kinds ({', '.join(sorted(str(a.dtype) for a in ys.values()))}); "
                        "give integers (class indices), strings (class names) or floats (regression targets) throughout.")
    if len(classes) < 2:
        raise DataError(f"{source}: every label is the same class ({classes[0]!r}); classification needs at least 2 classes.")
    return {k: torch.from_numpy(a) for k, a in indices.items()}, classes


def read_array_file(path: str, source: Optional[str] = None) -> dict:
    """The arrays of a .npz (np.load) or .pt file (a dict of tensors, torch.load with weights_only=True)."""
    source = source or path
    suffix = path.rsplit(".", 1)[-1].lower()
    try:
        if suffix == "npz":
            with np.load(path, allow_pickle=False) as f:
                return {k: f[k] for k in f.files}
        if suffix in ("pt", "pth"):
            saved = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(saved, dict):
                raise DataError(f"{source} holds a {type(saved).__name__}, not a dict of arrays: save "
                                "torch.save({'x': images, 'y': labels}, path).")
            return dict(saved)
    except (OSError, ValueError, RuntimeError, EOFError) as e:
        raise DataError(f"{source}: cannot read the file ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}). "
                        "Save it with np.savez(path, x=..., y=...) or torch.save({'x': ..., 'y': ...}, path).") from None
    raise DataError(f"{source}: files ending .{suffix} are not read here: dataset=tensors reads .npz (np.savez) and "
                    ".pt (torch.save of a dict of tensors); use dataset=csv for tables.")
