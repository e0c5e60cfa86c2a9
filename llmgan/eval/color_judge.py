"""A colour and background judge made of pixel statistics alone, with no learned weights, so it shares nothing with
any trained model: it names the background of an RGBA or RGB image (transparent, or the palette colour most of its
border pixels are nearest to) and the colour of what is drawn on it (the nearest palette colour of the pixels that
stand out most from that background), by CIELAB distance. Palettes default to the game-icons dataset's.

Why these statistics: icons and sprites sit inside a margin, so the border ring is background; the drawn pixels
are the ones far from the background, and their far end (not the anti-aliased rim, a blend of both colours)
carries the foreground colour.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from llmgan.data.game_icons import BACKGROUNDS, COLORS
from llmgan.domains.colors import srgb_to_lab

RGB = tuple[int, int, int]
RING = 1 / 32  # border ring width as a share of the side (2 px at 64 px), at least 1 px
OPAQUE = 0.5  # alpha above which a pixel counts as drawn
FAR = 0.8  # foreground pixels: at least this share of the 99th-percentile distance from the background
MIN_CONTRAST = 8.0  # delta E below which nothing stands out from the background


@dataclass(frozen=True)
class ColorVerdict:
    """What the judge sees: colour and background names ("" when nothing is drawn) and the CIELAB distances
    of the measured colours to the named ones (large: the image's colour is far from every palette entry)."""

    color: str
    background: str
    color_distance: float
    background_distance: float


def _nearest(rgb: np.ndarray, palette: Mapping[str, RGB]) -> tuple[str, float]:
    names = list(palette)
    d = np.linalg.norm(srgb_to_lab(np.array([palette[n] for n in names], dtype=np.float64)) - srgb_to_lab(rgb), axis=-1)
    i = int(np.argmin(d))
    return names[i], float(d[i])


def _ring(side: int) -> np.ndarray:
    w = max(1, round(side * RING))
    mask = np.zeros((side, side), dtype=bool)
    mask[:w], mask[-w:], mask[:, :w], mask[:, -w:] = True, True, True, True
    return mask


def judge_image(image: np.ndarray, colors: Mapping[str, RGB] = COLORS,
                backgrounds: Mapping[str, RGB | None] = BACKGROUNDS) -> ColorVerdict:
    """Name the foreground colour and background of one uint8 (H, W, 3|4) image. A background palette entry of None
    is transparency; an RGB image, or an RGBA one with an opaque border, has a coloured background."""
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] not in (3, 4) or img.shape[0] != img.shape[1]:
        raise ValueError(f"expected a square (H, W, 3 or 4) image, got shape {img.shape}")
    rgb = img[..., :3].astype(np.float64)
    alpha = img[..., 3].astype(np.float64) / 255.0 if img.shape[2] == 4 else np.ones(img.shape[:2])
    ring = _ring(img.shape[0])
    clear = [name for name, value in backgrounds.items() if value is None]
    solid = {name: value for name, value in backgrounds.items() if value is not None}
    if clear and np.median(alpha[ring]) < OPAQUE:
        drawn = alpha >= OPAQUE
        if not drawn.any():
            return ColorVerdict("", clear[0], float("inf"), 0.0)
        # the most opaque pixels: the rim's colour is the same here, but its alpha is partial
        core = alpha >= max(OPAQUE, FAR * float(alpha.max()))
        color, cd = _nearest(np.median(rgb[core], axis=0), colors)
        return ColorVerdict(color, clear[0], cd, 0.0)
    if solid:  # a vote of the ring's pixels: robust to a drawing that reaches the border in places
        names = list(solid)
        lab, ref = srgb_to_lab(rgb[ring]), srgb_to_lab(np.array([solid[n] for n in names], dtype=np.float64))
        votes = np.argmin(np.linalg.norm(lab[:, None] - ref[None], axis=-1), axis=1)
        winner = int(np.bincount(votes, minlength=len(names)).argmax())
        back = np.median(rgb[ring][votes == winner], axis=0)
        background, bd = _nearest(back, solid)
    else:
        back, background, bd = np.median(rgb[ring], axis=0), "", float("inf")
    dist = np.linalg.norm(srgb_to_lab(rgb) - srgb_to_lab(back), axis=-1)
    far = float(np.percentile(dist, 99))
    if far < MIN_CONTRAST:
        return ColorVerdict("", background, float("inf"), bd)
    color, cd = _nearest(np.median(rgb[dist >= FAR * far], axis=0), colors)
    return ColorVerdict(color, background, cd, bd)


def judge_images(images: Sequence[np.ndarray] | np.ndarray, colors: Mapping[str, RGB] = COLORS,
                 backgrounds: Mapping[str, RGB | None] = BACKGROUNDS) -> list[ColorVerdict]:
    """`judge_image` over a batch (N, H, W, C) or a list of images."""
    return [judge_image(img, colors, backgrounds) for img in images]


def judge_accuracy(verdicts: Sequence[ColorVerdict], colors: Sequence[str], backgrounds: Sequence[str]
                   ) -> dict[str, float]:
    """Shares right: colour, background and both, over the stated labels of each image."""
    n = len(verdicts)
    if n == 0 or len(colors) != n or len(backgrounds) != n:
        raise ValueError(f"need as many stated colours and backgrounds as verdicts ({n}), got {len(colors)} and "
                         f"{len(backgrounds)}")
    c = np.array([v.color == s for v, s in zip(verdicts, colors)])
    b = np.array([v.background == s for v, s in zip(verdicts, backgrounds)])
    return {"color": float(c.mean()), "background": float(b.mean()), "both": float((c & b).mean()), "n": float(n)}

