"""Execute the course notebooks (notebooks/*.ipynb) top to bottom with nbclient.

    python scripts/run_notebooks.py                 # all of them, full mode, into outputs/notebooks/
    python scripts/run_notebooks.py --quick 03 07   # quick mode (DLCOURSE_QUICK=1), notebooks 03 and 07

Each notebook runs in a fresh kernel of this Python, with this checkout first on PYTHONPATH and
its working directory at outputs/notebooks/<name>/ (its run directories land there); the executed
copy, outputs included, is written to outputs/notebooks/<name>.ipynb. The sources stay without outputs.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
KERNEL = "dlcourse-notebooks"


def notebooks(names=()) -> list[Path]:
    """The notebooks whose file name starts with one of `names` (all of them when none is given)."""
    every = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    if not names:
        return every
    chosen = [p for p in every if any(p.name.startswith(n) or p.stem == n for n in names)]
    missing = [n for n in names if not any(p.name.startswith(n) or p.stem == n for p in every)]
    if missing:
        raise SystemExit(f"no notebook named {', '.join(missing)} in {NOTEBOOKS} "
                         f"(there are: {', '.join(p.stem for p in every)})")
    return chosen


def _kernel_spec(folder: Path, quick: bool) -> None:
    """A kernel of this interpreter, importing dlcourse from this checkout, in quick or full mode."""
    spec = folder / "kernels" / KERNEL
    spec.mkdir(parents=True, exist_ok=True)
    env = {"PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p),
           "DLCOURSE_QUICK": "1" if quick else "0", "MPLBACKEND": "module://matplotlib_inline.backend_inline"}
    (spec / "kernel.json").write_text(json.dumps({
        # the kernel's own log at ERROR: its start-up notice about local TCP is not the notebook's output
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}", "--IPKernelApp.log_level=ERROR"],
        "display_name": "dlcourse notebooks", "language": "python", "env": env}))


def execute(path: Path, out: Path | None = None, workdir: Path | None = None, quick: bool = False,
            timeout: int = 600, setup_cells: tuple[str, ...] = ()):
    """Run notebook `path` in a fresh kernel; returns (executed notebook, seconds). `workdir`: the kernel's
    working directory (default: a new temporary one); `out`: where the executed copy goes;
    `setup_cells`: code run before the notebook's own cells (not kept in the copy)."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    for i, code in enumerate(setup_cells):
        nb.cells.insert(i, nbformat.v4.new_code_cell(code))
    with tempfile.TemporaryDirectory(prefix="dlcourse-kernel-") as tmp:
        _kernel_spec(Path(tmp), quick)
        before = os.environ.get("JUPYTER_PATH")
        os.environ["JUPYTER_PATH"] = os.pathsep.join(p for p in (tmp, before) if p)
        workdir = Path(workdir or Path(tmp) / "work")
        workdir.mkdir(parents=True, exist_ok=True)
        client = NotebookClient(nb, timeout=timeout, kernel_name=KERNEL, allow_errors=False,
                                resources={"metadata": {"path": str(workdir)}})
        start = time.perf_counter()
        try:
            client.execute()
        finally:
            seconds = time.perf_counter() - start
            if before is None:
                os.environ.pop("JUPYTER_PATH", None)
            else:
                os.environ["JUPYTER_PATH"] = before
            del nb.cells[:len(setup_cells)]
            nb.metadata.pop("widgets", None)
            if out is not None:
                out.parent.mkdir(parents=True, exist_ok=True)
                nbformat.write(nb, out)
    return nb, seconds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="notebooks by number or name (00, 03_optimisation); default: all")
    parser.add_argument("--quick", action="store_true", help="DLCOURSE_QUICK=1: small budgets, a check that they run")
    parser.add_argument("--out", default=str(ROOT / "outputs" / "notebooks"), help="folder of the executed copies")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds a cell may take")
    args = parser.parse_args(argv)
    out = Path(args.out)
    failed = []
    for path in notebooks(args.names):
        print(f"{path.name} ({'quick' if args.quick else 'full'} mode) ...", flush=True)
        try:
            _, seconds = execute(path, out / path.name, out / path.stem, quick=args.quick, timeout=args.timeout)
            print(f"  {seconds:.0f} s -> {out / path.name}", flush=True)
        except Exception as e:  # the executed copy still holds the cells run so far and the error
            print(f"  failed: {str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__} "
                  f"(see {out / path.name})", flush=True)
            failed.append(path.name)
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
