"""Images/s of (a) dlcourse's Engine, (b) a bare PyTorch loop, (c) a DataLoader + PIL pipeline.

    python scripts/benchmark.py --model lenet --dataset fashion_mnist --batch-size 128
    python scripts/benchmark.py --model mlp --hidden-sizes 512 256 --dataset fashion_mnist
    python scripts/benchmark.py --dataset synthetic --image-shape 3 32 32 --size 20000 --device cuda

The logic lives in dlcourse/benchmark.py.
"""
import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from dlcourse.benchmark import BenchConfig, format_table, run_benchmark  # noqa: E402
from dlcourse.data import IN_MEMORY_DATASETS  # noqa: E402
from dlcourse.errors import UserError  # noqa: E402
from dlcourse.models import MODELS  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="lenet", choices=sorted(MODELS), help="default lenet")
    p.add_argument("--hidden-sizes", type=int, nargs="+", help="mlp: widths of the hidden layers")
    p.add_argument("--activation", help="relu, tanh, gelu, ... (dlcourse/models/layers.py)")
    p.add_argument("--batch-norm", action="store_true", help="mlp: batch norm after each hidden layer")
    p.add_argument("--dropout", type=float, help="dropout probability")
    p.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="other model options")
    p.add_argument("--dataset", default="fashion_mnist", choices=IN_MEMORY_DATASETS,
                   help="default fashion_mnist; synthetic takes --image-shape, --num-classes, --size")
    p.add_argument("--root", default="data", help="where to look for the dataset first")
    p.add_argument("--image-shape", type=int, nargs=3, default=[1, 28, 28], metavar=("C", "H", "W"),
                   help="synthetic: image shape")
    p.add_argument("--num-classes", type=int, default=10, help="synthetic: number of classes")
    p.add_argument("--size", type=int, default=10_000, help="synthetic: number of training images")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--eval-batch-size", type=int, default=1024)
    p.add_argument("--optim", default="adam", help="a file in configs/optim/ (default adam)")
    p.add_argument("--lr", type=float, help="learning rate (default: the optimizer config's)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    p.add_argument("--precision", default="32", choices=["32", "bf16-mixed", "16-mixed"])
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--compile", action="store_true", help="torch.compile the model in every pipeline")
    p.add_argument("--augment", help="a preset in configs/augment/ (needs dlcourse/data/augment.py)")
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


def main(argv=None) -> int:
    a = parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    options = OmegaConf.to_container(OmegaConf.from_dotlist(a.set))
    for key in ("hidden_sizes", "activation", "dropout"):
        if getattr(a, key) is not None:
            options[key] = getattr(a, key)
    if a.batch_norm:
        options["batch_norm"] = True
    cfg = BenchConfig(model=a.model, model_options=options, dataset=a.dataset, root=a.root,
                      image_shape=tuple(a.image_shape), num_classes=a.num_classes, size=a.size,
                      batch_size=a.batch_size, eval_batch_size=a.eval_batch_size, optim=a.optim, lr=a.lr,
                      device=a.device, precision=a.precision, channels_last=a.channels_last,
                      compile=a.compile, augment=a.augment, epochs=a.epochs, warmup_epochs=a.warmup_epochs,
                      dataloader=not a.skip_dataloader, workers=a.workers, clock=a.clock, seed=a.seed)
    try:
        result = run_benchmark(cfg)
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
