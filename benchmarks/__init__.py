"""Speed tooling (not part of the library): throughput against a bare loop, augmentation cost."""
from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def compose(overrides: list[str]) -> DictConfig:
    """The training config `python train.py OVERRIDES` would run, composed with Hydra's compose API."""
    from hydra import compose as hydra_compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from dlcourse.config import register_configs

    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return hydra_compose(config_name="train", overrides=list(overrides))
