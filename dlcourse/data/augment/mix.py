"""Mixup and cutmix on a normalised batch, drawing from the augmentation generator."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


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
