"""dlcourse: config-driven PyTorch training for deep-learning courses.

From Python: `dlcourse.train(...)`, `dlcourse.sweep(...)`, `dlcourse.load(...)`, `dlcourse.compose(...)`
(dlcourse/api.py; imported on first use, so `import dlcourse` stays cheap)."""
__version__ = "0.1.0"

_API = ("train", "sweep", "load", "compose")
__all__ = [*_API, "__version__"]


def __getattr__(name: str):
    if name in _API:
        from dlcourse import api

        return getattr(api, name)
    raise AttributeError(f"module 'dlcourse' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_API])
