"""Images/s of (a) dlcourse's Engine, (b) a bare PyTorch loop, (c) a DataLoader + PIL pipeline.

    python scripts/benchmark.py --model lenet --dataset fashion_mnist --batch-size 128
    python scripts/benchmark.py --model mlp --set model.hidden_sizes=[512,256] --dataset fashion_mnist
    python scripts/benchmark.py --dataset synthetic --set dataset.image_shape=[3,32,32] dataset.size=20000 --device cuda

The setup is a training config composed from configs/ as `python train.py` would compose it
(`--set` takes any of its overrides); the timing logic lives in benchmarks/throughput.py.
"""
import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from benchmarks import compose  # noqa: E402
from benchmarks.throughput import Timing, format_table, run_benchmark  # noqa: E402
from dlcourse.errors import UserError  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="lenet", help="a file in configs/model/ (default lenet)")
    p.add_argument("--dataset", default="fashion_mnist", help="a file in configs/dataset/ (in-memory sets)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--eval-batch-size", type=int, default=1024)
    p.add_argument("--optim", default="adam", help="a file in configs/optim/ (default adam)")
    p.add_argument("--augment", default="none", help="a file in configs/augment/ (not applied in (c))")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    p.add_argument("--precision", default="32", choices=["32", "bf16-mixed", "16-mixed"])
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--compile", action="store_true", help="torch.compile the model in every pipeline")
    p.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                   help="more overrides of the training config, e.g. model.hidden_sizes=[512,256] optim.lr=0.01")
    p.add_argument("--epochs", type=int, default=3, help="measured epochs (median reported)")
    p.add_argument("--warmup-epochs", type=int, default=1)
    p.add_argument("--skip-dataloader", action="store_true", help="do not time (c)")
    p.add_argument("--workers", type=int, default=2, help="(c): DataLoader workers")
    p.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice)")
    p.add_argument("--clock", default="wall", choices=["wall", "cpu"],
                   help="cpu: CPU time of the process and its DataLoader workers, steadier on a busy machine")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, help="also write the results to this file")
    return p.parse_args(argv)


def overrides(a: argparse.Namespace) -> list[str]:
    return [f"model={a.model}", f"dataset={a.dataset}", f"optim={a.optim}", f"augment={a.augment}",
            f"trainer.batch_size={a.batch_size}", f"trainer.eval_batch_size={a.eval_batch_size}",
            f"trainer.device={a.device}", f"trainer.precision={a.precision}",
            f"trainer.channels_last={a.channels_last}", f"trainer.compile={a.compile}", f"seed={a.seed}",
            "trainer.progress_bar=false", *a.set]


def main(argv=None) -> int:
    a = parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    timing = Timing(epochs=a.epochs, warmup_epochs=a.warmup_epochs, dataloader=not a.skip_dataloader,
                    workers=a.workers, clock=a.clock)
    try:
        result = run_benchmark(compose(overrides(a)), timing)
    except UserError as e:
        print(f"Error: {e}", file=sys.stderr)
        return 2
    print()
    print(format_table(result))
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(result, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
