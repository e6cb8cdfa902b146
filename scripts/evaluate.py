"""Evaluate a trained run: `python scripts/evaluate.py outputs/<run> [--split val] [--tta flip]`.

Rebuilds the model and the split from the checkpoint's stored config and input normalisation
(best.pt of a run directory, or any checkpoint file), writes metrics.json and figures into
<run>/eval/<split>/ (and TensorBoard), then prints a compact report. Per task:
  classification  accuracy, loss, per-class precision/recall/F1, confusion matrix (.png, .csv),
                  reliability diagram, most confident mistakes (image runs)
  binary          the same for the two classes, plus ROC AUC, average precision (roc_pr.png)
  regression      loss, MSE, MAE, R², residuals.png, fit.png, predictions.csv"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dlcourse.errors import UserError  # noqa: E402
from dlcourse.usercode import add_search_dir  # noqa: E402


def main(argv=None) -> int:
    from dlcourse.evaluate import SPLITS, evaluate

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n".join(__doc__.splitlines()[2:]))
    p.add_argument("run", help="a run directory (outputs/<date>/<time>) or a checkpoint file")
    p.add_argument("--split", default="test", choices=SPLITS)
    p.add_argument("--tta", choices=["flip"], help="average predictions over the horizontally flipped image (image classification runs)")
    p.add_argument("--data-root", help="where the dataset lives now (default: the run's dataset.root)")
    p.add_argument("--batch-size", type=int, help="evaluation batch size")
    p.add_argument("--device", default="cpu", help="cpu, cuda, mps or auto")
    p.add_argument("--config-dir", action="append", default=[], metavar="FOLDER",
                   help="a folder whose python files the run's _target_s name (a lab folder), as with train.py")
    a = p.parse_args(argv)
    for folder in a.config_dir:
        add_search_dir(folder)
    try:
        result, out = evaluate(a.run, a.split, a.tta, a.data_root, a.batch_size, a.device)
    except UserError as e:
        print(f"Error: {e}", file=sys.stderr)
        return 2
    from dlcourse.eval_tasks import REPORTS

    print("\n".join(REPORTS[result["task"]].lines(result, a.split)))
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
