"""Run the course experiments and collect their figures and reports in docs/course/<experiment>/.

    python scripts/course.py                 # every experiment, full budgets (28 minutes on 2 CPU cores)
    python scripts/course.py --quick         # every experiment with small budgets (11 minutes), into outputs/course-quick/
    python scripts/course.py xor_mlp depth_spiral
    python scripts/course.py --list

Each experiment is the command a student types (configs/experiment/<name>.yaml); its sweep
report (report.md, report_*.png) or its run's figures are copied to docs/course/<name>/, with
the command and the wall time in docs/course/<name>/README.md.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QUIET = ["trainer.progress_bar=false"]

# name -> (arguments of train.py, whether it is a sweep)
EXPERIMENTS: dict[str, tuple[list[str], bool]] = {
    "perceptron_gates": (["-m", "experiment=perceptron_gates"], True),
    "xor_mlp": (["experiment=xor_mlp"], False),
    "xor_mlp_seeds": (["-m", "experiment=xor_mlp", "seed=range(20)"], True),
    "logistic_separable": (["-m", "experiment=logistic_separable"], True),
    "sine_regression": (["-m", "experiment=sine_regression"], True),
    "sine_fit": (["experiment=sine_regression", "model.width=16", "model.depth=1"], False),
    "sine_activations": (["-m", "experiment=sine_activations"], True),
    "mlp_mnist": (["experiment=mlp_mnist"], False),
    "depth_spiral": (["-m", "experiment=depth_spiral"], True),
    "init_depth": (["-m", "experiment=init_depth"], True),
    "activations_depth": (["-m", "experiment=activations_depth"], True),
    "batch_size_noise": (["-m", "experiment=batch_size_noise"], True),
    # lab II: generalisation and regularisation on Fashion-MNIST
    "capacity": (["-m", "experiment=capacity"], True),
    "l1_vs_l2": (["-m", "experiment=l1_vs_l2"], True),
    "dropout": (["-m", "experiment=dropout"], True),
    "batchnorm_lr": (["-m", "experiment=batchnorm_lr"], True),
    "augment_small_data": (["-m", "experiment=augment_small_data"], True),
    "normalization": (["-m", "experiment=normalization"], True),
    "mlp_vs_cnn": (["-m", "experiment=mlp_vs_cnn"], True),
    "plain_vs_residual": (["-m", "experiment=plain_vs_residual"], True),
    "random_labels": (["-m", "experiment=random_labels"], True),
    "optimizers": (["-m", "experiment=optimizers"], True),
    "init_schemes": (["-m", "experiment=init_schemes"], True),
    "transfer_pretrain": (["experiment=transfer_pretrain_fashion"], False),
    "transfer_few_shot": (["-m", "experiment=transfer_fashion_few_shot", "finetune=scratch,feature_extractor,full",
                           "seed=0,1,2"], True),
}
# runs whose directory other experiments read (the source model of the transfer recipe)
OWN_DIRS = {"transfer_pretrain": ROOT / "outputs" / "pretrained" / "lenet_fashion_0-4"}
# --quick: smaller budgets (epochs) for a check that every experiment runs and draws its figures
QUICK = {"xor_mlp": 500, "xor_mlp_seeds": 500, "logistic_separable": 200, "sine_regression": 300, "sine_fit": 300,
         "sine_activations": 200, "mlp_mnist": 2, "depth_spiral": 300, "init_depth": 2, "activations_depth": 3,
         "batch_size_noise": 10, "capacity": 10, "l1_vs_l2": 5, "dropout": 10, "batchnorm_lr": 2,
         "augment_small_data": 5, "normalization": 3, "mlp_vs_cnn": 3, "plain_vs_residual": 1, "random_labels": 20,
         "optimizers": 3, "init_schemes": 2, "transfer_pretrain": 1, "transfer_few_shot": 10}


def run(name: str, out_root: Path, work: Path, quick: bool = False) -> float:
    args, sweep = EXPERIMENTS[name]
    if quick and name in QUICK:
        args = [*args, f"trainer.max_epochs={QUICK[name]}"]
    target = OWN_DIRS.get(name, work / name)
    shutil.rmtree(target, ignore_errors=True)
    where = f"hydra.sweep.dir={target}" if sweep else f"hydra.run.dir={target}"
    started = time.perf_counter()
    result = subprocess.run([sys.executable, str(ROOT / "train.py"), *args, *QUIET, where], cwd=ROOT,
                            capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{name} failed:\n{result.stderr[-2000:]}")
    dest = out_root / name
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    files = (sorted(target.glob("report*.png")) + [target / "report.md"] if sweep
             else sorted((target / "figures").glob("*.png")) + [target / "metrics.json"])
    for f in files:
        if f.is_file():
            shutil.copy(f, dest / f.name)
    command = "python train.py " + " ".join(a if "(" not in a else f"'{a}'" for a in args)
    (dest / "README.md").write_text(f"# {name}\n\n    {command}\n\nWall time on this machine: {seconds:.0f} s "
                                    f"(start-up included). Files: {', '.join(f.name for f in files if f.is_file())}.\n")
    return seconds


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("names", nargs="*", help="experiments to run (default: all)")
    p.add_argument("--list", action="store_true", help="list the experiments and exit")
    p.add_argument("--quick", action="store_true", help="small budgets (epochs): checks that everything runs")
    p.add_argument("--out", type=Path, help="where the figures go (default docs/course; with --quick "
                   "outputs/course-quick/figures, so quick runs never replace the book's figures)")
    p.add_argument("--work", type=Path, default=ROOT / "outputs" / "course", help="where the runs go")
    a = p.parse_args(argv)
    if a.out is None:
        a.out = ROOT / "outputs" / "course-quick" / "figures" if a.quick else ROOT / "docs" / "course"
    if a.quick and a.work == ROOT / "outputs" / "course":
        a.work = ROOT / "outputs" / "course-quick"
    if a.list:
        print("\n".join(EXPERIMENTS))
        return 0
    unknown = [n for n in a.names if n not in EXPERIMENTS]
    if unknown:
        print(f"Error: unknown experiment(s) {', '.join(unknown)}; choose from {', '.join(EXPERIMENTS)}.", file=sys.stderr)
        return 2
    total = 0.0
    for name in a.names or EXPERIMENTS:
        seconds = run(name, a.out, a.work, a.quick)
        total += seconds
        print(f"{name}: {seconds:.0f} s -> {a.out / name}", flush=True)
    print(f"total {total:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
