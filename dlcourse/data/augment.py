"""Data augmentation, per sample and batched on the training device, plus mixup and cutmix.

`build_augmentation(num_classes, device, seed, **options)` turns the `augment.*` keys into
  - `transform`: float [N, C, H, W] in [0, 1] -> same; every image draws its own parameters,
    with a handful of tensor ops over the whole batch (no Python loop over samples, no PIL);
  - `batch_transform`: mixup / cutmix on the normalised batch, (x, labels) -> (x, soft targets);
  - `generator`: the one torch.Generator, on the device, that every random draw uses; the engine
    saves its state in checkpoints, so a resumed run sees the same augmented batches.
`folder_transforms` gives the same operations as a torchvision.transforms.v2 pipeline for image
folders read by a DataLoader.

Why our own ops rather than a library. torchvision.transforms.v2 draws one set of parameters
per call, i.e. per batch, not per image. kornia.augmentation is per image and batched, but it
draws from the global torch RNG (no generator argument), so exact resume would need the global
state managed around every call, and it costs more than a small model step can hide. Measured
with `python scripts/augment_speed.py --threads 1 --clock cpu --kornia` (batch 128, CPU time of
one thread, kornia 0.9.0): `standard` (crop with padding 4 + flip) takes 0.65 ms at 3x32x32 and
0.37 ms at 1x28x28, kornia's equivalent 4.1 and 2.8 ms; `strong` 3.9 and 2.2 ms, kornia's 16.5
and 8.1 ms. One LeNet-5 training step takes 22 ms (ResNet-18: 0.9 s with torchvision's stem,
7.2 s with the CIFAR stem), and the whole TensorLoader + training loop keeps 95-96 % of its
speed without augmentation with `standard` (LeNet; 81-90 % with `strong`; ResNet-18: no
measurable difference); kornia's `standard` alone would add about 20 % to a LeNet step.
The ops are short: a crop with zero padding plus flip is one gather with per-image offsets; a
resized crop or a rotation is one grid_sample pass with per-image matrices (flip and padding
shift folded in); jitter is per-image factors broadcast over pixels; erasing is a per-image box
mask. Parameter distributions follow torchvision (RandomResizedCrop, RandomErasing, ColorJitter).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F

from dlcourse.errors import ConfigError

# Every key of configs/augment/*.yaml, at its "off" value (configs/augment/none.yaml).
OFF: dict[str, Any] = {
    "hflip": 0.0,                # probability of a horizontal flip
    "crop_padding": 0,           # random crop after zero padding: pixels, or a fraction (< 1) of the side
    "resized_crop_scale": None,  # [min, max] area fraction of a random resized crop; null = off
    "rotation": 0.0,             # random rotation in [-degrees, +degrees]
    "brightness": 0.0,           # colour jitter: factor drawn from [max(0, 1 - v), 1 + v]
    "contrast": 0.0,
    "saturation": 0.0,
    "erasing": 0.0,              # probability of erasing (zeroing) a random box
    "mixup_alpha": 0.0,          # mixup: mixing weight ~ Beta(alpha, alpha); 0 = off
    "cutmix_alpha": 0.0,         # cutmix: box area ~ Beta(alpha, alpha); 0 = off
}
RESIZED_CROP_RATIO = (3 / 4, 4 / 3)  # torchvision RandomResizedCrop's aspect-ratio range
ERASING_SCALE, ERASING_RATIO = (0.02, 0.33), (0.3, 3.3)  # torchvision RandomErasing's defaults
TRIES = 10  # candidate boxes per image, as torchvision's resized crop and erasing retry 10 times


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
                          f"{', '.join('augment.' + k for k in OFF)} (see configs/augment/none.yaml).")
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


def padding_pixels(crop_padding: float, side: int) -> int:
    """`crop_padding` in pixels for an image side: a fraction below 1 scales with the image."""
    return int(crop_padding) if crop_padding >= 1 else int(math.floor(crop_padding * side + 0.5))


class BatchAugment:
    """The per-image transform: geometry (one sampling pass), colour jitter, erasing."""

    def __init__(self, options: dict[str, Any], generator: torch.Generator):
        self.o, self.g = options, generator

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        o, new = self.o, False  # `new`: x is our own tensor, not the caller's, so ops may work in place
        if o["resized_crop_scale"] is not None or o["rotation"]:
            x, new = self._affine(x), True
        elif o["crop_padding"] or o["hflip"]:
            x, new = self._shift_flip(x), True
        if o["brightness"] or o["contrast"] or o["saturation"]:
            x, new = self._jitter(x if new else x.clone()), True
        if o["erasing"]:
            x = self._erase(x if new else x.clone())
        return x

    # random draws, all from the generator, on the batch's device
    def _uniform(self, n: int, low: float, high: float, device, *shape: int) -> torch.Tensor:
        return torch.rand((n, *shape), generator=self.g, device=device) * (high - low) + low

    def _coin(self, n: int, p: float, device) -> torch.Tensor:
        return torch.rand(n, generator=self.g, device=device) < p

    def _shifts(self, n: int, pad: int, device) -> torch.Tensor:
        return torch.randint(-pad, pad + 1, (n,), generator=self.g, device=device)

    def _shift_flip(self, x: torch.Tensor) -> torch.Tensor:
        """Random crop of the zero-padded image and/or horizontal flip, as one gather of pixels:
        output pixel (r, c) reads input (r + dy, c + dx), or (r + dy, w - 1 - c + dx) when flipped,
        with shifts dy in [-pad_h, pad_h], dx in [-pad_w, pad_w] per image; pixels that fall
        outside the image (in the padding) are zero. No padded copy of the batch is made."""
        n, c, h, w = x.shape
        rows = torch.arange(h, device=x.device).expand(n, h)
        cols = torch.arange(w, device=x.device).expand(n, w)
        if self.o["hflip"]:
            cols = torch.where(self._coin(n, self.o["hflip"], x.device)[:, None], cols.flip(1), cols)
        pad_h, pad_w = padding_pixels(self.o["crop_padding"], h), padding_pixels(self.o["crop_padding"], w)
        if pad_h or pad_w:
            rows = rows + self._shifts(n, pad_h, x.device)[:, None]
            cols = cols + self._shifts(n, pad_w, x.device)[:, None]
        index = rows.clamp(0, h - 1)[:, :, None] * w + cols.clamp(0, w - 1)[:, None, :]
        out = x.reshape(n, c, h * w).gather(2, index.view(n, 1, h * w).expand(n, c, h * w)).view(n, c, h, w)
        if pad_h or pad_w:  # zero the rows and columns that came from the padding
            out.mul_(((rows >= 0) & (rows < h)).to(x.dtype).view(n, 1, h, 1))
            out.mul_(((cols >= 0) & (cols < w)).to(x.dtype).view(n, 1, 1, w))
        return out

    def _affine(self, x: torch.Tensor) -> torch.Tensor:
        """Resized crop, rotation, padding shift and flip as one bilinear sampling pass.

        Each image gets a 3x3 matrix mapping output to input coordinates (normalised to [-1, 1]):
        crop @ rotation @ shift @ flip, i.e. the image is cropped, then rotated, shifted, flipped.
        """
        n, _, h, w = x.shape
        o, dev = self.o, x.device
        m = torch.eye(3, device=dev).repeat(n, 1, 1)
        if o["resized_crop_scale"] is not None:
            top, left, ch, cw = self._crop_boxes(n, h, w, dev)
            m[:, 0, 0], m[:, 0, 2] = cw / w, (2 * left + cw) / w - 1
            m[:, 1, 1], m[:, 1, 2] = ch / h, (2 * top + ch) / h - 1
        if o["rotation"]:
            angle = self._uniform(n, -o["rotation"], o["rotation"], dev) * (math.pi / 180)
            cos, sin = angle.cos(), angle.sin()
            r = torch.zeros(n, 3, 3, device=dev)
            r[:, 0, 0], r[:, 0, 1], r[:, 2, 2] = cos, -sin * h / w, 1
            r[:, 1, 0], r[:, 1, 1] = sin * w / h, cos
            m = m @ r
        pad_h, pad_w = padding_pixels(o["crop_padding"], h), padding_pixels(o["crop_padding"], w)
        if pad_h or pad_w:
            shift = torch.eye(3, device=dev).repeat(n, 1, 1)
            shift[:, 0, 2] = self._shifts(n, pad_w, dev) * (2 / w)
            shift[:, 1, 2] = self._shifts(n, pad_h, dev) * (2 / h)
            m = m @ shift
        if o["hflip"]:
            m[:, :, 0] *= 1 - 2 * self._coin(n, o["hflip"], dev).to(m.dtype)[:, None]
        # the sampling grid, as F.affine_grid(m[:, :2]) builds it but by broadcasting (its batched
        # matrix product of tiny matrices is several times slower on CPU)
        xs = ((torch.arange(w, device=dev, dtype=x.dtype) * 2 + 1) / w - 1).view(1, 1, w)
        ys = ((torch.arange(h, device=dev, dtype=x.dtype) * 2 + 1) / h - 1).view(1, h, 1)
        m = m.to(x.dtype).view(n, 9, 1, 1)
        grid = torch.stack((m[:, 0] * xs + m[:, 1] * ys + m[:, 2],
                            m[:, 3] * xs + m[:, 4] * ys + m[:, 5]), dim=-1)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    def _boxes(self, n: int, h: int, w: int, dev, scale, ratio) -> tuple[torch.Tensor, ...]:
        """TRIES candidate boxes per image (area fraction in `scale`, log-uniform aspect w/h in
        `ratio`), rounded to pixels; returns heights, widths [n, TRIES]."""
        area = self._uniform(n, scale[0], scale[1], dev, TRIES) * (h * w)
        aspect = torch.exp(self._uniform(n, math.log(ratio[0]), math.log(ratio[1]), dev, TRIES))
        return (area / aspect).sqrt().round(), (area * aspect).sqrt().round()

    def _place(self, size: torch.Tensor, side: int, dev) -> torch.Tensor:
        """A uniform whole-pixel offset in [0, side - size] per box."""
        return (torch.rand(size.shape, generator=self.g, device=dev) * (side - size + 1)).floor()

    @staticmethod
    def _first(ok: torch.Tensor, *values: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The values of each image's first acceptable candidate (the first one if none is)."""
        first = ok.to(torch.uint8).argmax(1, keepdim=True)
        return tuple(v.gather(1, first).squeeze(1) for v in values)

    def _crop_boxes(self, n: int, h: int, w: int, dev) -> tuple[torch.Tensor, ...]:
        """RandomResizedCrop's boxes: top, left, height, width per image (floats of whole pixels)."""
        ch, cw = self._boxes(n, h, w, dev, self.o["resized_crop_scale"], RESIZED_CROP_RATIO)
        ok = (ch >= 1) & (ch <= h) & (cw >= 1) & (cw <= w)
        ch, cw = self._first(ok, ch, cw)
        # no candidate fits (rare): torchvision's fallback, the central crop of clamped aspect ratio
        lo, hi = RESIZED_CROP_RATIO
        fh, fw = (h, w) if lo <= w / h <= hi else (round(w / lo), w) if w / h < lo else (h, round(h * hi))
        fits = ok.any(1)
        ch, cw = torch.where(fits, ch, float(fh)), torch.where(fits, cw, float(fw))
        top = torch.where(fits, self._place(ch, h, dev), float((h - fh) // 2))
        left = torch.where(fits, self._place(cw, w, dev), float((w - fw) // 2))
        return top, left, ch, cw

    def _jitter(self, x: torch.Tensor) -> torch.Tensor:
        """ColorJitter's brightness, contrast, saturation (in this fixed order), factors per image;
        each step blends with a per-image reference and clips to [0, 1], as torchvision does. In place."""
        n, c = x.shape[:2]
        o, dev = self.o, x.device
        weights = [0.2989, 0.587, 0.114] if c == 3 else [1.0 / c] * c  # torchvision's grayscale

        def factor(v: float) -> torch.Tensor:
            return self._uniform(n, max(0.0, 1 - v), 1 + v, dev, 1, 1, 1)

        if o["brightness"]:  # blend with black
            x.mul_(factor(o["brightness"])).clamp_(0, 1)
        if o["contrast"]:  # blend with the mean gray level of the image
            mean = (x.mean(dim=(2, 3)) @ x.new_tensor(weights)).view(n, 1, 1, 1)
            x.lerp_(mean.expand_as(x), 1 - factor(o["contrast"])).clamp_(0, 1)
        if o["saturation"] and c == 3:  # blend with the grayscale image; gray images have no saturation
            gray = x[:, 0:1] * weights[0]
            gray.add_(x[:, 1:2], alpha=weights[1]).add_(x[:, 2:3], alpha=weights[2])
            x.lerp_(gray.expand_as(x), 1 - factor(o["saturation"])).clamp_(0, 1)
        return x

    def _erase(self, x: torch.Tensor) -> torch.Tensor:
        """RandomErasing: with probability `erasing`, zero a random box (area 2-33 %, aspect 0.3-3.3).
        In place."""
        n, _, h, w = x.shape
        dev = x.device
        bw, bh = self._boxes(n, h, w, dev, ERASING_SCALE, ERASING_RATIO)  # its ratio is h/w
        ok = (bh >= 1) & (bh < h) & (bw >= 1) & (bw < w)
        bh, bw = self._first(ok, bh, bw)
        top, left = self._place(bh, h, dev)[:, None], self._place(bw, w, dev)[:, None]
        erase = (self._coin(n, self.o["erasing"], dev) & ok.any(1))[:, None]
        rows, cols = torch.arange(h, device=dev), torch.arange(w, device=dev)
        in_rows = (rows >= top) & (rows < top + bh[:, None]) & erase
        in_cols = (cols >= left) & (cols < left + bw[:, None])
        return x.masked_fill_((in_rows[:, :, None] & in_cols[:, None, :])[:, None], 0.0)


def sample_beta(alpha: float, n: int, generator: torch.Generator, device) -> torch.Tensor:
    """n draws of Beta(alpha, alpha) on `device` from `generator` (torch.distributions takes no
    generator): Gamma variates by Marsaglia and Tsang's method, in log space so small alphas
    cannot underflow, with 16 candidates per draw (each accepted with probability > 0.95)."""
    a = alpha + 1 if alpha < 1 else alpha  # Gamma(alpha) = Gamma(alpha + 1) * U^(1 / alpha)
    d = a - 1 / 3
    c = 1 / math.sqrt(9 * d)
    z = torch.randn((2, n, 16), generator=generator, device=device)
    u = torch.rand((2, n, 16), generator=generator, device=device)
    v = (1 + c * z).clamp_min(1e-6) ** 3
    ok = (1 + c * z > 0) & (u.log() < 0.5 * z * z + d - d * v + d * v.log())
    first = ok.to(torch.uint8).argmax(2, keepdim=True)
    log_gamma = (d * v).log().gather(2, first).squeeze(2)
    if alpha < 1:
        boost = torch.rand((2, n), generator=generator, device=device).clamp_min(1e-12)
        log_gamma = log_gamma + boost.log() / alpha
    return torch.sigmoid(log_gamma[0] - log_gamma[1])  # G1 / (G1 + G2)


class MixBatch:
    """Mixup and/or cutmix on a normalised batch: each image is mixed with a partner from a
    per-batch permutation with its own weight; targets become the matching class probabilities.
    With both on, each image uses one of the two, chosen with probability 1/2."""

    def __init__(self, num_classes: int, mixup_alpha: float, cutmix_alpha: float, generator: torch.Generator):
        self.num_classes, self.g = num_classes, generator
        self.mixup_alpha, self.cutmix_alpha = mixup_alpha, cutmix_alpha

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n, _, h, w = x.shape
        dev = x.device
        partner = torch.randperm(n, generator=self.g, device=dev)
        keep = None  # share of each pixel kept from the image itself, [n, 1, h, w] or [n, 1, 1, 1]
        if self.mixup_alpha:
            keep = sample_beta(self.mixup_alpha, n, self.g, dev).view(n, 1, 1, 1)
        if self.cutmix_alpha:
            box = self._cut_boxes(sample_beta(self.cutmix_alpha, n, self.g, dev), h, w)
            cut = (~box).to(x.dtype)[:, None]
            if keep is not None:
                use_cut = torch.rand(n, generator=self.g, device=dev) < 0.5
                cut = torch.where(use_cut.view(n, 1, 1, 1), cut, keep)
            keep = cut
        mixed = torch.lerp(x[partner], x, keep.to(x.dtype))
        lam = keep.mean(dim=(1, 2, 3)).float()[:, None]  # the kept share of the image
        onehot = F.one_hot(y, self.num_classes).float()
        return mixed, torch.lerp(onehot[partner], onehot, lam)

    def _cut_boxes(self, lam: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """CutMix boxes (Yun et al., 2019): side sqrt(1 - lam) of the image's, random centre, clipped."""
        n, dev = len(lam), lam.device
        cut = (1 - lam).sqrt()
        half_h, half_w = (cut * h).floor() // 2, (cut * w).floor() // 2
        cy = torch.randint(0, h, (n,), generator=self.g, device=dev)
        cx = torch.randint(0, w, (n,), generator=self.g, device=dev)
        rows = torch.arange(h, device=dev).view(1, h, 1)
        cols = torch.arange(w, device=dev).view(1, 1, w)
        y0, y1 = (cy - half_h).clamp(0, h).view(n, 1, 1), (cy + half_h).clamp(0, h).view(n, 1, 1)
        x0, x1 = (cx - half_w).clamp(0, w).view(n, 1, 1), (cx + half_w).clamp(0, w).view(n, 1, 1)
        return (rows >= y0) & (rows < y1) & (cols >= x0) & (cols < x1)


@dataclass
class Augmentation:
    """What the training loop needs: the per-image transform and the batch transform (None when
    off), and the generator they draw from (its state goes into checkpoints)."""

    transform: Optional[Callable[[torch.Tensor], torch.Tensor]]
    batch_transform: Optional[Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]]
    generator: torch.Generator
    options: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        on = [f"{k}={v}" for k, v in self.options.items() if v != OFF[k]]
        return ", ".join(on) if on else "none"


def augment_seed(seed: int) -> int:
    """The generator's seed, derived from the run seed so that it differs from the shuffling's."""
    return int(np.random.SeedSequence([seed, 0xA06]).generate_state(1, np.uint64)[0] >> 1)


def build_augmentation(num_classes: int, device: torch.device, seed: int, **options) -> Augmentation:
    """The augmentation that `options` (the `augment.*` keys) describe, seeded, on `device`."""
    o = check_options(options)
    generator = torch.Generator(device=device).manual_seed(augment_seed(seed))
    per_image = any(o[k] != OFF[k] for k in OFF if k not in ("mixup_alpha", "cutmix_alpha"))
    transform = BatchAugment(o, generator) if per_image else None
    mixing = o["mixup_alpha"] or o["cutmix_alpha"]
    batch_transform = (MixBatch(num_classes, o["mixup_alpha"], o["cutmix_alpha"], generator)
                       if mixing else None)
    return Augmentation(transform, batch_transform, generator, o)


def folder_transforms(image_size: int, train: bool, resize_size: Optional[int] = None, **options):
    """torchvision.transforms.v2 pipeline for image folders (PIL image or uint8 tensor -> float
    [0, 1], not normalised): the per-image ops above, drawn by torchvision from the global RNG
    (seeded per DataLoader worker). Evaluation (train=False) resizes the short side to
    `resize_size` (default `image_size`) and crops the centre. Mixup/cutmix stay batch_transform's."""
    from torchvision.transforms import v2

    o = check_options(options)
    resize = [v2.Resize(resize_size or image_size, antialias=True), v2.CenterCrop(image_size)]
    tail = [v2.ToImage(), v2.ToDtype(torch.float32, scale=True)]
    if not train:
        return v2.Compose([*resize, *tail])
    ops = ([v2.RandomResizedCrop(image_size, scale=o["resized_crop_scale"], ratio=RESIZED_CROP_RATIO,
                                 antialias=True)] if o["resized_crop_scale"] else resize)
    ops.append(v2.ToImage())
    if o["rotation"]:
        ops.append(v2.RandomRotation(o["rotation"], interpolation=v2.InterpolationMode.BILINEAR))
    if o["crop_padding"]:
        ops.append(v2.RandomCrop(image_size, padding=padding_pixels(o["crop_padding"], image_size)))
    if o["hflip"]:
        ops.append(v2.RandomHorizontalFlip(o["hflip"]))
    if o["brightness"] or o["contrast"] or o["saturation"]:
        ops.append(v2.ColorJitter(brightness=o["brightness"] or None, contrast=o["contrast"] or None,
                                  saturation=o["saturation"] or None))
    ops.append(v2.ToDtype(torch.float32, scale=True))
    if o["erasing"]:
        ops.append(v2.RandomErasing(o["erasing"], scale=ERASING_SCALE, ratio=ERASING_RATIO, value=0))
    return v2.Compose(ops)
