"""PNG figures for the evaluation report, drawn with PIL: per-attribute accuracy bars and sample grids."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from llmgan.io.images import png_bytes as png_bytes  # the one PNG encoder; report.py calls it as plots.png_bytes

BAR_COLORS = {"train": (60, 120, 220), "heldout": (235, 140, 40), "all": (60, 120, 220), "real": (150, 150, 150)}


def _font() -> ImageFont.ImageFont:
    return ImageFont.load_default()


def accuracy_bars(accuracy: dict[str, dict[str, float]], title: str) -> Image.Image:
    """Grouped bars: one group per attribute (and 'joint'), one bar per series (e.g. train, heldout)."""
    series = list(accuracy)
    attrs: list[str] = []
    for s in series:
        attrs += [a for a in accuracy[s] if a not in attrs]
    bar_w, left, top, bottom, plot_h = 16, 40, 44, 30, 200
    group_w = max(bar_w * len(series) + 24, 72)  # wide enough for the attribute name under it
    width = max(left + group_w * len(attrs) + 20, 360)
    img = Image.new("RGB", (width, top + plot_h + bottom), "white")
    d = ImageDraw.Draw(img)
    font = _font()
    d.text((left, 8), title, fill="black", font=font)
    for k, s in enumerate(series):  # legend
        x = left + 90 * k
        d.rectangle([x, 24, x + 10, 34], fill=BAR_COLORS.get(s, (90, 90, 90)))
        d.text((x + 14, 23), s, fill="black", font=font)
    for frac in (0.0, 0.25, 0.5, 0.75, 0.9, 1.0):  # grid, with the 90% target line darker
        y = top + plot_h - int(frac * plot_h)
        d.line([left, y, width - 10, y], fill=(120, 120, 120) if frac == 0.9 else (225, 225, 225))
        d.text((4, y - 6), f"{int(frac * 100)}%", fill="black", font=font)
    for g, attr in enumerate(attrs):
        x0 = left + 8 + g * group_w
        for k, s in enumerate(series):
            v = accuracy[s].get(attr)
            if v is None or not np.isfinite(v):
                continue
            x = x0 + k * bar_w
            d.rectangle([x, top + plot_h - int(v * plot_h), x + bar_w - 2, top + plot_h],
                        fill=BAR_COLORS.get(s, (90, 90, 90)))
        d.text((x0, top + plot_h + 6), attr[:11], fill="black", font=font)
    return img


def sample_grid(rows: list[tuple[str, np.ndarray | None, np.ndarray]], scale: int = 2) -> Image.Image:
    """One row per caption: a real image of it (left, grey frame), then generated images; caption above."""
    if not rows:
        return Image.new("RGB", (64, 64), "white")
    side = rows[0][2].shape[1] * scale
    cols = 1 + max(len(r[2]) for r in rows)
    pad, label_h = 4, 12
    img = Image.new("RGB", (pad + cols * (side + pad) + pad, len(rows) * (side + label_h + pad) + pad), "white")
    d = ImageDraw.Draw(img)
    font = _font()
    for r, (caption, real, gen) in enumerate(rows):
        y = pad + r * (side + label_h + pad)
        d.text((pad, y), caption[: img.width // 6], fill="black", font=font)
        y += label_h
        if real is not None:
            tile = Image.fromarray(real).resize((side, side), Image.NEAREST)
            img.paste(tile, (pad, y))
            d.rectangle([pad - 1, y - 1, pad + side, y + side], outline=(150, 150, 150))
        for c, g in enumerate(gen):
            tile = Image.fromarray(g).resize((side, side), Image.NEAREST)
            img.paste(tile, (pad + (c + 1) * (side + pad) + pad, y))
    return img
