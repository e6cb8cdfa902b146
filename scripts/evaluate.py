"""Evaluate a trained run: `python scripts/evaluate.py outputs/<run> [--split val] [--tta flip]`.

Rebuilds the model and the split from the checkpoint's stored config (best.pt of a run directory,
or any checkpoint file) and writes metrics.json, confusion_matrix.png/.csv, errors.png and
reliability.png into <run>/eval/<split>/ (and TensorBoard), then prints a compact report."""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dlcourse.errors import UserError  # noqa: E402


def main(argv=None) -> int:
    from dlcourse.evaluate import SPLITS, evaluate

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", help="a run directory (outputs/<date>/<time>) or a checkpoint file")
    p.add_argument("--split", default="test", choices=SPLITS)
    p.add_argument("--tta", choices=["flip"], help="average predictions over the horizontally flipped image")
    p.add_argument("--data-root", help="where the dataset lives now (default: the run's dataset.root)")
    p.add_argument("--batch-size", type=int, help="evaluation batch size")
    p.add_argument("--device", default="cpu", help="cpu, cuda, mps or auto")
    a = p.parse_args(argv)
    try:
        result, out = evaluate(a.run, a.split, a.tta, a.data_root, a.batch_size, a.device)
    except UserError as e:
        print(f"Error: {e}", file=sys.stderr)
        return 2
    head = f"{a.split}: {result['n']} images  acc {result['acc']:.4f}  loss {result['loss']:.4f}"
    if "acc5" in result:
        head += f"  acc5 {result['acc5']:.4f}"
    print(head + f"  macro F1 {result['f1_macro']:.4f}  ECE {result['ece']:.4f}")
    width = max(len(c) for c in result["per_class"])
    print(f"{'class':<{width}}  precision  recall     f1  support")
    for name, m in result["per_class"].items():
        print(f"{name:<{width}}  {m['precision']:9.4f}  {m['recall']:6.4f}  {m['f1']:.4f}  {m['support']:7d}")
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
