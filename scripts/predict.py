"""Predict with a trained run: `python scripts/predict.py outputs/<run> INPUTS... [--top-k 3] [--json]`.

Each input is prepared as in training (the run's stored input size and normalisation).
  image runs    image files (PNG, JPEG; any size, grayscale or colour; 16-bit greyscale PNGs are
                scaled by 65535): python scripts/predict.py outputs/<run> img1.png img2.jpg
  vector runs   (toy sets such as moons, sine) rows of the run's features: files with one row per
                line (.csv, .txt: numbers separated by commas or spaces, a header line is skipped;
                .npy: an array [N, D]), or rows written out:
                python scripts/predict.py outputs/<moons run> 0.5,0.25 1.0,-0.3 points.csv
                (put `--` before rows that start with a minus sign: ... -- -0.5,1)
Classification and binary runs print the top-k classes with their probabilities (binary: p(class 1)
= sigmoid of the one logit), regression runs the predicted values."""
import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dlcourse.errors import UserError  # noqa: E402
from dlcourse.usercode import add_search_dir  # noqa: E402


def main(argv=None) -> int:
    from dlcourse.predict import predict

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n".join(__doc__.splitlines()[2:]))
    p.add_argument("run", help="a run directory (its best.pt) or a checkpoint file")
    p.add_argument("inputs", nargs="+", help="image files; for vector runs, files of rows or rows such as 0.5,1.2")
    p.add_argument("--top-k", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--config-dir", action="append", default=[], metavar="FOLDER",
                   help="a folder whose python files the run's _target_s name (a lab folder), as with train.py")
    a = p.parse_args(argv)
    for folder in a.config_dir:
        add_search_dir(folder)
    try:
        results = predict(a.run, a.inputs, a.top_k, a.device)
    except UserError as e:
        print(f"Error: {e}", file=sys.stderr)
        return 2
    if a.json:
        print(json.dumps(results, indent=2))
        return 0
    for r in results:
        if "values" in r:
            print(f"{r['input']}: " + ", ".join(f"{v:.6g}" for v in r["values"]))
        else:
            print(f"{r['input']}: " + ", ".join(f"{t['class']} {t['probability']:.3f}" for t in r["top"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
