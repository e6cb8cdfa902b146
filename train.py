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
    # `lr_find=true` (a switch with keys of its own) is short for lr_find.enabled=true
    sys.argv = [f"lr_find.enabled={a.split('=', 1)[1]}" if a.startswith("lr_find=") else a for a in sys.argv]
    sys.exit(main())
