"""Optimizers on 2-parameter surfaces: `python scripts/playground.py optim=sgd,momentum,adam surface=rosenbrock [steps=500] [lr=0.001] [out=playground.png]`.

optim: any of configs/optim/ (comma-separated); surface: rosenbrock, beale, saddle, quadratic (ill-conditioned).
Each optimizer keeps its config's arguments (momentum, betas, ...); the learning rate is the
surface's default for SGD-type or adaptive methods unless lr= is given."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dlcourse.errors import ConfigError, UserError  # noqa: E402


def _number(args: dict, key: str, kind: type, ok, meaning: str):
    """`key=` as a number of `kind` that passes `ok`; None when not given."""
    if key not in args:
        return None
    try:
        value = kind(args[key])
    except ValueError:
        value = None
    if value is None or not ok(value):
        shown = repr(args[key]) if value is None else value
        raise ConfigError(f"{key}={shown} is not valid: it is {meaning}. Give e.g. "
                          f"`python scripts/playground.py {key}={500 if kind is int else 0.01}`.")
    return value


def main(argv=None) -> int:
    from hydra.utils import get_class
    from omegaconf import OmegaConf

    from dlcourse.config import compose_config
    from dlcourse.viz.playground import figure, run

    args = dict(a.split("=", 1) for a in (sys.argv[1:] if argv is None else argv) if "=" in a)
    unknown = set(args) - {"optim", "surface", "steps", "lr", "out"}
    if unknown or (argv or sys.argv[1:]) and any("=" not in a for a in (argv or sys.argv[1:])):
        print(__doc__, file=sys.stderr)
        return 2
    try:
        optimizers = {}
        for name in args.get("optim", "sgd,momentum,nesterov,adagrad,rmsprop,adam").split(","):
            options = OmegaConf.to_container(compose_config([f"optim={name}"]).optim, resolve=True)
            optimizers[name] = (get_class(options.pop("_target_")), options)
        surface = args.get("surface", "rosenbrock")
        steps = _number(args, "steps", int, lambda v: v >= 1, "the number of optimizer steps, an integer >= 1")
        lr = _number(args, "lr", float, lambda v: v > 0, "the learning rate, a number > 0")
        results = run(optimizers, surface, 500 if steps is None else steps, lr)
        out = figure(results, surface, Path(args.get("out", f"playground_{surface}.png")))
    except UserError as e:
        print(f"Error: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # a misspelt optimizer: Hydra's own message names it
        print(f"Error: {str(e).splitlines()[0]}", file=sys.stderr)
        return 2
    for name, (points, losses, lr) in results.items():
        print(f"{name:10s} lr {lr:<8g} final ({points[-1, 0]:.3f}, {points[-1, 1]:.3f})  f {losses[-1]:.3g}")
    print(f"written {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
