"""Your own data: `dataset=tensors` (a .npz/.pt file), `dataset=csv` (a table) or `dataset._target_` (a function
or Dataset class of yours). Arrays take MNIST's in-memory path (dlcourse.data.arrays); a torch Dataset is read
batch by batch by DataLoader workers (dlcourse.data.samples).

The source is read once per process and kept (keyed by the file's path and modification time, or by the
factory and its arguments), because a run describes its data before it reads it, and more than once.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

from torch.utils.data import Dataset

from dlcourse.data.arrays import Arrays, check_arrays, read_array_file
from dlcourse.data.samples import Samples, describe_samples
from dlcourse.errors import ConfigError, DataError

OWN_DATASETS = ("tensors", "csv")  # dataset names read from dataset.path
_KINDS = {"tensors": ".npz or .pt", "csv": ".csv"}


@dataclass(frozen=True)
class Source:
    """What names your data: a file (`name` tensors or csv) or a factory (`target`, with `kwargs`)."""

    name: str
    path: Optional[str] = None
    target: Optional[str] = None  # csv: the column to predict
    test_path: Optional[str] = None
    factory: Optional[str] = None  # dataset._target_
    kwargs: dict = field(default_factory=dict, hash=False)
    seed: int = 0  # dataset.split_seed: given to the factory (when it takes `seed`) and draws the test split
    root: Optional[str] = None  # dataset.root: given to the factory when it takes `root`

    @property
    def key(self) -> str:
        return "dataset._target_" if self.factory else "dataset.path"


_cache: dict[tuple, Union[Arrays, Samples]] = {}


def load_source(source: Source) -> Union[Arrays, Samples]:
    """The checked arrays, or the Dataset, that `source` names (read once while the files stay unchanged)."""
    if source.factory:
        from dlcourse.usercode import locate

        factory = locate(source.factory, "dataset._target_", "dataset")
        key = (factory, repr(sorted(source.kwargs.items())), source.seed, source.root)
    else:
        test = _stamp(source.test_path, "dataset.test_path", source.name) if source.test_path else None
        key = (source.name, _stamp(source.path, "dataset.path", source.name), test, source.target)
    if key not in _cache:
        _cache.clear()  # one source at a time: a sweep over files must not keep them all in memory
        _cache[key] = _call(factory, source) if source.factory else _read(source)
    return _cache[key]


def _stamp(path: Optional[str], key: str, name: str) -> tuple:
    if not path:
        raise ConfigError(f"dataset={name} needs {key}, the {_KINDS[name]} file of your data: python train.py "
                          f"dataset={name} {key}=/path/to/data{_KINDS[name].split()[0]}"
                          f"{' dataset.target=<column>' if name == 'csv' else ''}.")
    if not os.path.isfile(path):
        raise DataError(f"{key}={path}: there is no such file. Check the path (a relative one is taken from the "
                        "directory the command was started in).")
    stat = os.stat(path)
    return path, stat.st_mtime_ns, stat.st_size


def _read(source: Source) -> Arrays:
    if source.name == "csv":
        from dlcourse.data.table import read_table

        raw = read_table(source.path, source.target, source.test_path)
        return check_arrays(raw, f"dataset.path={source.path}")
    raw = read_array_file(source.path, f"dataset.path={source.path}")
    if source.test_path:
        test = read_array_file(source.test_path, f"dataset.test_path={source.test_path}")
        if "x" not in test or "y" not in test:
            raise DataError(f"dataset.test_path={source.test_path} has no array 'x' or 'y': it holds "
                            f"{', '.join(map(repr, test)) or 'nothing'}. Save the test inputs as 'x' and labels as 'y'.")
        raw = {**raw, "x_test": test["x"], "y_test": test["y"]}
    return check_arrays(raw, f"dataset.path={source.path}")


ACCEPTED = ("a dict of arrays like a .npz file ({'x': ..., 'y': ..., optional 'x_val', 'y_val', 'x_test', 'y_test', "
            "'classes'}), a tuple (x, y), or a torch.utils.data.Dataset of (input, label) pairs")


def _call(factory, source: Source) -> Union[Arrays, Samples]:
    from dlcourse.usercode import call

    provided = {"seed": source.seed, "root": source.root}
    made = call(factory, "dataset._target_", source.factory, dict(source.kwargs), provided)
    where = f"dataset._target_={source.factory}"
    if isinstance(made, Dataset):
        return describe_samples(made, where)
    if isinstance(made, tuple) and len(made) == 2:
        made = {"x": made[0], "y": made[1]}
    if isinstance(made, dict) and all(isinstance(k, str) for k in made):
        return check_arrays(made, where)
    what = f"a tuple of {len(made)} items" if isinstance(made, tuple) else f"a {type(made).__module__}.{type(made).__qualname__}"
    raise DataError(f"{where} returned {what}; it must return {ACCEPTED}. Change what it returns.")


def absolute(path: Optional[str]) -> Optional[str]:
    """`path` resolved against the launch directory (runs are evaluated and resumed from anywhere)."""
    return None if path in (None, "", "???") else str(Path(path).expanduser().resolve())
