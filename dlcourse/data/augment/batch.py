"""Per-image augmentation, batched on the training device: every image draws its own parameters,
with a handful of tensor ops over the whole batch (no Python loop over samples, no PIL).

Why our own ops rather than a library. torchvision.transforms.v2 draws one set of parameters
per call, i.e. per batch, not per image. kornia.augmentation is per image and batched, but it
draws from the global torch RNG (no generator argument), so exact resume would need the global
state managed around every call, and it costs more than a small model step can hide
(`python -m benchmarks.augment_speed --kornia`; the figures are in the README). The ops are
short: a crop with zero padding plus flip is one gather with per-image offsets; a resized crop or
a rotation is one grid_sample pass with per-image matrices (flip and padding shift folded in);
jitter is per-image factors broadcast over pixels; erasing is a per-image box mask. Parameter
distributions follow torchvision (RandomResizedCrop, RandomErasing, ColorJitter).
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

RESIZED_CROP_RATIO = (3 / 4, 4 / 3)  # torchvision RandomResizedCrop's aspect-ratio range
ERASING_SCALE, ERASING_RATIO = (0.02, 0.33), (0.3, 3.3)  # torchvision RandomErasing's defaults
TRIES = 10  # candidate boxes per image, as torchvision's resized crop and erasing retry 10 times


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
