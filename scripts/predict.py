"""Classify images with a trained run: `python scripts/predict.py outputs/<run> img1.png img2.jpg [--top-k 3] [--json]`."""
import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dlcourse.errors import UserError  # noqa: E402


def main(argv=None) -> int:
    from dlcourse.predict import predict

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", help="a run directory (its best.pt) or a checkpoint file")
    p.add_argument("images", nargs="+", type=Path, help="image files (any size, grayscale or colour)")
    p.add_argument("--top-k", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    a = p.parse_args(argv)
    try:
        results = predict(a.run, a.images, a.top_k, a.device)
    except UserError as e:
        print(f"Error: {e}", file=sys.stderr)
        return 2
    if a.json:
        print(json.dumps(results, indent=2))
        return 0
    for r in results:
        print(f"{r['image']}: " + ", ".join(f"{t['class']} {t['probability']:.3f}" for t in r["top"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
