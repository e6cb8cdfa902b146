"""Plot each activation of the model zoo and its derivative: `python scripts/activations.py [--out activations.png]`."""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> int:
    from dlcourse.models.layers import ACTIVATIONS
    from dlcourse.viz.activations import figure

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("activations.png"))
    p.add_argument("--only", nargs="+", choices=sorted(ACTIVATIONS), help="a subset, e.g. sigmoid tanh relu")
    a = p.parse_args(argv)
    print(f"written {figure(a.out, a.only)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
