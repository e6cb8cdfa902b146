"""A callback that logs, every epoch, how the weights move (into history.csv and TensorBoard).

    norms/weights          ||w||, the L2 norm of all parameters at the end of the epoch
    norms/weights_rel      ||w|| / ||w_0||, relative to the weights before training
    norms/grad             the mean over the epoch's steps of the global gradient norm ||g||

The gradient norms are summed on the device and read once per epoch (no host sync per step).
||w_0|| is the callback's state: state_dict() stores it in every checkpoint, so a resumed run
keeps comparing with the weights it started from.
"""
from __future__ import annotations

import torch

from dlcourse.callbacks import Callback


class WeightNorms(Callback):
    def __init__(self, prefix: str = "norms"):
        self.prefix = prefix
        self.initial_norm = None  # ||w_0||, measured once in on_fit_start
        self.grad_sum, self.steps = None, 0

    @staticmethod
    def norm(tensors) -> torch.Tensor:
        return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(t.detach()) for t in tensors]))

    def on_fit_start(self, engine) -> None:
        if self.initial_norm is None:  # after a resume it comes from the checkpoint
            self.initial_norm = self.norm(engine.model.parameters()).item()

    def on_epoch_start(self, engine, epoch) -> None:
        self.grad_sum, self.steps = torch.zeros((), device=engine.device), 0

    def on_after_backward(self, engine, step) -> None:
        grads = [p.grad for p in engine.model.parameters() if p.grad is not None]
        if grads:
            self.grad_sum += self.norm(grads)
            self.steps += 1

    def on_epoch_end(self, engine, epoch, metrics) -> None:
        weights = self.norm(engine.model.parameters()).item()
        metrics[f"{self.prefix}/weights"] = weights
        metrics[f"{self.prefix}/weights_rel"] = weights / self.initial_norm
        metrics[f"{self.prefix}/grad"] = self.grad_sum.item() / max(self.steps, 1)

    def state_dict(self) -> dict:
        return {"initial_norm": self.initial_norm}

    def load_state_dict(self, state: dict) -> None:
        self.initial_norm = state["initial_norm"]
