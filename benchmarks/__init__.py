"""Speed tooling (not part of the library): throughput against a bare loop, augmentation cost."""
from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def compose(overrides: list[str]) -> DictConfig:
    """The training config `python train.py OVERRIDES` would run, composed with Hydra's compose API."""
    from dlcourse.config import compose_config

    return compose_config(overrides, CONFIGS)
