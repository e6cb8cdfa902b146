"""Generate the lab's data set, shapes.npz: 28x28 grey images of circles, squares and triangles.

    python examples/my_lab/make_shapes.py            # rewrites examples/my_lab/shapes.npz

Each shape has a random size, position, rotation and brightness, and is filled or drawn as an
outline. The generator is seeded and the file is written without time stamps, so running this
script again gives the very same file. The arrays follow dlcourse's dataset=tensors contract:
x (N, 28, 28) uint8, y (N,) class indices, x_test / y_test, classes.
"""
from __future__ import annotations

import argparse
import io
import zipfile
from pathlib import Path

import numpy as np

CLASSES = ("circle", "square", "triangle")
SIZE, SUPER = 28, 4  # image side in pixels; each pixel averages SUPER x SUPER sub-pixels (smooth edges)
N_TRAIN, N_TEST, SEED = 3000, 1000, 0
HERE = Path(__file__).resolve().parent


def inside(kind: int, u: np.ndarray, v: np.ndarray, r: float) -> np.ndarray:
    """Which points (u, v), in the shape's own rotated frame, lie inside a shape of 'radius' r."""
    if kind == 0:  # circle
        return u ** 2 + v ** 2 <= r ** 2
    if kind == 1:  # square with half-side r * 0.85 (about the circle's area)
        return np.maximum(np.abs(u), np.abs(v)) <= 0.85 * r
    # equilateral triangle inscribed in a circle of radius 1.2 r: three half-planes
    out = np.ones_like(u, dtype=bool)
    for a in (np.pi / 2, np.pi / 2 + 2 * np.pi / 3, np.pi / 2 + 4 * np.pi / 3):
        out &= u * np.cos(a) + v * np.sin(a) >= -0.6 * r
    return out


def draw(kind: int, rng: np.random.Generator) -> np.ndarray:
    """One image: a shape with random radius, centre, angle, brightness, filled or outlined."""
    r = rng.uniform(5.0, 11.0)
    cx, cy = rng.uniform(r + 1, SIZE - r - 1, size=2)
    angle = rng.uniform(0, 2 * np.pi)
    grid = (np.arange(SIZE * SUPER) + 0.5) / SUPER
    x, y = np.meshgrid(grid - cx, grid - cy)
    u, v = x * np.cos(angle) + y * np.sin(angle), -x * np.sin(angle) + y * np.cos(angle)
    mask = inside(kind, u, v, r)
    if rng.random() < 0.5:  # outline: the shape minus a smaller copy of itself
        mask &= ~inside(kind, u, v, r - rng.uniform(1.5, 3.0))
    pixels = mask.reshape(SIZE, SUPER, SIZE, SUPER).mean(axis=(1, 3))
    return np.round(pixels * rng.uniform(120, 255)).astype(np.uint8)


def make(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    y = rng.integers(0, len(CLASSES), size=n).astype(np.int64)
    return np.stack([draw(int(k), rng) for k in y]), y


def arrays(seed: int = SEED) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    x, y = make(N_TRAIN, rng)
    x_test, y_test = make(N_TEST, rng)
    return {"x": x, "y": y, "x_test": x_test, "y_test": y_test, "classes": np.array(CLASSES)}


def save(data: dict[str, np.ndarray], path: Path) -> None:
    """Like np.savez_compressed, but with fixed time stamps in the zip file: same arrays, same bytes."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, a in data.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.asarray(a), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, buffer.getvalue())


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=HERE / "shapes.npz")
    p.add_argument("--seed", type=int, default=SEED)
    args = p.parse_args()
    data = arrays(args.seed)
    save(data, args.out)
    print(f"wrote {args.out}: {len(data['x'])} training and {len(data['x_test'])} test images of {', '.join(CLASSES)}")
