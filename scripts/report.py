"""Build (or rebuild) the report of a sweep: `python scripts/report.py outputs/multirun/<date>/<time>`.

Writes report.md, report.csv and report_*.png into the sweep directory, and the same into
TensorBoard (the run `report` under the sweep directory)."""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dlcourse.errors import UserError  # noqa: E402
from dlcourse.reports import write_report  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("sweep_dir", type=Path, help="a multirun sweep directory")
    a = p.parse_args(argv)
    if (a.sweep_dir / "checkpoints").is_dir() or (a.sweep_dir / "metrics.json").is_file():
        print(f"Error: {a.sweep_dir} is the directory of one run, not of a sweep: a report compares the runs of a "
              "multirun (python train.py -m ...), found in outputs/multirun/<date>/<time>. Give that directory; for "
              f"one run, see its metrics.json and figures/, or python scripts/evaluate.py {a.sweep_dir}.",
              file=sys.stderr)
        return 2
    try:
        report = write_report(a.sweep_dir)
    except UserError as e:
        print(f"Error: {e}", file=sys.stderr)
        return 2
    print(report.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
