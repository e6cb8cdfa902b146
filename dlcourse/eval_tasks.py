"""What `scripts/evaluate.py` computes and draws for each task (dlcourse/tasks.py): classification
(per-class report, confusion matrix, calibration, confident mistakes), binary (the same for two
classes, plus ROC and precision-recall curves) and regression (MSE, MAE, R², residual and fit
plots). Metrics come from scikit-learn; `ClassReport.outputs` are the model's raw outputs."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

CALIBRATION_BINS = 15


def calibration(confidence: np.ndarray, correct: np.ndarray, bins: int = CALIBRATION_BINS) -> dict:
    """Reliability-diagram bins and the expected calibration error (|accuracy - confidence|
    weighted by the share of predictions in each equal-width confidence bin)."""
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    rows, ece = [], 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            acc, conf = correct[mask].mean(), confidence[mask].mean()
            ece += mask.mean() * abs(acc - conf)
            rows.append({"low": edges[b], "high": edges[b + 1], "count": int(mask.sum()),
                         "accuracy": float(acc), "confidence": float(conf)})
    return {"ece": float(ece), "bins": rows}


def metrics(probs: torch.Tensor, labels: torch.Tensor, classes: list[str]) -> dict:
    """Loss, accuracy, top-5, per-class precision/recall/F1 and their macro averages, the
    confusion matrix and the calibration, computed with scikit-learn."""
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support, top_k_accuracy_score

    y, p = labels.numpy(), probs.numpy()
    pred = p.argmax(1)
    ids = list(range(len(classes)))
    precision, recall, f1, support = precision_recall_fscore_support(y, pred, labels=ids, zero_division=0)
    out = {"loss": float(F.nll_loss(probs.clamp_min(1e-12).log(), labels)), "acc": float((pred == y).mean()),
           "n": int(len(y)),
           "precision_macro": float(precision.mean()), "recall_macro": float(recall.mean()),
           "f1_macro": float(f1.mean()),
           "per_class": {c: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                             "support": int(support[i])} for i, c in enumerate(classes)},
           "confusion_matrix": confusion_matrix(y, pred, labels=ids).tolist()}
    if len(classes) >= 10:
        out["acc5"] = float(top_k_accuracy_score(y, p, k=5, labels=ids))
    cal = calibration(p.max(1), (pred == y).astype(float))
    out["ece"], out["calibration"] = cal["ece"], cal["bins"]
    return out


class ClassReport:
    """Classification (and, through `Rebuilt.class_logits`, binary) runs: class probabilities."""

    keys = ("acc", "loss", "acc5", "f1_macro", "ece")

    def probabilities(self, run, out: torch.Tensor) -> torch.Tensor:
        return F.softmax(run.class_logits(out).float(), dim=1)

    def metrics(self, run, probs: torch.Tensor, labels: torch.Tensor) -> dict:
        return metrics(probs, labels, run.classes)

    def files(self, run, result: dict, probs: torch.Tensor, labels: torch.Tensor, loader, out: Path,
              split: str, errors: int) -> list[Path]:
        from dlcourse.eval_figures import confusion_figure, errors_figure, reliability_figure

        matrix = np.array(result["confusion_matrix"])
        header = "true\\predicted," + ",".join(run.classes)
        rows = [f"{c}," + ",".join(map(str, r)) for c, r in zip(run.classes, matrix)]
        (out / "confusion_matrix.csv").write_text("\n".join([header, *rows]) + "\n")
        figures = [confusion_figure(matrix, run.classes, out / "confusion_matrix.png", split),
                   reliability_figure(result["calibration"], result["ece"], out / "reliability.png", split)]
        wrong = _confident_errors(probs, labels, errors)
        if len(wrong) and run.images:
            images = torch.stack([_image(loader, int(i)) for i in wrong])
            figures.append(errors_figure(images, labels[wrong], probs[wrong], run.classes, out / "errors.png", split))
        return figures

    def lines(self, result: dict, split: str) -> list[str]:
        head = f"{split}: {result['n']} samples  acc {result['acc']:.4f}  loss {result['loss']:.4f}"
        if "acc5" in result:
            head += f"  acc5 {result['acc5']:.4f}"
        for key, name in (("roc_auc", "ROC AUC"), ("average_precision", "average precision")):
            if key in result:
                head += f"  {name} {result[key]:.4f}"
        width = max(len(c) for c in result["per_class"])
        table = [f"{'class':<{width}}  precision  recall     f1  support"]
        table += [f"{name:<{width}}  {m['precision']:9.4f}  {m['recall']:6.4f}  {m['f1']:.4f}  {m['support']:7d}"
                  for name, m in result["per_class"].items()]
        return [head + f"  macro F1 {result['f1_macro']:.4f}  ECE {result['ece']:.4f}", *table]


class BinaryReport(ClassReport):
    """One logit: the two-class report of p(class 1) = sigmoid(logit), with ROC and PR curves."""

    keys = (*ClassReport.keys, "roc_auc", "average_precision")

    def metrics(self, run, probs: torch.Tensor, labels: torch.Tensor) -> dict:
        from sklearn.metrics import average_precision_score, roc_auc_score

        result = super().metrics(run, probs, labels)
        y, score = labels.numpy(), probs[:, 1].numpy()
        both = len(np.unique(y)) == 2  # both curves need positives and negatives
        result["roc_auc"] = float(roc_auc_score(y, score)) if both else None
        result["average_precision"] = float(average_precision_score(y, score)) if both else None
        return result

    def files(self, run, result, probs, labels, loader, out, split, errors) -> list[Path]:
        from dlcourse.eval_figures import roc_pr_figure

        figures = super().files(run, result, probs, labels, loader, out, split, errors)
        if result["roc_auc"] is not None:
            figures.append(roc_pr_figure(labels.numpy(), probs[:, 1].numpy(), run.classes, out / "roc_pr.png", split))
        return figures

    def lines(self, result: dict, split: str) -> list[str]:
        return super().lines({k: v for k, v in result.items() if v is not None}, split)


class RegressionReport:
    """Real-valued outputs: MSE, MAE and R² (averaged over the outputs, like training), residuals, fit."""

    keys = ("loss", "mse", "mae", "r2")

    def probabilities(self, run, out: torch.Tensor) -> torch.Tensor:
        return out.float()

    def metrics(self, run, values: torch.Tensor, targets: torch.Tensor) -> dict:
        from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

        y, p = targets.double().numpy(), values.double().numpy()
        return {"mse": float(mean_squared_error(y, p)), "mae": float(mean_absolute_error(y, p)),
                "r2": float(r2_score(y, p)), "n": int(len(y))}

    def files(self, run, result, values, targets, loader, out, split, errors) -> list[Path]:
        from dlcourse.eval_figures import fit_figure, residual_figure

        x = run.raw(torch.cat([b for b, _ in loader]).to(run.device)).cpu() if len(run.image_shape) == 1 else None
        np.savetxt(out / "predictions.csv", np.hstack([targets.numpy(), values.numpy()]), delimiter=",",
                   header=",".join([*(f"target_{i}" for i in range(targets.shape[1])),
                                    *(f"predicted_{i}" for i in range(values.shape[1]))]), comments="")
        figures = [residual_figure(targets.numpy(), values.numpy(), out / "residuals.png", split)]
        figures.append(fit_figure(x.numpy() if x is not None and x.shape[1] == 1 else None, targets.numpy(),
                                  values.numpy(), out / "fit.png", split))
        return figures

    def lines(self, result: dict, split: str) -> list[str]:
        return [f"{split}: {result['n']} samples  loss {result['loss']:.4f}  MSE {result['mse']:.4f}  "
                f"MAE {result['mae']:.4f}  R² {result['r2']:.4f}"]


REPORTS = {"classification": ClassReport(), "binary": BinaryReport(), "regression": RegressionReport()}


def _confident_errors(probs: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    conf, pred = probs.max(1)
    wrong = (pred != labels).nonzero().flatten()
    return wrong[conf[wrong].argsort(descending=True)[:k]]


def _image(loader, index: int) -> torch.Tensor:
    """Image `index` of a loader in [0, 1], before normalisation."""
    if hasattr(loader, "images"):  # in memory: uint8
        return loader.images[index].to(torch.float32).div(255).cpu()
    return loader.loader.dataset[index][0].as_subclass(torch.Tensor)  # image folder: the evaluation transform
