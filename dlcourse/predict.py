"""Predict with a trained checkpoint (`scripts/predict.py RUN INPUTS...`), each input prepared as in
training (`dlcourse.rebuild`: the run's stored input shape and normalisation).

Image runs take image files: converted to the run's channels (16-bit greyscale scaled by 65535),
resized (short side, then the centre) to its input size. Runs on feature vectors (the toy sets) take
rows of numbers: files (.csv, .txt: one row per line, commas or spaces; .npy: an array [N, D]) or
rows written out (`0.5,-1.2`). Classification and binary runs give class probabilities (binary:
[1 - p, p] with p = sigmoid(logit)), regression runs the predicted values."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from dlcourse.errors import DataError

SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")  # how Pillow opens 16-bit greyscale PNGs


def read_image(path: Path | str, image_shape: tuple[int, int, int]) -> torch.Tensor:
    """The image file `path` as an image [C, H, W] in [0, 1] of the run's channels and size."""
    from PIL import Image, UnidentifiedImageError
    from torchvision.transforms import v2

    c, h, w = image_shape
    size = v2.Compose([v2.Resize(min(h, w)), v2.CenterCrop((h, w))])
    try:
        with Image.open(path) as img:
            if img.mode in SIXTEEN_BIT_MODES:  # convert("L") would clip every value above 255 to white
                grey = torch.from_numpy(np.asarray(img, dtype=np.float64) / 65535.0).float()[None]
                return size(grey.clamp(0, 1)).expand(c, -1, -1).contiguous()
            img = img.convert("L" if c == 1 else "RGB")
            x = v2.Compose([size, v2.ToImage(), v2.ToDtype(torch.float32, scale=True)])(img)
    except (OSError, UnidentifiedImageError) as e:
        raise DataError(f"Cannot read the image {path}: {e}. Give PNG or JPEG files.") from None
    return x.as_subclass(torch.Tensor)


def read_rows(item: Path | str, features: int) -> list[tuple[str, np.ndarray]]:
    """(name, row of `features` numbers) for each row of a file (.npy, or text: .csv/.txt/...) or
    for a row written out ("0.5,-1.2")."""
    path = Path(item)
    if path.is_file():
        if path.suffix == ".npy":
            array = np.load(path, allow_pickle=False)
        else:
            lines = [line for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
            rows = [_numbers(line) for line in lines]
            if rows and rows[0] is None and len(rows) > 1:  # a header line
                rows = rows[1:]
            if not rows or any(r is None for r in rows):
                raise DataError(f"{path}: every line must hold {features} number(s) separated by commas or spaces "
                                "(a first line of column names is skipped).")
            array = np.array(rows, dtype=np.float64)
    else:
        row = _numbers(str(item))
        if row is None:
            raise DataError(f"{item} is neither a file nor a row of numbers. This run takes rows of {features} "
                            f"feature(s): give .csv/.txt/.npy files of rows, or rows such as "
                            f"{','.join(['0.5'] * features)}.")
        array = np.array([row], dtype=np.float64)
    if array.ndim == 1 and features == 1:
        array = array[:, None]
    array = np.atleast_2d(array)
    if array.ndim != 2 or array.shape[1] != features:
        raise DataError(f"{item}: rows of {array.shape[-1]} number(s), but this run takes {features} feature(s) per "
                        f"row{'' if features == 1 else 's'}. Give rows of {features} number(s).")
    names = [f"{path}:{i + 1}" for i in range(len(array))] if path.is_file() else [str(item)]
    return list(zip(names, array.astype(np.float32)))


def _numbers(text: str):
    try:
        return [float(v) for v in re.split(r"[,;\s]+", text.strip()) if v]
    except ValueError:
        return None


@torch.inference_mode()
def predict(run: Path | str, inputs, top_k: int = 3, device: str = "cpu", model: Optional[torch.nn.Module] = None) -> list[dict]:
    """For each input (an image file, or a row of features; or each sample of an array or tensor of raw
    inputs [N, *input shape], images in [0, 1] or uint8): {"input", "probabilities", "top": top-k
    classes with probabilities} of classification and binary runs; {"input", "values"} of regression."""
    from dlcourse.eval_tasks import REPORTS
    from dlcourse.rebuild import rebuild

    model = rebuild(run, device, data=False, model=model)
    if isinstance(inputs, (torch.Tensor, np.ndarray)):
        from dlcourse.data.arrays import to_inputs

        raw = to_inputs(inputs, "inputs")
        raw = raw.float().div(255) if raw.dtype == torch.uint8 else raw.float()
        if tuple(raw.shape[1:]) != tuple(model.image_shape):
            raise DataError(f"inputs of shape {tuple(raw.shape)}: this run takes a batch [N, "
                            f"{', '.join(map(str, model.image_shape))}] of raw inputs, as in its training data.")
        named = [(str(i), x) for i, x in enumerate(raw)]
    elif model.images:
        named = [(str(p), read_image(p, model.image_shape)) for p in inputs]
    else:
        named = [(n, torch.from_numpy(r)) for item in inputs for n, r in read_rows(item, model.image_shape[0])]
    if not named:
        raise DataError("No inputs were given: name image files, or rows of numbers for a vector run.")
    batch = model.inputs(torch.stack([x for _, x in named]))
    scores = REPORTS[model.task.name].probabilities(model, model.model(batch)).cpu()
    if model.task.name == "regression":
        return [{"input": name, "values": s.tolist()} for (name, _), s in zip(named, scores)]
    top = scores.topk(min(top_k, len(model.classes)), dim=1)
    return [{"input": name, "probabilities": s.tolist(),
             "top": [{"class": model.classes[int(i)], "index": int(i), "probability": float(p)}
                     for p, i in zip(values, indices)]}
            for (name, _), s, values, indices in zip(named, scores, top.values, top.indices)]
