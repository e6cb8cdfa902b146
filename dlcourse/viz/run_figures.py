"""The figures every run leaves in `figures/` (and in TensorBoard, under `figures/`): learning
curves; for 2-D inputs the decision boundary over the data (also every `figures.every_n_epochs`
epochs into TensorBoard); for 1-D regression the fitted function over the data, with each hidden
unit's contribution for a one-hidden-layer net; with diagnostics, the per-layer statistics
against depth."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import nn

from dlcourse.callbacks import Callback
from dlcourse.runlog import add_png
from dlcourse.viz import course


# TensorBoard sorts tag groups by name: pictures under "viz/" come after the train/ and val/ curves
TAG = "viz"


class RunFigures(Callback):
    def __init__(self, run_dir: Path, title: str, every_n_epochs: Optional[int] = None, diagnostics=None,
                 target=None):
        self.dir = Path(run_dir) / "figures"
        self.title, self.every = title, every_n_epochs
        self.diagnostics = diagnostics  # a dlcourse.diagnostics.Diagnostics, for the depth profile
        self.target = target  # regression: the noise-free function y = f(x) (numpy), drawn dashed

    # what the data allow ---------------------------------------------------------------------
    @staticmethod
    def _inputs(engine) -> int:
        shape = engine.data.image_shape
        return shape[0] if len(shape) == 1 else 0  # vector inputs: their dimension; images: 0

    def on_epoch_end(self, engine, epoch: int, metrics: dict) -> None:
        if self.every and epoch % self.every == 0 and self._inputs(engine) == 2 and engine.task.name != "regression":
            image = course.decision_boundary_image(self._boundary_panel(engine, f"epoch {epoch}", steps=100))
            engine.logger.writer.add_image(f"{TAG}/decision_boundary", image, epoch, dataformats="HWC")

    # the figures ------------------------------------------------------------------------------
    @torch.no_grad()
    def _predict(self, engine, raw: np.ndarray) -> torch.Tensor:
        x = torch.as_tensor(raw, dtype=torch.float32, device=engine.device)
        was_training = engine.model.training
        engine.model.eval()
        try:
            return engine.model(engine.data.normalize(x.clone())).float().cpu()
        finally:
            engine.model.train(was_training)

    def _boundary_panel(self, engine, title: str, steps: int = 200) -> dict:
        x = engine.data.train.images.cpu().numpy()
        y = engine.data.train.labels.cpu().numpy()
        xx, yy, points = course.boundary_grid(x, steps=steps)
        out = self._predict(engine, points)
        if engine.task.name == "binary":
            scores = torch.sigmoid(out.view(-1))
        elif out.shape[1] == 2:
            scores = out.softmax(1)[:, 1]
        else:
            scores = out.argmax(1)
        accuracy = (engine.task.predict(self._predict(engine, x)).numpy() == y).mean()
        return {"x": x, "y": y, "xx": xx, "yy": yy, "scores": scores.numpy().reshape(steps, steps),
                "title": f"{title} — train acc {accuracy:.0%}"}

    def final(self, engine) -> list[Path]:
        """Draw the figures of the finished run (with the weights the test set is scored with)."""
        paths = [course.learning_curves(engine.state.history, self.dir / "learning_curves.png", self.title,
                                        best_epoch=engine.state.best_epoch or None)]
        inputs = self._inputs(engine)
        if inputs == 2 and engine.task.name != "regression":
            paths.append(course.decision_boundaries([self._boundary_panel(engine, "decision boundary")],
                                                    self.dir / "decision_boundary.png", self.title))
        if inputs == 1 and engine.task.name == "regression" and engine.task.num_outputs == 1:
            paths.append(self._regression(engine))
        if self.diagnostics is not None:
            paths.extend(self._depth(engine))
        for path in paths[1:]:  # the learning curves are TensorBoard's own scalar charts already
            add_png(engine.logger.writer, f"{TAG}/{path.stem}", path, engine.state.epoch)
        return paths

    def _regression(self, engine) -> Path:
        x = engine.data.train.images.cpu().numpy()[:, 0]
        y = engine.data.train.labels.cpu().numpy()[:, 0]
        margin = 0.1 * (x.max() - x.min())
        grid = np.linspace(x.min() - margin, x.max() + margin, 400, dtype=np.float32)
        out, contributions = hidden_contributions(engine.model, lambda: self._predict(engine, grid[:, None]))
        pred = out[:, 0].numpy()
        target = self.target(grid) if self.target is not None else None
        return course.regression_fit(x, y, grid, pred, self.dir / "regression_fit.png", self.title,
                                     target=target, contributions=contributions)

    def _depth(self, engine) -> list[Path]:
        s = self.diagnostics.summary()
        paths = []

        def when(part: str) -> str:
            epoch = self.diagnostics.sampled_epoch.get(part)
            return "last epoch" if epoch in (None, engine.state.epoch) else f"epoch {epoch}, the last sampled"

        if "act_std" in s:
            paths.append(course.depth_profile(s["activations"], {"activation std": s["act_std"],
                                                                  "activation mean": [abs(v) for v in s["act_mean"]]},
                                              self.dir / "activations_by_depth.png",
                                              f"{self.title}\nactivation statistics by depth ({when('activations')})",
                                              ylabel="value (|mean|, std)"))
        if "grad_norm" in s:
            paths.append(course.depth_profile(s["layers"], {"gradient norm": s["grad_norm"],
                                                            "weight norm": s.get("weight_norm", [])} if "weight_norm" in s
                                              else {"gradient norm": s["grad_norm"]},
                                              self.dir / "gradients_by_depth.png",
                                              f"{self.title}\nweight-gradient norm by depth ({when('gradients')})",
                                              ylabel="norm"))
        return paths


def hidden_contributions(model: nn.Module, run) -> tuple[torch.Tensor, Optional[np.ndarray]]:
    """`run()`'s output and, for a net with one hidden layer and one output, each hidden unit's term
    w_j * a_j(x) of that output [M, H] (their sum plus the output bias is the fit), recorded during
    the same pass; None for other architectures."""
    acts = [m for m in model.modules() if not list(m.children()) and not isinstance(m, (nn.Linear, nn.Flatten, nn.Dropout))]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if len(linears) != 2 or len(acts) != 1 or linears[-1].out_features != 1:
        return run(), None
    seen = {}
    hook = acts[0].register_forward_hook(lambda mod, args, out: seen.update(a=out.detach().float().cpu()))
    try:
        out = run()
    finally:
        hook.remove()
    return out, (seen["a"] * linears[-1].weight.detach().float().cpu()[0]).numpy()


