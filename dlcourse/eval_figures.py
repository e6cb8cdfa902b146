"""The figures of `dlcourse.evaluate`: confusion matrix, reliability diagram, confident mistakes;
binary runs: ROC and precision-recall curves; regression runs: residuals and the fit."""
from __future__ import annotations

from pathlib import Path

from dlcourse.viz import headless  # noqa: E402

headless()
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def confusion_figure(matrix: np.ndarray, classes: list[str], path: Path, split: str) -> Path:
    """Rows: true class, normalised to 1 (recall on the diagonal); counts written in the cells."""
    rows = matrix.sum(1, keepdims=True)
    share = np.divide(matrix, rows, out=np.zeros_like(matrix, dtype=float), where=rows > 0)
    n = len(classes)
    size = min(14, 2.5 + 0.55 * n)
    fig, ax = plt.subplots(figsize=(size + 1.2, size))
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), classes, rotation=45 if max(map(len, classes)) > 3 else 0, ha="right" if max(map(len, classes)) > 3 else "center")
    ax.set_yticks(range(n), classes)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    if n <= 20:
        for i in range(n):
            for j in range(n):
                if matrix[i, j]:
                    ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=8,
                            color="white" if share[i, j] > 0.5 else "black")
    fig.colorbar(image, ax=ax, fraction=0.046, label="share of the true class")
    acc = np.trace(matrix) / max(matrix.sum(), 1)
    ax.set_title(f"confusion matrix, {split} split ({matrix.sum()} images, accuracy {acc:.4f})", fontsize=10)
    return _save(fig, path)


def reliability_figure(bins: list[dict], ece: float, path: Path, split: str) -> Path:
    """Accuracy against confidence per confidence bin; a calibrated model lies on the diagonal."""
    fig, (ax, hist) = plt.subplots(2, 1, figsize=(5.5, 6.2), height_ratios=[3, 1], sharex=True)
    width = bins[0]["high"] - bins[0]["low"] if bins else 1 / 15
    centers = [(b["low"] + b["high"]) / 2 for b in bins]
    ax.bar(centers, [b["accuracy"] for b in bins], width=width * 0.95, color="C0", label="accuracy")
    ax.plot([0, 1], [0, 1], "--", color="gray", label="perfect calibration")
    ax.plot(centers, [b["confidence"] for b in bins], "o", color="C3", ms=4, label="mean confidence")
    ax.set_ylabel("accuracy in the bin")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8, loc="upper left")
    ax.set_title(f"reliability, {split} split (expected calibration error {ece:.4f})", fontsize=10)
    hist.bar(centers, [b["count"] for b in bins], width=width * 0.95, color="gray")
    hist.set_yscale("log")
    hist.set_xlabel("confidence (top-class probability)")
    hist.set_ylabel("images")
    hist.set_xlim(0, 1)
    return _save(fig, path)


def errors_figure(images: torch.Tensor, labels: torch.Tensor, probs: torch.Tensor, classes: list[str],
                  path: Path, split: str) -> Path:
    """The most confidently misclassified images with their true and predicted classes."""
    n = len(images)
    cols = min(8, n)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(1.7 * cols, 1.95 * rows + 0.5), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, img, y, p in zip(axes.flat, images, labels, probs):
        picture = img.permute(1, 2, 0).numpy()
        ax.imshow(picture[..., 0] if picture.shape[-1] == 1 else picture, cmap="gray" if picture.shape[-1] == 1 else None)
        pred = int(p.argmax())
        ax.set_title(f"true {classes[int(y)]}\npred {classes[pred]} ({float(p[pred]):.2f})", fontsize=7)
    fig.suptitle(f"most confident mistakes, {split} split", fontsize=10)
    return _save(fig, path)


def roc_pr_figure(labels: np.ndarray, score: np.ndarray, classes: list[str], path: Path, split: str) -> Path:
    """A binary run's ROC curve and precision-recall curve of p(class 1) (scikit-learn's curves)."""
    from sklearn.metrics import auc, average_precision_score, precision_recall_curve, roc_curve

    fpr, tpr, _ = roc_curve(labels, score)
    precision, recall, _ = precision_recall_curve(labels, score)
    positive = float(np.mean(labels))
    fig, (roc, pr) = plt.subplots(1, 2, figsize=(9, 4.3))
    roc.plot(fpr, tpr, color="C0", lw=2, label=f"model (AUC {auc(fpr, tpr):.3f})")
    roc.plot([0, 1], [0, 1], "--", color="gray", label="chance")
    roc.set_xlabel("false positive rate")
    roc.set_ylabel("true positive rate (recall)")
    roc.set_title("ROC curve", fontsize=10)
    pr.step(recall, precision, where="post", color="C1", lw=2,
            label=f"model (AP {average_precision_score(labels, score):.3f})")
    pr.axhline(positive, ls="--", color="gray", label=f"chance ({positive:.2f} positives)")
    pr.set_xlabel("recall")
    pr.set_ylabel("precision")
    pr.set_title("precision-recall curve", fontsize=10)
    for ax in (roc, pr):
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower left" if ax is pr else "lower right")
    fig.suptitle(f"{split} split: positive class {classes[1] if len(classes) > 1 else 1!r}, "
                 f"{len(labels)} samples", fontsize=10)
    return _save(fig, path)


def residual_figure(targets: np.ndarray, predicted: np.ndarray, path: Path, split: str) -> Path:
    """Residuals (target - prediction) against the prediction, and their histogram."""
    residual = (targets - predicted).ravel()
    fig, (ax, hist) = plt.subplots(1, 2, figsize=(9, 4), width_ratios=[2, 1])
    ax.scatter(predicted.ravel(), residual, s=10, alpha=0.6, color="C0", label="test samples")
    ax.axhline(0, color="gray", ls="--", label="no error")
    ax.set_xlabel("prediction")
    ax.set_ylabel("residual (target - prediction)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    hist.hist(residual, bins=30, color="C0", orientation="horizontal")
    hist.axhline(0, color="gray", ls="--")
    hist.set_xlabel("samples")
    hist.set_ylabel("residual")
    rmse = float(np.sqrt(np.mean(residual ** 2)))
    fig.suptitle(f"residuals, {split} split ({len(residual)} values, RMSE {rmse:.4f})", fontsize=10)
    return _save(fig, path)


def fit_figure(x, targets: np.ndarray, predicted: np.ndarray, path: Path, split: str) -> Path:
    """One input feature: targets and predictions against x. Otherwise prediction against target."""
    fig, ax = plt.subplots(figsize=(6, 4.5))
    if x is not None:
        order = np.argsort(x[:, 0])
        ax.scatter(x[:, 0], targets[:, 0], s=10, alpha=0.6, color="C0", label="target")
        ax.plot(x[order, 0], predicted[order, 0], color="C3", lw=2, label="model")
        ax.set_xlabel("input x")
        ax.set_ylabel("y")
        ax.set_title(f"fit, {split} split: the model's prediction against x", fontsize=10)
    else:
        low, high = float(min(targets.min(), predicted.min())), float(max(targets.max(), predicted.max()))
        ax.scatter(targets.ravel(), predicted.ravel(), s=10, alpha=0.6, color="C0", label="samples")
        ax.plot([low, high], [low, high], "--", color="gray", label="perfect prediction")
        ax.set_xlabel("target")
        ax.set_ylabel("prediction")
        ax.set_title(f"fit, {split} split: prediction against target", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)
