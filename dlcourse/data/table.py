"""A CSV table as arrays (`dataset=csv dataset.path=table.csv dataset.target=<column>`), read with pandas.

The target column decides the task: text (or true/false) → classification with the sorted values as class
names; integers with at most CLASS_LIMIT distinct values → classification (classes named by the values);
other numbers → regression. Every other column is a feature: numbers as they are, true/false as 0/1, and
text columns of at most CATEGORY_LIMIT distinct values one-hot encoded (one 0/1 feature per value, the
values taken from the training and test tables together). Empty cells and text columns with more values
(names, ids, free text) are refused, naming the columns.
"""
from __future__ import annotations

import logging
from typing import Optional

import numpy as np

from dlcourse.errors import DataError

CLASS_LIMIT = 20  # an integer target with at most this many distinct values is a class label
CATEGORY_LIMIT = 50  # a text feature with at most this many distinct values is one-hot encoded


def read_table(path: str, target: Optional[str], test_path: Optional[str] = None) -> dict:
    """Arrays `x`, `y` (and `x_test`, `y_test` from `test_path`, `classes`) of the tables, as dlcourse.data.arrays reads them."""
    if not target:
        raise DataError(f"dataset=csv needs dataset.target, the column to predict, e.g. dataset.target=label "
                        f"(the columns of {path}: {', '.join(_frame(path, 'dataset.path').columns)}).")
    frames = {"": _frame(path, "dataset.path")}
    if test_path:
        frames["_test"] = _frame(test_path, "dataset.test_path")
    for suffix, frame in frames.items():
        source = f"dataset.{'test_path' if suffix else 'path'}={test_path if suffix else path}"
        if target not in frame.columns:
            raise DataError(f"{source} has no column {target!r} (dataset.target). Its columns: "
                            f"{', '.join(map(str, frame.columns))}. Set dataset.target to one of them.")
        empty = {c: int(n) for c, n in frame.isna().sum().items() if n}
        if empty:
            raise DataError(f"{source} has empty or NaN cells: {', '.join(f'{c!r} ({n})' for c, n in empty.items())}. "
                            "Fill them (e.g. with the column mean) or drop those rows or columns before training.")
    if test_path:
        lacking = [c for c in frames[""].columns if c not in frames["_test"].columns]
        if lacking:
            raise DataError(f"dataset.test_path={test_path} lacks the columns {', '.join(map(repr, lacking))} of "
                            f"dataset.path={path}. Its columns: {', '.join(map(str, frames['_test'].columns))}.")
    import pandas as pd

    both = pd.concat(list(frames.values()), keys=list(frames), names=["part", "row"])
    features = _features(both.drop(columns=[target]), path)
    labels, classes = _target(both[target], target, path)
    arrays = {"classes": classes} if classes else {}
    for suffix in frames:
        arrays[f"x{suffix}"] = features.loc[suffix].to_numpy(dtype=np.float32)
        arrays[f"y{suffix}"] = labels.loc[suffix].to_numpy()
    return arrays


def _frame(path: str, key: str):
    import pandas as pd

    try:
        return pd.read_csv(path)
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise DataError(f"{key}={path} cannot be read as a CSV table ({type(e).__name__}: {e}). Give a comma-separated "
                        "file with a header line naming the columns.") from None


def _features(frame, path: str):
    import pandas as pd

    text = [c for c in frame.columns if not (pd.api.types.is_numeric_dtype(frame[c]) or pd.api.types.is_bool_dtype(frame[c]))]
    many = [f"{c!r} ({frame[c].nunique()} values)" for c in text if frame[c].nunique() > CATEGORY_LIMIT]
    if many:
        raise DataError(f"dataset.path={path}: the text columns {', '.join(many)} have more than {CATEGORY_LIMIT} distinct "
                        "values, which looks like names, ids or free text rather than categories. Drop them from the "
                        "table, or encode them as numbers yourself.")
    if text:
        logging.getLogger(__name__).warning(f"note: dataset.path={path}: the text columns {', '.join(map(repr, text))} "
                                            "are one-hot encoded (one 0/1 feature per value).")
    if frame.shape[1] == 0:
        raise DataError(f"dataset.path={path} has no column besides the target: nothing to learn from.")
    return pd.get_dummies(frame, columns=text, dtype=np.float32).astype(np.float32)


def _target(column, name: str, path: str):
    """(labels, class names): names for classification (labels are then the names as text), [] for regression."""
    import pandas as pd

    values = column.dropna().unique()
    if pd.api.types.is_bool_dtype(column) or not pd.api.types.is_numeric_dtype(column):
        return column.astype(str), sorted(map(str, values))
    if pd.api.types.is_integer_dtype(column) and len(values) <= CLASS_LIMIT:
        classes = [str(v) for v in sorted(values)]
        return column.astype(str), classes
    return column.astype(np.float32), []
