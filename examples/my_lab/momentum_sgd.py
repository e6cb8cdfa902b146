"""SGD with momentum, written out (the exercise of the optimizer lecture).

    v <- momentum * v + g          (on the first step: v <- g)
    w <- w - lr * v

with g = grad + weight_decay * w. These are exactly torch.optim.SGD's updates with the same
momentum (dampening 0, no Nesterov), so both give identical weights (tests/test_my_lab.py checks it).
Named in the config as optim._target_ on top of optim=sgd (which sets lr and weight_decay).
"""
from __future__ import annotations

import torch


class MomentumSGD(torch.optim.Optimizer):
    def __init__(self, params, lr: float = 0.1, momentum: float = 0.9, weight_decay: float = 0.0):
        if lr < 0 or not 0 <= momentum < 1 or weight_decay < 0:
            raise ValueError(f"need lr >= 0, 0 <= momentum < 1, weight_decay >= 0; got {lr}, {momentum}, {weight_decay}")
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:  # dlcourse gives biases their own group (no weight decay)
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                if group["weight_decay"] != 0:
                    g = g.add(p, alpha=group["weight_decay"])
                state = self.state[p]  # kept in checkpoints: a resumed run continues with its velocity
                if "velocity" not in state:
                    state["velocity"] = g.clone()
                else:
                    state["velocity"].mul_(group["momentum"]).add_(g)
                p.add_(state["velocity"], alpha=-group["lr"])
        return loss
