"""Course figures: each writes a PNG of the expected pixel size, with the axes, scales and marks it promises."""
from __future__ import annotations

import struct

import numpy as np
import pytest

from dlcourse.viz import course


def png_size(path) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk, after checking the 8-byte signature."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


@pytest.fixture
def drawn(monkeypatch):
    """What each saved figure looked like: its axes' y-scales, labels, titles and legend texts."""
    seen = []
    save = course._save

    def record(fig, path):
        axes = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
        seen.append({"yscale": [ax.get_yscale() for ax in axes], "xlabel": [ax.get_xlabel() for ax in axes],
                     "ylabel": [ax.get_ylabel() for ax in axes], "title": [ax.get_title() for ax in axes],
                     "legend": [[t.get_text() for t in ax.get_legend().get_texts()] if ax.get_legend() else []
                                for ax in axes],
                     "suptitle": fig._suptitle.get_text() if fig._suptitle else "", "patches": axes[0].patches})
        return save(fig, path)

    monkeypatch.setattr(course, "_save", record)
    return seen


def test_learning_curves_classification_with_sparse_validation(tmp_path, drawn):
    history = [{"epoch": e, "train/loss": 2.0 / e, "train/acc": 0.5 + e / 40, "lr": 0.1} for e in range(1, 11)]
    for row in history[1::2]:
        row.update({"val/loss": row["train/loss"] * 1.1, "val/acc": row["train/acc"] - 0.05})
    path = course.learning_curves(history, tmp_path / "deep/dir/curves.png", "MLP on Fashion-MNIST", best_epoch=8)
    assert path == tmp_path / "deep/dir/curves.png"
    assert png_size(path) == (1100, 400)
    fig = drawn[-1]
    assert fig["xlabel"] == ["epoch", "epoch"] and fig["ylabel"][1] == "accuracy (%)"
    assert fig["yscale"][0] == "linear"  # 2.0 .. 0.2 is one decade
    assert fig["legend"][0] == ["train loss", "val loss", "best epoch 8"]
    assert fig["legend"][1] == ["train accuracy", "val accuracy", "best epoch 8"]
    assert fig["suptitle"] == "MLP on Fashion-MNIST"


def test_learning_curves_without_validation_uses_log_loss_over_decades(tmp_path, drawn):
    history = [{"epoch": e, "train/loss": 10.0 ** -e} for e in range(1, 6)]
    path = course.learning_curves(history, tmp_path / "train_only.png", "loss only")
    assert png_size(path) == (600, 400)
    assert drawn[-1]["yscale"] == ["log"] and drawn[-1]["legend"] == [["train loss"]]


def test_learning_curves_regression_shows_r2(tmp_path, drawn):
    history = [{"epoch": e, "train/loss": 1 / e, "val/loss": 1.2 / e, "val/mse": 1.2 / e, "val/mae": 0.9 / e,
                "val/r2": 1 - 0.5 / e} for e in range(1, 8)]
    path = course.learning_curves(history, tmp_path / "reg.png", "regression")
    assert png_size(path) == (1100, 400)
    assert drawn[-1]["ylabel"][1].startswith("R²") and drawn[-1]["legend"][1] == ["val R²"]


def test_boundary_grid_covers_the_data_plus_margin():
    x = np.array([[-1.0, 2.0], [3.0, -4.0], [0.5, 0.0]])
    xx, yy, points = course.boundary_grid(x, steps=50, margin=0.25)
    assert xx.shape == yy.shape == (50, 50) and points.shape == (2500, 2)
    assert points[:, 0].min() == pytest.approx(-1.25) and points[:, 0].max() == pytest.approx(3.25)
    assert points[:, 1].min() == pytest.approx(-4.25) and points[:, 1].max() == pytest.approx(2.25)
    np.testing.assert_array_equal(points[:, 0].reshape(50, 50), xx)  # scores.reshape(steps, steps) lines up


def _panels():
    rng = np.random.default_rng(0)
    x2 = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=float)
    xx, yy, pts = course.boundary_grid(x2, steps=60)
    prob = 1 / (1 + np.exp(-10 * (pts.sum(1) - 1.5)))  # AND-like, float probability of class 1
    binary = {"x": x2, "y": np.array([0, 0, 0, 1]), "xx": xx, "yy": yy, "scores": prob.reshape(60, 60),
              "title": "AND — acc 100%"}
    centres = np.array([[0, 2], [-2, -1], [2, -1]], dtype=float)
    x3 = np.concatenate([c + 0.4 * rng.standard_normal((20, 2)) for c in centres])
    y3 = np.repeat(np.arange(3), 20)
    xx3, yy3, pts3 = course.boundary_grid(x3, steps=80)
    cls = ((pts3[:, None, :] - centres) ** 2).sum(-1).argmin(1)  # int class index
    multi = {"x": x3, "y": y3, "xx": xx3, "yy": yy3, "scores": cls.reshape(80, 80), "title": "3 blobs — acc 100%"}
    return binary, multi


def test_decision_boundaries_binary_and_multiclass(tmp_path, drawn):
    binary, multi = _panels()
    path = course.decision_boundaries([binary, multi], tmp_path / "db.png", "decision boundaries")
    assert png_size(path) == (900, 420)
    fig = drawn[-1]
    assert fig["title"] == ["AND — acc 100%", "3 blobs — acc 100%"]
    assert fig["xlabel"] == ["x₁", "x₁"] and fig["ylabel"] == ["x₂", "x₂"]
    assert fig["legend"][1] == ["class 0", "class 1", "class 2"]
    wrapped = course.decision_boundaries([binary, multi] * 3, tmp_path / "db6.png", "six")
    assert png_size(wrapped) == (1800, 840)  # 4 columns, then a second row


def test_decision_boundary_image_is_rgb_uint8():
    binary, multi = _panels()
    for panel in (binary, multi):
        image = course.decision_boundary_image(panel)
        assert image.dtype == np.uint8 and image.shape == (320, 320, 3)
        assert image.std() > 10  # not a blank canvas


def test_regression_fit_with_and_without_contributions(tmp_path, drawn):
    rng = np.random.default_rng(1)
    x = rng.uniform(-3, 3, 40)
    y = np.sin(x) + 0.1 * rng.standard_normal(40)
    grid = np.linspace(-3, 3, 100)
    contrib = np.stack([w * np.tanh(grid - b) for w, b in [(0.8, -1.5), (-0.6, 0.0), (0.9, 1.5)]], 1)
    path = course.regression_fit(x, y, grid, contrib.sum(1), tmp_path / "fit.png", "sin(x), 3 tanh units",
                                 target=np.sin(grid), contributions=contrib)
    assert png_size(path) == (700, 750)
    fig = drawn[-1]
    assert fig["xlabel"] == ["x", "x"] and fig["ylabel"][0] == "y"
    assert fig["legend"][0] == ["data", "true function", "network fit"]
    assert "their sum + bias is the fit" in fig["title"][1]
    assert png_size(course.regression_fit(x, y, grid, np.sin(grid), tmp_path / "fit1.png", "fit")) == (700, 450)


def test_depth_profile_log_scale_only_for_positive_values(tmp_path, drawn):
    layers = [f"fc{i}" for i in range(1, 6)]
    series = {"xavier: gradient norm": [1e-1, 1e-2, 1e-3, 1e-4, 1e-5], "he: gradient norm": [1, 1, 0.9, 1, 1.1]}
    path = course.depth_profile(layers, series, tmp_path / "depth.png", "gradient norm by depth", "‖grad‖")
    assert png_size(path) == (600, 450)
    assert drawn[-1]["yscale"] == ["log"] and drawn[-1]["legend"][0] == list(series)
    course.depth_profile(layers, {"mean": [0.1, -0.2, 0.0, 0.3, 0.1]}, tmp_path / "mean.png", "mean", "mean")
    assert drawn[-1]["yscale"] == ["linear"]


def test_curves_with_band(tmp_path, drawn):
    xs = list(range(10))
    series = {"sgd": (xs, [1 / (i + 1) for i in xs]), "adam": (xs, [0.5 / (i + 1) for i in xs])}
    band = {"sgd": ([0.9 / (i + 1) for i in xs], [1.1 / (i + 1) for i in xs])}
    path = course.curves(series, tmp_path / "c.png", "loss", "epoch", "loss", log_y=True, band=band)
    assert png_size(path) == (700, 450)
    assert drawn[-1]["yscale"] == ["log"] and drawn[-1]["legend"][0] == ["sgd", "adam"]


def test_best_cell_and_heatmap_outline(tmp_path, drawn):
    values = np.array([[0.5, 0.2, 0.9, 0.4], [0.3, 0.05, np.nan, 0.7], [0.6, 0.8, 0.95, 0.1]])
    assert course.best_cell(values, "min") == (1, 1)
    assert course.best_cell(values, "max") == (2, 2)
    with pytest.raises(ValueError):
        course.best_cell(values, "median")
    path = course.heatmap(values, [0.1, 0.01, 0.001], [16, 32, 64, 128], tmp_path / "hm.png", "val loss", "batch size",
                          "learning rate", mark_best="min", cbar_label="val loss")
    assert png_size(path) == (700, 400)
    box = drawn[-1]["patches"][-1]
    assert box.get_xy() == (0.5, 0.5) and box.get_width() == 1  # cell (row 1, col 1)
    assert "best (min" in drawn[-1]["title"][0] and "learning rate = 0.01, batch size = 32" in drawn[-1]["title"][0]


def test_heatmap_log_colours_over_decades(tmp_path):
    values = np.array([[1e-4, 1e-2], [1.0, 10.0]])
    path = course.heatmap(values, ["a", "b"], ["c", "d"], tmp_path / "log.png", "spread", "col", "row", "max")
    assert png_size(path) == (500, 400)
