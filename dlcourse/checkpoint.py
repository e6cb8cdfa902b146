"""Checkpoints: atomic writes, safe reads, and the random-number state needed to resume exactly.

A checkpoint is a dict of tensors, numbers, strings, lists and dicts only, so it loads with
`torch.load(weights_only=True)`, which refuses anything that could run code when unpickled.
"""
from __future__ import annotations

import os
import pickle
import random
import tempfile
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from dlcourse.errors import CheckpointError


def save_atomic(obj: Any, path: Path) -> None:
    """Write `obj` to `path` so that a crash at any moment leaves the old file or the new one, whole."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass


def load(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint safely; any problem becomes one CheckpointError that names the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"Checkpoint {path} does not exist. Give resume=<path to a .pt file "
                              "written by dlcourse>, or resume=true inside the run directory.")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        blocked = [line.strip() for line in str(e).splitlines() if "GLOBAL" in line]
        if blocked:
            raise CheckpointError(
                f"Refused to load {path}: it holds an object that could run code when unpickled "
                f"({blocked[0]}). It was read with torch.load(weights_only=True) and nothing in it was "
                "executed. Only load checkpoints written by dlcourse, or from a source you trust.") from None
        raise CheckpointError(f"Cannot read checkpoint {path}: it is not a PyTorch checkpoint. Use a "
                              "file written by dlcourse (checkpoints/last.pt or best.pt).") from None
    except Exception as e:  # torch.load fails in many ways on damaged bytes (IndexError, RuntimeError, ...)
        first = str(e).strip().splitlines()[0].split(". ")[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"Cannot read checkpoint {path} ({first}). The file is truncated or not "
                              "a PyTorch checkpoint; use another one (checkpoints/best.pt or last.pt).") from None
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"{path} is a PyTorch file but not a dlcourse checkpoint (no 'model' entry).")
    return state


def rng_state(*generators: Optional[torch.Generator]) -> dict:
    """Every random-number generator the run draws from: Python, NumPy, torch (CPU, CUDA), and ours."""
    state = {
        "python": list(random.getstate()[1]) + [random.getstate()[0], random.getstate()[2]],
        "numpy": np.random.get_state()[1].tolist() + [int(np.random.get_state()[2])],
        "torch": torch.get_rng_state(),
        "generators": [g.get_state() if g is not None else None for g in generators],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict, *generators: Optional[torch.Generator]) -> None:
    """Restore what `rng_state` captured."""
    py = state["python"]
    random.setstate((py[-2], tuple(py[:-2]), py[-1]))
    np_state = state["numpy"]
    np.random.set_state(("MT19937", np.array(np_state[:-1], dtype=np.uint32), np_state[-1]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    for g, s in zip(generators, state["generators"]):
        if g is not None and s is not None:
            g.set_state(s)
