"""How much the augmentation presets cost: the transform alone, one training step, the training loop.

    python -m benchmarks.augment_speed                     # CPU, batch 128, 3x32x32 and 1x28x28
    python -m benchmarks.augment_speed --device cuda --loop-batches 100
    python -m benchmarks.augment_speed --kornia            # also time kornia.augmentation equivalents
    python -m benchmarks.augment_speed --threads 1 --clock cpu   # on a busy machine: CPU time, 1 thread

(1) each preset's `transform` alone; (2) one forward + backward + SGD step of LeNet-5 and ResNet-18
(the CIFAR stem, and torchvision's ImageNet stem, which is ~30x cheaper at 32x32); (3) the
TensorLoader + training loop with and without `standard` / `strong`, variants interleaved and
repeated, median ratio to the loop without augmentation. Images are random (synthetic): only
speed is measured here.
"""
import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from benchmarks import compose  # noqa: E402
from dlcourse.data.augment import build_augmentation  # noqa: E402
from dlcourse.data.loader import Normalize, TensorLoader  # noqa: E402
from dlcourse.models import build_model  # noqa: E402

PRESETS = ("flip", "crop", "standard", "strong")


def preset(name: str) -> dict:
    """The augment.* keys of configs/augment/<name>.yaml, as `python train.py augment=<name>` has them."""
    return OmegaConf.to_container(compose([f"augment={name}"]).augment, resolve=True)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


CLOCK = time.perf_counter  # --clock cpu: time.process_time, the CPU time of this process


def time_ms(fn, device, repeats: int = 7, number: int = 20, warmup: int = 3) -> float:
    """Median over `repeats` of the mean time of `number` calls, in milliseconds."""
    for _ in range(warmup):
        fn()
    runs = []
    for _ in range(repeats):
        sync(device)
        start = CLOCK()
        for _ in range(number):
            fn()
        sync(device)
        runs.append((CLOCK() - start) / number * 1e3)
    return statistics.median(runs)


def kornia_presets(shape):
    import kornia.augmentation as K

    size = shape[-2:]
    return {"standard": K.AugmentationSequential(K.RandomCrop(size, padding=4), K.RandomHorizontalFlip()),
            "strong": K.AugmentationSequential(
                K.RandomResizedCrop(size, scale=(0.08, 1.0)), K.RandomHorizontalFlip(),
                K.ColorJitter(0.4, 0.4, 0.4, p=1.0), K.RandomErasing(p=0.25))}


def transforms_alone(args, device):
    print(f"(1) transform alone, batch {args.batch_size} (ms per batch, median)")
    for shape in ((args.batch_size, 3, 32, 32), (args.batch_size, 1, 28, 28)):
        x = torch.rand(shape, device=device)
        row = {}
        for name in PRESETS:
            aug = build_augmentation(10, device, 0, **preset(name))
            row[name] = time_ms(lambda: aug.transform(x), device)
        mix = build_augmentation(10, device, 0, mixup_alpha=0.2, cutmix_alpha=1.0)
        y = torch.randint(0, 10, shape[:1], device=device)
        row["mixup+cutmix"] = time_ms(lambda: mix.batch_transform(x, y), device)
        if args.kornia:
            for name, k in kornia_presets(shape).items():
                row[f"kornia {name}"] = time_ms(lambda: k(x), device)
        print(f"    {'x'.join(map(str, shape[1:]))}: " + ", ".join(f"{k} {v:.3f}" for k, v in row.items()))


def make_step(model, device):
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step(x, y):
        loss = loss_fn(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


MODELS = {"lenet": ("lenet", {}), "resnet18 (CIFAR stem)": ("resnet18", {"small_input": True}),
          "resnet18 (ImageNet stem)": ("resnet18", {"small_input": False})}


def steps_alone(args, device):
    print(f"(2) one training step (forward + backward + SGD), batch {args.batch_size} (ms, median)")
    for label, (name, opts) in MODELS.items():
        for shape in ((3, 32, 32), (1, 28, 28)):
            if name == "resnet18" and shape[0] == 1:
                continue
            model = build_model(name, shape, 10, **opts).to(device).train()
            step = make_step(model, device)
            x = torch.randn(args.batch_size, *shape, device=device)
            y = torch.randint(0, 10, (args.batch_size,), device=device)
            slow = opts.get("small_input") and device.type == "cpu"
            ms = time_ms(lambda: step(x, y), device, repeats=3 if slow else 7, number=1 if slow else 10,
                         warmup=1 if slow else 3)
            print(f"    {label} {'x'.join(map(str, shape))}: {ms:.2f}")


def loop(args, device):
    print(f"(3) training loop, TensorLoader -> [transform] -> normalise -> step, {args.loop_batches} batches "
          f"of {args.batch_size} (a third for ResNet), {args.loop_repeats} interleaved repeats (images/s, "
          "median; ratio to none)")
    cases = (("lenet", (3, 32, 32)), ("lenet", (1, 28, 28)), ("resnet18 (ImageNet stem)", (3, 32, 32)))
    for label, shape in cases:
        name, opts = MODELS[label]
        n = args.batch_size * (args.loop_batches if name == "lenet" else max(3, args.loop_batches // 3))
        images = torch.randint(0, 256, (n, *shape), dtype=torch.uint8)
        labels = torch.randint(0, 10, (n,))
        norm = Normalize(torch.full((shape[0],), 0.5), torch.full((shape[0],), 0.25), device)
        model = build_model(name, shape, 10, **opts).to(device).train()
        step = make_step(model, device)
        variants = {"none": None, **{p: build_augmentation(10, device, 0, **preset(p)).transform
                                     for p in ("standard", "strong")}}
        speeds = {k: [] for k in variants}
        for r in range(args.loop_repeats + 1):  # the first round warms up
            for key, transform in variants.items():
                loader = TensorLoader(images, labels, args.batch_size, device=device, normalize=norm,
                                      shuffle=True, generator=torch.Generator().manual_seed(r),
                                      transform=transform)
                sync(device)
                start = CLOCK()
                for x, y in loader:
                    step(x, y)
                sync(device)
                if r:
                    speeds[key].append(n / (CLOCK() - start))
        base = statistics.median(speeds["none"])
        print(f"    {label} {'x'.join(map(str, shape))}: " + ", ".join(
            f"{k} {statistics.median(v):.0f} ({statistics.median(v) / base:.3f})" for k, v in speeds.items()))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--loop-batches", type=int, default=30)
    p.add_argument("--loop-repeats", type=int, default=5)
    p.add_argument("--threads", type=int, help="torch.set_num_threads")
    p.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                   help="cpu: CPU time of this process (with --threads 1, robust on a busy machine)")
    p.add_argument("--kornia", action="store_true", help="also time kornia.augmentation (if installed)")
    p.add_argument("--skip", nargs="*", default=[], choices=["transforms", "steps", "loop"])
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    global CLOCK
    if args.clock == "cpu":
        CLOCK = time.process_time
    device = torch.device(args.device)
    print(f"torch {torch.__version__}, device {device}, {torch.get_num_threads()} threads, "
          f"{args.clock} clock")
    for part, fn in (("transforms", transforms_alone), ("steps", steps_alone), ("loop", loop)):
        if part not in args.skip:
            fn(args, device)
    return 0


if __name__ == "__main__":
    sys.exit(main())
