"""dlcourse from Python (a notebook, a script): `train`, `sweep`, `load` and `compose` drive the very runs
of `python train.py` — the same override strings, configs, run directories and files — through the one
path of the command line (`dlcourse.training.execute`), and hand back `Run` and `Sweep` objects."""
from __future__ import annotations

import copy
import itertools
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence, Union

from dlcourse.errors import UserError

Overrides = Union[str, Mapping[str, Any]]
SWEEP_EXCLUDED = ("resume", "dataset.root")  # left out of job directory names, as configs/train.yaml says


def _value(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(_value(x) for x in v) + "]"
    return str(v)


def overrides_of(items: Iterable[Overrides]) -> list[str]:
    """Override strings (`"optim=adam"`, `"~model.hidden_sizes"` to delete a key) and dicts
    (`{"optim.lr": 0.01}`) as the command line's strings; `lr_find=true` is short for
    `lr_find.enabled=true`, as on the command line."""
    out = []
    for item in items:
        pairs = [item] if isinstance(item, str) else [f"{k}={_value(v)}" for k, v in dict(item).items()]
        for o in pairs:
            if not isinstance(o, str) or ("=" not in o and not o.startswith("~")):
                raise UserError(f"{o!r} is not an override: write 'key=value' (e.g. 'optim.lr=0.01', 'model=lenet'), "
                                "'~key' to delete a key, or a dict {'optim.lr': 0.01}.")
            out.append(f"lr_find.enabled={o.split('=', 1)[1]}" if o.startswith("lr_find=") else o)
    return out


def compose(*overrides: Overrides, config_dir: Optional[Union[str, Path]] = None):
    """The config that `dlcourse.train(*overrides)` (and `python train.py ...`) would run. `config_dir`:
    a lab folder of your own options and code, like the command line's `--config-dir`."""
    return _compose(overrides, config_dir)[0]


def _compose(overrides, config_dir=None):
    """`compose`, and the directory the config itself names for the run (an experiment's
    `hydra.run.dir`, e.g. experiment=transfer_pretrain_fashion), None for the default per-second one."""
    from dlcourse.config import compose_config

    strings = overrides_of(overrides)
    if config_dir is not None:
        from dlcourse.usercode import add_search_dir

        folder = Path(config_dir).expanduser().resolve()
        if not folder.is_dir():
            raise UserError(f"config_dir={config_dir}: there is no such folder (a lab folder holds option files "
                            "such as model/mynet.yaml and the python code they name).")
        add_search_dir(folder)
        strings.append(f"hydra.searchpath=[file://{folder}]")
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        cfg = compose_config(strings, hydra_node=True)
    except (HydraException, OmegaConfBaseException) as e:  # an unknown option or key, a wrong type: one paragraph
        from dlcourse.errors import ConfigError

        raise ConfigError(" ".join(str(e).split())) from None
    from omegaconf import OmegaConf, open_dict

    named = OmegaConf.to_container(cfg.hydra.run, resolve=False)["dir"]  # the default is per second: ${now:...}
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg, (None if "${now:" in named else Path(named))


def _hydra_dir(strings: list[str], key: str) -> tuple[Optional[Path], list[str]]:
    """The directory an override `hydra.run.dir=...` names, and the overrides without it."""
    given = [o for o in strings if o.split("=", 1)[0] == key]
    rest = [o for o in strings if o.split("=", 1)[0] != key]
    return (Path(given[-1].split("=", 1)[1]) if given else None), rest


def _data_overrides(data, folder: Path) -> list[str]:
    """Arrays handed in as `data=` go where `dataset=tensors` reads them: an .npz file in `folder`
    (the run keeps it, so it can be evaluated and resumed from disk). Checked first, named `data=`."""
    import numpy as np

    from dlcourse.data.arrays import check_arrays
    from dlcourse.data.own import ACCEPTED
    from dlcourse.errors import DataError

    if isinstance(data, tuple) and len(data) == 2:
        data = {"x": data[0], "y": data[1]}
    if not isinstance(data, Mapping):
        raise DataError(f"data= got a {type(data).__name__}; it takes {ACCEPTED.split(', or a torch')[0]}. A torch "
                        "Dataset: return it from a function of yours and name it: dataset._target_=module.function.")
    check_arrays(dict(data), "data=")
    arrays = {k: (v.detach().cpu().numpy() if hasattr(v, "detach") else np.asarray(v)) for k, v in data.items()}
    path = folder / "data.npz"
    np.savez(path, **arrays)
    return ["dataset=tensors", f"dataset.path={path.resolve()}"]


def _clean_up(run_dir: Path, made: bool) -> None:
    """A run that stopped before it trained leaves no directory behind (as on the command line)."""
    from dlcourse.cli import _remove_if_empty

    if made and not (run_dir / "checkpoints").exists() and not (run_dir / "lr_find.json").exists():
        (run_dir / "data.npz").unlink(missing_ok=True)
        _remove_if_empty(run_dir)


def train(*overrides: Overrides, model=None, data=None, loss: Optional[Callable] = None, callbacks: Sequence = (),
          optimizer: Optional[type] = None, config_dir: Optional[Union[str, Path]] = None,
          run_dir: Optional[Union[str, Path]] = None):
    """Train as `python train.py OVERRIDES` does and return the `Run`. Objects replace config options:
    `model=` an nn.Module of yours (trained in place; it keeps the weights you gave it — no init
    scheme — and its output size is checked), `data=(x, y)` or a dict of arrays like a .npz file
    (x, y, x_val, y_val, x_test, y_test, classes: `dataset=tensors`), `loss=` a function
    (output, target) -> scalar or an nn.Module, `callbacks=` dlcourse.callbacks.Callback instances,
    `optimizer=` a torch.optim.Optimizer subclass (built with optim.lr, optim.weight_decay and the optim
    group's other keys, which it must accept: start from "optim=sgd").
    The run directory is `outputs/<date>/<time>`, or `run_dir`, or `hydra.run.dir=...`, or the one the
    config itself names (experiment=transfer_pretrain_fashion: outputs/pretrained/...), as on the command line."""
    from dlcourse.components import Given
    from dlcourse.results import Run
    from dlcourse.training import execute, new_run_dir

    strings = overrides_of(overrides)
    named, strings = _hydra_dir(strings, "hydra.run.dir")
    # the run directory the config names (the arrays of data= are written into it, then composed with)
    cfg, configured = _compose([*strings, *(["dataset=tensors"] if data is not None else [])], config_dir)
    folder = next((Path(d) for d in (run_dir, named, configured) if d is not None), None)
    made = folder is None or not folder.exists()
    folder = new_run_dir() if folder is None else folder
    folder.mkdir(parents=True, exist_ok=True)
    try:
        if data is not None:
            strings += _data_overrides(data, folder)
            cfg = compose(*strings, config_dir=config_dir)
        result = execute(cfg, folder, strings, Given(model, loss, tuple(callbacks), optimizer))
    except UserError as e:
        _clean_up(folder, made)
        raise type(e)(str(e)) from None  # one paragraph, without the internal traceback behind it
    except SystemExit:  # stopped by an interrupt: the run said where it stands and how to continue
        raise KeyboardInterrupt(f"the run in {folder} was stopped; continue it with "
                                f"dlcourse.train(..., 'resume=true', run_dir='{folder}')") from None
    return Run(result.run_dir, result=result, loss=loss)


def sweep(grid: Mapping[str, Sequence], *overrides: Overrides, seeds: Union[int, Sequence[int], None] = None,
          model=None, data=None, loss: Optional[Callable] = None, callbacks: Sequence = (),
          optimizer: Optional[type] = None, config_dir: Optional[Union[str, Path]] = None,
          sweep_dir: Optional[Union[str, Path]] = None):
    """Every combination of `grid` ({key: [values]}), each with `seeds` (a count: seeds 0..n-1, or a
    list), run here one after another like `python train.py -m key=a,b ... seed=0,1,2` with the fixed
    `overrides`: the same sweep directory (`outputs/multirun/<date>/<time>/<job>_<overrides>/`),
    report.md, report.csv and figures. A job that fails is recorded and the others run. Returns the
    `Sweep`. Objects given (model=, callbacks=) are copied for each job; `optimizer=` is a class, as in `train`."""
    from dlcourse.cli import record_failure
    from dlcourse.components import Given
    from dlcourse.config import path_safe
    from dlcourse.results import Sweep
    from dlcourse.training import execute, new_run_dir

    fixed = overrides_of(overrides)
    named, fixed = _hydra_dir(fixed, "hydra.sweep.dir")
    axes = {k: list(v) if isinstance(v, (list, tuple, range)) else [v] for k, v in dict(grid).items()}
    if seeds is not None:
        axes["seed"] = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    folder = Path(sweep_dir) if sweep_dir is not None else named
    folder = new_run_dir("outputs/multirun") if folder is None else folder
    folder.mkdir(parents=True, exist_ok=True)
    if data is not None:
        fixed += _data_overrides(data, folder)
    runs, failed, first_error = [], [], None
    for num, values in enumerate(itertools.product(*axes.values())):
        job = [f"{k}={_value(v)}" for k, v in zip(axes, values)] + fixed
        dirname = ",".join(sorted(o for o in job if o.split("=", 1)[0].lstrip("+~") not in SWEEP_EXCLUDED))
        run_dir = folder / f"{num}_{path_safe(dirname)}"
        print(f"[sweep] job {num}: {' '.join(job)}", flush=True)
        cfg = None
        try:
            cfg = compose(*job, config_dir=config_dir)
            given = Given(copy.deepcopy(model), loss, tuple(copy.deepcopy(list(callbacks))), optimizer)
            runs.append(execute(cfg, run_dir, job, given))
        except UserError as e:
            print(f"\nError: {e}", flush=True)
            if cfg is not None:
                record_failure(cfg, run_dir, job, e)
            failed.append((run_dir, str(e)))
            first_error = first_error or (job, e)
    if not runs and first_error is not None and not any(d.exists() for d, _ in failed):
        job, e = first_error  # no job got as far as its run directory: no report, the error is the answer
        if not any(folder.iterdir()):
            folder.rmdir()
        raise type(e)(f"every job of the sweep failed ({len(failed)}); the first ({' '.join(job)}): {e}") from None
    return Sweep(folder, results=runs, failed=failed, loss=loss)


def load(run_dir: Union[str, Path], model=None, loss: Optional[Callable] = None):
    """The `Run` stored in `run_dir` (metrics, history, config; the model from checkpoints/best.pt).
    A run of a model handed in from Python needs a new instance of its class: `load(dir, model=MyNet())`."""
    from dlcourse.errors import CheckpointError
    from dlcourse.results import Run

    path = Path(run_dir)
    if not (path / "metrics.json").is_file() and not (path / "checkpoints").is_dir():
        raise CheckpointError(f"{path} is not a finished run directory (no metrics.json or checkpoints/): give the "
                              "folder of one run, outputs/<date>/<time>.")
    return Run(path, given_model=model, loss=loss)
