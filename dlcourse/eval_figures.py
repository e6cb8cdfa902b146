"""The figures of `dlcourse.evaluate`: confusion matrix, reliability diagram, confident mistakes."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
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
