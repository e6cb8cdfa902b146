"""Per-layer training diagnostics: weight norms, activation statistics, gradient norms, histograms.

Layers (nn.Linear / nn.Conv*) are named `layer1..layerL` and activation modules `act1..actK` in
depth order. Activation and gradient statistics are sampled every `every_n_steps` optimizer steps
(and on the first step of a fit), summed in device tensors and read once per epoch; the forward
hooks exist only during a sampled step's forward/backward. Metrics added at each epoch end:

    diag/weight_norm/layerI, diag/weight_norm/total   Frobenius norm of each weight; L2 norm of all parameters
    diag/sparsity/total   fraction of the layers' weights with |w| < 1e-3 (what an L1 penalty drives to zero)
    diag/act_mean/actK, diag/act_std/actK            mean / std of the activation's output
    diag/dead_frac/actK                              fraction of units <= 0 for the whole batch (ReLU-like)
    diag/grad_norm/layerI, diag/grad_norm/total      norm of each weight's gradient; of all gradients
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from dlcourse.callbacks import Callback

LAYER_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
# Activation modules, matched by class name (a subclass of a listed class counts too).
ACTIVATION_TYPES = ("ReLU", "ReLU6", "LeakyReLU", "PReLU", "ELU", "SELU", "GELU", "SiLU", "Tanh", "Sigmoid",
                    "Softplus", "Softsign", "Hardtanh", "Step", "Sign")
DEAD_TYPES = ("ReLU", "ReLU6", "Step")  # activations whose units can die (output <= 0 for every input)


def _is_a(module: nn.Module, names: tuple[str, ...]) -> bool:
    return any(cls.__name__ in names for cls in type(module).__mro__)


def layer_names(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """[("layer1", module), ...]: the parameterised layers in `named_modules()` order."""
    layers = [m for _, m in model.named_modules() if isinstance(m, LAYER_TYPES)]
    return [(f"layer{i}", m) for i, m in enumerate(layers, 1)]


def activation_names(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """[("act1", module), ...]: the leaf activation modules in `named_modules()` order."""
    acts = [m for _, m in model.named_modules()
            if next(m.children(), None) is None and _is_a(m, ACTIVATION_TYPES)]
    return [(f"act{i}", m) for i, m in enumerate(acts, 1)]


SPARSE = 1e-3  # a weight below this magnitude counts as zero for diag/sparsity/total

class Diagnostics(Callback):
    """Callback that logs the per-layer statistics switched on (see the module docstring)."""

    def __init__(self, weight_norms=False, activations=False, gradients=False, histograms=False,
                 every_n_steps=10):
        self.weight_norms, self.activations = weight_norms, activations
        self.gradients, self.histograms = gradients, histograms
        self.every_n_steps = max(1, int(every_n_steps))
        self.module_names: dict[str, str] = {}  # "layer1" -> "0", "act1" -> "1" (names in the model)
        self._model = None
        self._layers: list[tuple[str, nn.Module]] = []
        self._acts: list[tuple[str, nn.Module]] = []
        self._handles: list[Any] = []
        self._first = True  # the next step is the fit's first
        self._sampling = False
        self._summary: dict[str, list] = {}
        self.sampled_epoch: dict[str, int] = {}  # "activations"/"gradients" -> the last epoch with sampled steps
        self._reset()

    @property
    def enabled(self) -> bool:
        return bool(self.weight_norms or self.activations or self.gradients or self.histograms)

    def _reset(self) -> None:
        self._act_sum: dict[str, torch.Tensor] = {}  # act name -> summed [mean, std, dead fraction]
        self._act_count: dict[str, int] = {}
        self._grad_sum = None  # [layer norms..., total], summed over sampled steps
        self._grad_count = 0
        self._last_grads: list[torch.Tensor] = []

    def _setup(self, model: nn.Module) -> None:
        if model is self._model:
            return
        self._remove_hooks()
        self._model, self._layers, self._acts = model, layer_names(model), activation_names(model)
        real = {id(m): name for name, m in model.named_modules()}
        self.module_names = {name: real[id(m)] for name, m in self._layers + self._acts}
        self._reset()

    # hooks ----------------------------------------------------------------------------------

    def _hook(self, name: str, dead: bool):
        def hook(module, inputs, output):
            if not isinstance(output, torch.Tensor) or torch.is_inference_mode_enabled():
                return
            with torch.no_grad():
                o = output.detach().float()
                frac = o.new_zeros(())
                if dead:
                    units = o.reshape(1, -1) if o.dim() < 2 else o.transpose(0, 1).reshape(o.shape[1], -1)
                    frac = 1.0 - (units > 0).any(dim=1).float().mean()
                stats = torch.stack([o.mean(), o.std(), frac])
                self._act_sum[name] = self._act_sum[name] + stats if name in self._act_sum else stats
                self._act_count[name] = self._act_count.get(name, 0) + 1
        return hook

    def _remove_hooks(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def on_fit_start(self, engine: Any) -> None:
        self._first = True
        if self.enabled:
            self._setup(engine.model)

    def on_step_start(self, engine: Any, step: int) -> None:
        self._remove_hooks()
        self._sampling = self._first or step % self.every_n_steps == 0
        self._first = False
        if not (self._sampling and self.activations) or torch.is_inference_mode_enabled():
            return
        self._setup(engine.model)
        self._handles = [m.register_forward_hook(self._hook(name, _is_a(m, DEAD_TYPES)))
                         for name, m in self._acts]

    def on_after_backward(self, engine: Any, step: int) -> None:
        self._remove_hooks()
        if not (self._sampling and (self.gradients or self.histograms)):
            return
        self._setup(engine.model)
        with torch.no_grad():
            grads = [p.grad.detach() for p in engine.model.parameters() if p.grad is not None]
            if not grads:
                return
            total = torch.linalg.vector_norm(torch.stack([g.norm().float() for g in grads]))
            norms = [m.weight.grad.norm().float().to(total.device) if m.weight.grad is not None
                     else total.new_zeros(()) for _, m in self._layers]
            row = torch.stack(norms + [total])
            self._grad_sum = row if self._grad_sum is None else self._grad_sum + row
            self._grad_count += 1
            if self.histograms:
                self._last_grads = [m.weight.grad.detach().clone() if m.weight.grad is not None else None
                                    for _, m in self._layers]

    def on_epoch_end(self, engine: Any, epoch: int, metrics: dict[str, float]) -> None:
        self._remove_hooks()
        if not self.enabled:
            return
        self._setup(engine.model)
        summary: dict[str, list] = {"layers": [n for n, _ in self._layers],
                                    "activations": [n for n, _ in self._acts]}
        with torch.no_grad():
            if self.weight_norms:
                total = torch.linalg.vector_norm(torch.stack([p.detach().norm().float()
                                                              for p in engine.model.parameters()]))
                row = [m.weight.detach().norm().float().to(total.device) for _, m in self._layers]
                values = torch.stack(row + [total]).tolist()
                for (name, _), v in zip(self._layers, values):
                    metrics[f"diag/weight_norm/{name}"] = v
                metrics["diag/weight_norm/total"] = values[-1]
                summary["weight_norm"] = values[:-1]
                weights = torch.cat([m.weight.detach().flatten().float() for _, m in self._layers])
                metrics["diag/sparsity/total"] = (weights.abs() < SPARSE).float().mean().item()
            if self.activations and self._act_count:
                means = {n: (s / self._act_count[n]).tolist() for n, s in self._act_sum.items()}
                summary.update(act_mean=[], act_std=[], dead_frac=[])
                for name, m in self._acts:
                    mean, std, dead = means.get(name, (math.nan,) * 3)
                    dead = dead if _is_a(m, DEAD_TYPES) else math.nan
                    for key, v in (("act_mean", mean), ("act_std", std), ("dead_frac", dead)):
                        summary[key].append(v)
                    if name in means:
                        metrics[f"diag/act_mean/{name}"], metrics[f"diag/act_std/{name}"] = mean, std
                        if _is_a(m, DEAD_TYPES):
                            metrics[f"diag/dead_frac/{name}"] = dead
            if self.gradients and self._grad_count:
                values = (self._grad_sum / self._grad_count).tolist()
                for (name, _), v in zip(self._layers, values):
                    metrics[f"diag/grad_norm/{name}"] = v
                metrics["diag/grad_norm/total"] = values[-1]
                summary["grad_norm"] = values[:-1]
            if self.histograms:
                writer = engine.logger.writer
                for name, m in self._layers:
                    writer.add_histogram(f"weights/{name}", m.weight.detach(), epoch)
                for (name, _), g in zip(self._layers, self._last_grads if self._grad_count else []):
                    if g is not None:
                        writer.add_histogram(f"gradients/{name}", g, epoch)
        for part, keys in (("activations", ("act_mean", "act_std", "dead_frac")), ("gradients", ("grad_norm",))):
            if keys[0] in summary:
                self.sampled_epoch[part] = epoch
            else:  # no sampled step this epoch: the depth figures show the last epoch that had some
                summary.update({k: self._summary[k] for k in keys if k in self._summary})
        self._summary = summary
        self._reset()

    def on_fit_end(self, engine: Any) -> None:
        self._remove_hooks()
        self._sampling = False

    def summary(self) -> dict[str, list]:
        """The last epoch's values in depth order: "layers" and "activations" (names), "weight_norm" and
        "grad_norm" (aligned with layers), "act_mean", "act_std", "dead_frac" (aligned with activations;
        nan where not measured or not ReLU-like). Parts that are off are omitted; sampled statistics
        come from the last epoch that had a sampled step (`sampled_epoch`)."""
        return {k: list(v) for k, v in self._summary.items()}
