"""The augmentation options (`augment.*`): their one definition, with the "off" defaults, and the
checks of their values. `dlcourse/config.py` uses `AugmentOptions` as the schema of the `augment`
group, so configs/augment/*.yaml only set what a preset switches on."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, List, Optional

from dlcourse.errors import ConfigError


@dataclass
class AugmentOptions:
    """Every augmentation knob at its "off" value."""

    hflip: float = 0.0  # probability of a horizontal flip
    crop_padding: float = 0.0  # random crop after zero padding: pixels (4), or a fraction (< 1) of the side
    resized_crop_scale: Optional[List[float]] = None  # [min, max] area fraction of a random resized crop
    rotation: float = 0.0  # random rotation in [-degrees, +degrees]
    brightness: float = 0.0  # colour jitter: factor drawn from [max(0, 1 - v), 1 + v]
    contrast: float = 0.0
    saturation: float = 0.0  # colour images only
    erasing: float = 0.0  # probability of erasing (zeroing) a random box, 2-33 % of the image
    mixup_alpha: float = 0.0  # mixup: mixing weight ~ Beta(alpha, alpha); 0 = off
    cutmix_alpha: float = 0.0  # cutmix: box area ~ Beta(alpha, alpha); 0 = off


OFF: dict[str, Any] = asdict(AugmentOptions())


def _bad(key: str, value: Any, allowed: str) -> ConfigError:
    return ConfigError(f"augment.{key}={value!r} is not valid: {allowed}. Fix it on the command line, "
                       f"e.g. `python train.py augment.{key}=...`, or in configs/augment/*.yaml.")


def _number(key: str, value: Any, low: float, high: float = math.inf, allowed: str = "") -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise _bad(key, value, allowed)
    return float(value)


def check_options(options: dict[str, Any]) -> dict[str, Any]:
    """The full option set: `options` over the off values, each checked; ConfigError names the key."""
    unknown = sorted(set(options) - set(OFF))
    if unknown:
        raise ConfigError(f"augment.{unknown[0]} is not an augmentation option. Known keys: "
                          f"{', '.join('augment.' + k for k in OFF)} (dlcourse/data/augment/options.py).")
    o = {**OFF, **{k: v for k, v in options.items() if v is not None}}
    for key in ("hflip", "erasing"):
        o[key] = _number(key, o[key], 0, 1, "it is a probability in [0, 1] (0 = off)")
    pad = o["crop_padding"]
    _number("crop_padding", pad, 0, allowed="it is a padding >= 0: whole pixels (4), or a fraction "
            "of the image side below 1 (0.125 = 4 px at 32x32)")
    if pad >= 1 and pad != int(pad):
        raise _bad("crop_padding", pad, "pixels must be a whole number (or a fraction below 1)")
    o["crop_padding"] = int(pad) if pad >= 1 or pad == 0 else float(pad)
    for key in ("brightness", "contrast", "saturation"):
        o[key] = _number(key, o[key], 0, allowed="it is a jitter strength >= 0 (0 = off, 0.4 is usual)")
    o["rotation"] = _number("rotation", o["rotation"], 0, 180, "it is a number of degrees in [0, 180]")
    for key in ("mixup_alpha", "cutmix_alpha"):
        o[key] = _number(key, o[key], 0, allowed="it is a Beta(alpha, alpha) parameter >= 0 (0 = off)")
    scale = o["resized_crop_scale"]
    if scale is not None:
        ok = (isinstance(scale, (list, tuple)) and len(scale) == 2
              and all(isinstance(s, (int, float)) and not isinstance(s, bool) for s in scale)
              and 0 < scale[0] <= scale[1] <= 1)
        if not ok:
            raise _bad("resized_crop_scale", scale, "it is null (off) or [min, max] area fractions with "
                       "0 < min <= max <= 1, e.g. [0.08, 1.0]")
        o["resized_crop_scale"] = (float(scale[0]), float(scale[1]))
    return o
