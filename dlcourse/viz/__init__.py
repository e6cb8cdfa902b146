"""Pictures of what a network learned: first-layer filters, feature maps, attributions (captum),
Grad-CAM and class-model images — `visualize(run, what)`, behind `scripts/visualize.py RUN WHAT`.
Each writes `<run>/viz/<what>.png` and the same image into TensorBoard (`<run>/viz/`). They are for
image runs (classification, and binary through the signed logit); runs on feature vectors are
refused with a pointer to `scripts/evaluate.py`. The run is rebuilt by `dlcourse.rebuild`: its
inputs are normalised with the statistics stored in its checkpoint."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch

from dlcourse.errors import ConfigError

def headless() -> None:
    """Draw into files (matplotlib's Agg backend), but leave an IPython or Jupyter session its own backend:
    every figure of a run is closed once saved, so none shows up in a notebook unasked."""
    import sys

    import matplotlib

    if "IPython" not in sys.modules:
        matplotlib.use("Agg")


WHAT = ("filters", "features", "saliency", "gradcam", "class_model")


def visualize(run_path: Path | str, what: str, images: int = 6, index: int = 0, layer: Optional[str] = None,
              steps: int = 200, device: str = "cpu", model: Optional[torch.nn.Module] = None) -> tuple[Path, object]:
    """Draw `what` for the run (a run directory or a checkpoint); returns (PNG path, its numbers)."""
    from dlcourse.rebuild import rebuild
    from dlcourse.viz import pictures
    from dlcourse.viz.common import grid_figure

    if what not in WHAT:
        raise ConfigError(f"{what!r} is not a picture this tool draws: choose one of {', '.join(WHAT)}.")
    run = rebuild(run_path, device=device, model=model)
    if not run.images or run.task.name == "regression":
        raise ConfigError(vector_refusal(what, run))
    model, data = run.model, run.data
    forward = run.class_scores  # a binary run's one logit as two class scores
    for p in model.parameters():
        p.requires_grad_(False)  # attributions need gradients of the input only
    out_dir = run.run_dir / "viz"
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{what}.png"
    shape = tuple(run.image_shape)
    test = data.test
    if index >= test.num_samples:
        raise ConfigError(f"--index {index}: the test split has {test.num_samples} images.")
    raw = test.images[index:index + images].to(torch.float32).div(255).to(run.device)
    x = run.inputs(raw)
    labels = test.labels[index:index + images]
    with torch.no_grad():
        pred = forward(x).argmax(1).cpu()
    titles = [f"true {run.classes[int(t)]}, pred {run.classes[int(p)]}" for t, p in zip(labels, pred)]
    if what == "filters":
        result = pictures.filters(model, shape, path)
    elif what == "features":
        result = pictures.feature_maps(model, x[0], raw[0], layer, path)
    elif what == "saliency":
        result = pictures.saliency(forward, x.requires_grad_(), raw, titles, path)
    elif what == "gradcam":
        result = pictures.gradcam(model, x.requires_grad_(), raw, titles, path, layer, forward=forward)
    else:
        model.cpu()
        pics, start, end = pictures.class_model(run.class_scores, shape, len(run.classes),
                                                run.mean.cpu(), run.std.cpu(), steps=steps)
        grid_figure(pics, [f"{c}\np={float(p):.3f}" for c, p in zip(run.classes, end)],
                    f"class-model images: gradient ascent on each class score ({steps} steps); p = the "
                    "model's probability for the class", path, cols=min(10, len(pics)), size=1.6)
        result = {"images": pics, "start": start, "end": end}
    _to_tensorboard(out_dir, what, path)
    return path, result


def vector_refusal(what: str, run) -> str:
    """Why `what` is not drawn for a run on feature vectors, and what shows that run instead."""
    shows = {"binary": "ROC and precision-recall curves, the confusion matrix and calibration",
             "classification": "the confusion matrix, per-class report and calibration",
             "regression": "the fit, the residuals and MSE / MAE / R²"}[run.task.name]
    return (f"visualize {what}: this {run.task.name} run's inputs are vectors of {run.image_shape[0]} feature(s), "
            f"not images, and {', '.join(WHAT)} are pictures of image models. For this run, "
            f"`python scripts/evaluate.py {run.run_dir}` draws {shows}; its training wrote the decision "
            "boundary (2-D inputs) or the regression fit into figures/ (figures.enabled=true).")


def _to_tensorboard(out_dir: Path, what: str, png: Path) -> None:
    from dlcourse.runlog import tensorboard_pictures

    tensorboard_pictures(out_dir, {f"viz/{what}": png})
