"""Train a model: `python train.py model=lenet optim=adam` (see configs/ and README.md)."""
import sys

import hydra
from omegaconf import DictConfig

from dlcourse.config import register_configs

register_configs()


@hydra.main(config_path="configs", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> float:
    from dlcourse.cli import run_job

    return run_job(cfg)


if __name__ == "__main__":
    sys.exit(main())
