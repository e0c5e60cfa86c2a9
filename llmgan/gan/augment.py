"""Differentiable augmentation applied to real and fake images alike (DiffAugment): small translation and cutout.

No colour transforms: colour and background are caption attributes. Translation stays small against the
distance between named positions, and pads by repeating the border so the background colour stays true.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from llmgan.gan.config import GanConfig


def translate(x: torch.Tensor, max_shift: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Shift each image by its own integer (dx, dy) in [-max_shift, max_shift]; x (N, C, H, W)."""
    if max_shift <= 0:
        return x
    n, _, h, w = x.shape
    shift = torch.randint(-max_shift, max_shift + 1, (n, 2), device=x.device, generator=generator)
    padded = F.pad(x, (max_shift,) * 4, mode="replicate")  # (N, C, H + 2t, W + 2t)
    iy = torch.arange(h, device=x.device)[None, :] + max_shift - shift[:, 1:2]  # (N, H)
    ix = torch.arange(w, device=x.device)[None, :] + max_shift - shift[:, 0:1]  # (N, W)
    batch = torch.arange(n, device=x.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[batch, iy[:, :, None], ix[:, None, :]]  # (N, H, W, C)
    return out.permute(0, 3, 1, 2)


def cutout(x: torch.Tensor, frac: float, p: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Zero a random square of side frac * H in each image with probability p (zero = mid-grey in [-1, 1])."""
    if frac <= 0 or p <= 0:
        return x
    n, _, h, w = x.shape
    side = max(1, int(round(h * frac)))
    cy = torch.randint(0, h, (n, 1, 1), device=x.device, generator=generator)
    cx = torch.randint(0, w, (n, 1, 1), device=x.device, generator=generator)
    yy = torch.arange(h, device=x.device)[None, :, None]
    xx = torch.arange(w, device=x.device)[None, None, :]
    inside = ((yy - cy).abs() <= side // 2) & ((xx - cx).abs() <= side // 2)  # (N, H, W)
    apply = torch.rand(n, 1, 1, device=x.device, generator=generator) < p
    keep = (~(inside & apply)).to(x.dtype)[:, None]  # (N, 1, H, W)
    return x * keep


def augment(x: torch.Tensor, config: GanConfig, generator: torch.Generator | None = None) -> torch.Tensor:
    """The configured augmentation chain; identity when config.augment is empty."""
    if "translation" in config.augment:
        x = translate(x, int(round(config.translation * x.shape[-1])), generator)
    if "cutout" in config.augment:
        x = cutout(x, config.cutout, config.cutout_p, generator)
    return x
