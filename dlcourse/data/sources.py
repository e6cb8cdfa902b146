"""Where a dataset's files are: `dataset.root`, then Debian's dataset packages, then a download."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable

from dlcourse.errors import DataError

DEBIAN_DATASETS = Path("/usr/share/datasets")
# Debian packages that ship a dataset under /usr/share/datasets/<folder>.
DEBIAN_PACKAGES = {"fashion_mnist": "dataset-fashion-mnist"}


def _has_all(folder: Path, files: Iterable[str]) -> bool:
    return all((folder / f).exists() or (folder / f"{f}.gz").exists() for f in files)


def candidate_folders(name: str, root: str, subdirs: Iterable[str] = ()) -> list[Path]:
    """Folders searched, in order: <root>/<name>, <root>, then /usr/share/datasets/<name with dashes>."""
    bases = [Path(root) / name, Path(root), DEBIAN_DATASETS / name.replace("_", "-")]
    folders = []
    for base in bases:
        folders.append(base)
        folders.extend(base / s for s in subdirs)
    return folders


def locate(name: str, root: str, files: tuple[str, ...], download: bool,
           fetch: Callable[[Path], None], subdirs: Iterable[str] = (), note: str = "") -> Path:
    """The first folder holding all `files` (plain or .gz); downloads with `fetch(root)` if allowed.

    `note` ends the not-found message (e.g. which archive unpacks to the expected folder).
    """
    subdirs = tuple(subdirs)
    for folder in candidate_folders(name, root, subdirs):
        if _has_all(folder, files):
            return folder
    if download:
        try:
            fetch(Path(root))
        except Exception as e:  # network errors come in many types
            raise DataError(f"Downloading dataset '{name}' into dataset.root={root} failed ({e}). "
                            "Check the internet connection, or put the files there by hand.") from None
        for folder in candidate_folders(name, root, subdirs):
            if _has_all(folder, files):
                return folder
    looked = ", ".join(str(f) for f in candidate_folders(name, root, subdirs))
    package = DEBIAN_PACKAGES.get(name)
    hint = f" or `sudo apt install {package}`" if package else ""
    raise DataError(
        f"Dataset '{name}' not found: looked for {', '.join(files)} (plain or .gz) in {looked}. "
        f"Get it with dataset.download=true (needs internet){hint}, or copy the files into "
        f"dataset.root={root}/{name}.{' ' + note if note else ''}")
