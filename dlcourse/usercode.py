"""User code named in a config (`model._target_=mynets.TinyCNN`): where it is imported from, what
it may be, and one-paragraph errors for everything that can go wrong in it.

Where: the directory the command is started in and the `--config-dir` folder are importable (put
at the front of `sys.path`), then the installed packages. `__main__` targets are refused: a
script's or notebook's own objects cannot be imported again by joblib, SLURM, torchrun or a later
resume (pass the object itself through the Python API instead).

What, per role (`ROLES`): a model is an `nn.Module` class or a function in user code (or in
torchvision.models / timm); a loss an `nn.Module` class or a function in user code (or in
torch.nn.functional); an optimizer a `torch.optim.Optimizer` class; a callback a class defined in
user code or dlcourse; a dataset a function in user code or a `torch.utils.data.Dataset` class.
"User code" is a module whose file lies outside the Python installation (the standard library and
site-packages), e.g. the lab folder. So a config or checkpoint from elsewhere can never make a
run call `os.system`, `subprocess.run` or `builtins.eval`: it is refused before anything runs.
"""
from __future__ import annotations

import importlib
import inspect
import os
import sys
import sysconfig
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

from dlcourse.errors import ConfigError


class UserCodeError(ConfigError):
    """User code named by a config cannot be imported, is not allowed, or failed while building."""


@dataclass(frozen=True)
class Role:
    """What a `_target_` of one config key may resolve to."""

    what: str  # in words, for errors
    base: str  # the class a class target must subclass ("" = any class defined in user code)
    functions_from: tuple[str, ...]  # packages whose functions are allowed besides user code ("" = none)
    functions: bool = True  # whether a function is allowed at all


ROLES = {
    "model": Role("an nn.Module class or a function returning one", "torch.nn.Module",
                  ("torchvision.models", "timm", "dlcourse.models")),
    "loss": Role("an nn.Module class or a function (output, target) -> scalar", "torch.nn.Module",
                 ("torch.nn.functional", "dlcourse.losses")),
    "optimizer": Role("a torch.optim.Optimizer class", "torch.optim.Optimizer", (), functions=False),
    "callback": Role("a callback class", "", (), functions=False),
    "dataset": Role("a function returning arrays, or a torch.utils.data.Dataset class",
                    "torch.utils.data.Dataset", ("dlcourse.data",)),
}

_search_dirs: list[Path] = []


def add_search_dir(folder: str | Path) -> None:
    """Make `folder` importable for targets (the `--config-dir` folder; the launch directory is always)."""
    folder = Path(folder).resolve()
    if folder not in _search_dirs:
        _search_dirs.append(folder)


def search_dirs() -> list[Path]:
    """The launch directory, then every added folder (each also on sys.path)."""
    dirs = [Path.cwd().resolve(), *_search_dirs]
    for d in reversed(dirs):
        if str(d) not in sys.path:
            sys.path.insert(0, str(d))
    return dirs


def _installation() -> tuple[Path, ...]:
    paths = {sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    paths |= {sys.prefix, sys.base_prefix, sys.exec_prefix}
    return tuple(Path(p).resolve() for p in paths if p)


def is_user_file(filename: Optional[str]) -> bool:
    """A source file outside the Python installation (not the standard library, not site-packages)."""
    if not filename or filename.startswith("<"):
        return False
    path = Path(filename).resolve()
    return not any(path.is_relative_to(root) for root in _installation())


def _where() -> str:
    return ", ".join(str(d) for d in search_dirs())


def user_frame(tb) -> Optional[traceback.FrameSummary]:
    """The innermost frame of a traceback that lies in user code."""
    package = Path(__file__).resolve().parent
    frames = [f for f in traceback.extract_tb(tb)
              if is_user_file(f.filename) and not Path(f.filename).resolve().is_relative_to(package)]
    return frames[-1] if frames else None


def _at(frame: Optional[traceback.FrameSummary]) -> str:
    return f" at {frame.filename}:{frame.lineno}" if frame else ""


_imported: dict[str, float] = {}  # user module -> modification time of its file when it was imported


def _fresh(module: str):
    """The module, imported again when it is user code whose file changed since it was imported (a
    notebook's edited %%writefile cell, a lab file changed between two runs of one process)."""
    mod = importlib.import_module(module)
    source = getattr(mod, "__file__", None)
    if not is_user_file(source):
        return mod
    mtime = os.path.getmtime(source)
    if module in _imported and _imported[module] != mtime:
        mod = importlib.reload(mod)
    _imported[module] = mtime
    return mod


def _import(module: str, key: str, target: str):
    search_dirs()
    try:
        return _fresh(module)
    except ModuleNotFoundError as e:
        if e.name and (module == e.name or module.startswith(e.name + ".")):
            raise UserCodeError(
                f"{key}={target}: there is no module '{module}'. Looked in the directory the command was started "
                f"in and the config folder ({_where()}), then the installed packages. Put {module.split('.')[0]}.py "
                "in one of those folders (or pass it with --config-dir), or install it.") from None
        frame = user_frame(e.__traceback__)
        raise UserCodeError(f"{key}={target}: importing {module} failed{_at(frame)}: {e}. Install that package, "
                            "or fix the import in your file.") from None
    except Exception as e:
        frame = user_frame(e.__traceback__)
        raise UserCodeError(f"{key}={target}: importing {module} raised {type(e).__name__}{_at(frame)}: {e}. "
                            "It is an error in that file: fix it and run again.") from None


def _public_names(mod) -> list[str]:
    return sorted(n for n, v in vars(mod).items() if not n.startswith("_") and (inspect.isclass(v) or inspect.isfunction(v))
                  and getattr(v, "__module__", None) == mod.__name__)


def locate(target: str, key: str, role: str) -> Callable:
    """The class or function `target` ("module.attribute") names, checked against `role` (ROLES)."""
    module, _, attribute = str(target).rpartition(".")
    if not module or not attribute:
        raise UserCodeError(f"{key}={target!r} is not a 'module.name' path: write e.g. {key}=mynets.TinyCNN for a "
                            "class TinyCNN in mynets.py.")
    if module == "__main__" or module.startswith("__main__."):
        raise UserCodeError(f"{key}={target}: objects of __main__ (the script or notebook being run) cannot be imported "
                            "again by joblib, SLURM, torchrun or a resume. Move it into a file (e.g. mynets.py beside the "
                            "command) and name that, or pass the object itself: dlcourse.train(model=MyNet()).")
    mod = _import(module, key, target)
    found = mod
    for part in attribute.split("."):
        if not hasattr(found, part):
            names = _public_names(mod)
            raise UserCodeError(f"{key}={target}: {module} has no '{attribute}'. It defines: "
                                f"{', '.join(names) if names else 'no classes or functions'}.")
        found = getattr(found, part)
    check_role(found, key, target, role)
    return found


def _subclass_of(obj, base: str) -> bool:
    mod, _, name = base.rpartition(".")
    return inspect.isclass(obj) and issubclass(obj, getattr(importlib.import_module(mod), name))


def _defined_in(obj, packages: Iterable[str]) -> bool:
    module = getattr(obj, "__module__", "") or ""
    return any(module == p or module.startswith(p + ".") for p in packages if p)


def check_role(obj, key: str, target: str, role: str) -> None:
    """Refuse `obj` unless it may serve as `role`; nothing of it has run."""
    kind = ROLES[role]
    source = inspect.getsourcefile(obj) if (inspect.isclass(obj) or inspect.isfunction(obj)) else None
    user = is_user_file(source) or _defined_in(obj, ("dlcourse",))
    if inspect.isclass(obj):
        ok = _subclass_of(obj, kind.base) if kind.base else user
    else:
        ok = kind.functions and inspect.isfunction(obj) and (user or _defined_in(obj, kind.functions_from))
    if not ok:
        what = ("a class" if inspect.isclass(obj) else "a built-in" if inspect.isbuiltin(obj)
                else "a function" if callable(obj) else type(obj).__name__)
        where = "your own code" if user else f"{getattr(obj, '__module__', None) or 'an installed package'}"
        rule = (f" (functions: from your own code or {', '.join(p for p in kind.functions_from if not p.startswith('dlcourse'))})"
                if kind.functions else "" if kind.base else " defined in your own code")
        raise UserCodeError(f"{key}={target} is {what} of {where}, but {key} must be {kind.what}{rule}. It was refused "
                            "before anything ran: configs and checkpoints may only name such objects.")


def signature_arguments(factory: Callable) -> tuple[set[str], bool]:
    """The keyword names `factory` accepts, and whether it takes **kwargs."""
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return set(), True
    names = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return names - {"self"}, any(p.kind == p.VAR_KEYWORD for p in params)


def unknown_arguments(factory: Callable, keys: Iterable[str], also: Iterable[str] = ()) -> tuple[list[str], set[str]]:
    """The `keys` that `factory` does not accept as keywords (besides `also`), and the names it does."""
    names, any_keyword = signature_arguments(factory)
    return sorted(k for k in keys if k not in names and k not in set(also) and not any_keyword), names


def call(factory: Callable, key: str, target: str, options: dict, provided: Optional[dict] = None) -> Any:
    """`factory(**options)` plus those `provided` values (e.g. input_shape, num_outputs) whose names
    its signature has; a wrong keyword or an exception inside it becomes one paragraph."""
    unknown, names = unknown_arguments(factory, options)
    if unknown:
        section = key.rsplit(".", 1)[0]
        accepted = sorted(names - set(provided or {}))
        raise UserCodeError(f"{target} takes no argument {', '.join(repr(u) for u in unknown)} (from "
                            f"{', '.join(f'{section}.{u}' for u in unknown)}). It accepts: "
                            f"{', '.join(accepted) if accepted else 'no arguments from the config'}.")
    kwargs = {k: v for k, v in (provided or {}).items() if k in names and k not in options}
    try:
        return factory(**options, **kwargs)
    except Exception as e:
        frame = user_frame(e.__traceback__)
        if frame is None:
            raise
        raise UserCodeError(f"{key}={target} raised {type(e).__name__}{_at(frame)} while being built: {e}. It is an "
                            f"error in your code (arguments given: {', '.join(sorted({**options, **kwargs})) or 'none'}).") from None


def missing_code_hint(code_dirs: Iterable[str], target: str) -> str:
    """Where a stored run found the module of `target`, for an error when it cannot be imported."""
    top = str(target).split(".")[0]
    holding = [d for d in code_dirs if d and ((Path(d) / f"{top}.py").is_file() or (Path(d) / top / "__init__.py").is_file())]
    if holding:
        return (f" The run imported it from {holding[0]}: pass that folder (--config-dir {holding[0]}, with train.py "
                "and the scripts alike), start the command there, or install that code as a package.")
    dirs = [d for d in code_dirs if d]
    return (f" The run was trained with its code in {', '.join(dirs)}, which no longer holds {top}: put the file back, "
            "or pass the folder that holds it with --config-dir." if dirs else "")
