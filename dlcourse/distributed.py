"""Data-parallel training (DistributedDataParallel) in processes started by torchrun, or by SLURM
(one task per GPU, e.g. through hydra-submitit-launcher's `tasks_per_node`).

`trainer.batch_size` is the global batch: every process trains on its share of each batch
(the same seeded permutation everywhere, strided by rank), so N processes take the same steps as
one process with that batch. Metrics are summed over processes before they are read, and only
rank 0 writes the run directory. Without several processes (no WORLD_SIZE > 1) nothing changes.
"""
from __future__ import annotations

import os
from typing import Optional

import torch
import torch.distributed as dist

from dlcourse.errors import ConfigError


def _from_slurm() -> None:
    """torchrun's variables from SLURM's, for `srun` tasks (submitit's helper does the same)."""
    if "RANK" in os.environ or "SLURM_PROCID" not in os.environ or int(os.environ.get("SLURM_NTASKS", 1)) < 2:
        return
    try:
        from submitit.helpers import TorchDistributedEnvironment

        TorchDistributedEnvironment().export()
    except ImportError:
        raise ConfigError("trainer.strategy=ddp under SLURM needs submitit to find the master address: "
                          "pip install -e '.[launchers]', or start the processes with torchrun.") from None


def init(strategy: str, device_type: str) -> bool:
    """Join the process group when `strategy` is ddp and several processes were started."""
    if strategy != "ddp":
        return False
    if dist.is_available() and dist.is_initialized():
        return True
    _from_slurm()
    if int(os.environ.get("WORLD_SIZE", "1")) < 2:
        return False  # one process: an ordinary run
    if device_type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if device_type == "cuda" else "gloo")
    return True


def rank_and_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    return rank_and_world()[0] == 0


def sum_over_processes(values: torch.Tensor) -> torch.Tensor:
    """`values` summed over every process (unchanged in a single process)."""
    if rank_and_world()[1] > 1:
        values = values.clone()
        dist.all_reduce(values)
    return values


def broadcast_text(text: str) -> str:
    """Rank 0's `text` on every process."""
    if rank_and_world()[1] == 1:
        return text
    box: list[Optional[str]] = [text]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier() -> None:
    if rank_and_world()[1] > 1:
        dist.barrier()


def data_parallel(module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """`module` in DistributedDataParallel: gradients of its trainable parameters (requires_grad now;
    frozen ones are left out) averaged over the processes after each backward pass."""
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None)


def local_batch(batch_size: Optional[int]) -> Optional[int]:
    """This process's share of the global `batch_size` (None: the whole training set)."""
    _, world = rank_and_world()
    if batch_size is None:
        if world > 1:
            raise ConfigError("trainer.batch_size=null (full batch) is for one process; with trainer.strategy=ddp "
                              "give the global batch size as a number.")
        return None
    if batch_size % world:
        raise ConfigError(f"trainer.batch_size={batch_size} does not divide among {world} processes: it is the "
                          f"global batch. Use a multiple of {world}, e.g. trainer.batch_size={batch_size - batch_size % world or world}.")
    return batch_size // world
