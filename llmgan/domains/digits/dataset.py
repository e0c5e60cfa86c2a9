"""The built-in digits dataset: scikit-learn's 1,797 real 8x8 handwritten digits, upscaled, with captions
enriched by attributes measured from each image (stroke thickness and slant).

Measurements are relative to the digit's own class (a "1" has less ink than an "8", a "7" leans more
than a "0"): thickness is the tertile of mean ink within the class, slant the tertile of the shear
-mu11/mu02 from image moments (positive = top leans right). So each class splits about evenly into
thin/regular/thick and leaning left/upright/leaning right.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pyarrow as pa
from PIL import Image

from llmgan.data.config import DigitsConfig
from llmgan.io.images import png_bytes

NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
THICKNESS = ("thin", "regular", "thick")
SLANT = ("leaning left", "upright", "leaning right")

COLUMNS = ("id", "image", "caption", "short_prompt", "label", "thickness", "slant", "ink", "shear")

_THICKNESS_WORDS = {"thin": "thin strokes", "regular": "medium strokes", "thick": "thick, bold strokes"}
_SLANT_WORDS = {"leaning left": "slanted to the left", "upright": "upright", "leaning right": "slanted to the right"}
_TEMPLATES = (
    "a handwritten digit {word} ({label}), {slant}, written with {strokes}",
    "the number {label} written by hand in {strokes}, {slant}, white ink on black",
    "a handwritten {word}, {slant}, with {strokes}",
    "handwritten {label}: {strokes}, {slant}",
    "a scanned handwritten digit {label} ({word}) in {strokes}, {slant}",
)


def measure(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean ink in [0, 1], shear) for grayscale images (N, H, W) with ink as high values."""
    m = images.astype(np.float64)
    m = m / max(float(m.max()), 1e-9)
    h, w = m.shape[1:]
    ys, xs = np.mgrid[0:h, 0:w]
    total = m.sum(axis=(1, 2)).clip(min=1e-9)
    xc = (m * xs).sum(axis=(1, 2)) / total
    yc = (m * ys).sum(axis=(1, 2)) / total
    dx, dy = xs - xc[:, None, None], ys - yc[:, None, None]
    mu11 = (m * dx * dy).sum(axis=(1, 2))
    mu02 = (m * dy * dy).sum(axis=(1, 2)).clip(min=1e-9)
    # image y grows downwards: a top leaning right has x falling as y grows, so negate
    return m.mean(axis=(1, 2)), -mu11 / mu02


def _tertiles(values: np.ndarray, labels: np.ndarray, names: tuple[str, str, str]) -> list[str]:
    out = np.empty(len(values), dtype=object)
    for k in np.unique(labels):
        sel = labels == k
        lo, hi = np.quantile(values[sel], [1 / 3, 2 / 3])
        out[sel] = np.where(values[sel] < lo, names[0], np.where(values[sel] > hi, names[2], names[1]))
    return list(out)


def _short_prompt(label: int, thickness: str, slant: str, rng: np.random.Generator) -> str:
    base = str(rng.choice([f"digit {label}", f"handwritten {label}", NUMBER_WORDS[label], f"number {label}"]))
    extra = int(rng.integers(0, 3))
    if extra == 1:
        return f"{thickness} {base}" if thickness != "regular" else base
    if extra == 2:
        return f"{base}, {slant}"
    return base


def generate_digits(
    size: int = 32, seed: int = 0, limit: int | None = None, progress: Callable[[int], None] | None = None
) -> pa.Table:
    """The digits as a table with COLUMNS; images are white-on-black RGB PNGs of `size` pixels."""
    from sklearn.datasets import load_digits

    DigitsConfig(size=size, seed=seed, limit=limit)  # validates, naming the CLI options
    digits = load_digits()
    raw, labels = digits.images, digits.target.astype(int)  # (1797, 8, 8) in 0..16
    ink, shear = measure(raw)  # measured on all images so the tertiles do not depend on `limit`
    thickness = _tertiles(ink, labels, THICKNESS)
    slant = _tertiles(shear, labels, SLANT)
    n = len(raw) if limit is None else min(limit, len(raw))
    cols: dict[str, list] = {c: [] for c in COLUMNS}
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        gray = Image.fromarray(np.round(raw[i] * (255 / 16)).astype(np.uint8))
        # bicubic upscaling turns the 8x8 grid into smooth strokes rather than blocks
        img = np.asarray(gray.resize((size, size), Image.BICUBIC).convert("RGB"))
        label = int(labels[i])
        template = _TEMPLATES[int(rng.integers(len(_TEMPLATES)))]
        cols["id"].append(f"digits-{i:04d}")
        cols["image"].append(png_bytes(img))
        cols["caption"].append(
            template.format(word=NUMBER_WORDS[label], label=label, strokes=_THICKNESS_WORDS[thickness[i]],
                            slant=_SLANT_WORDS[slant[i]])
        )
        cols["short_prompt"].append(_short_prompt(label, thickness[i], slant[i], rng))
        cols["label"].append(label)
        cols["thickness"].append(thickness[i])
        cols["slant"].append(slant[i])
        cols["ink"].append(float(ink[i]))
        cols["shear"].append(float(shear[i]))
        if progress is not None and ((i + 1) % 256 == 0 or i + 1 == n):
            progress(i + 1)
    schema = pa.schema(
        [("id", pa.string()), ("image", pa.binary()), ("caption", pa.string()), ("short_prompt", pa.string()),
         ("label", pa.int64()), ("thickness", pa.string()), ("slant", pa.string()), ("ink", pa.float32()),
         ("shear", pa.float32())]
    )
    return pa.table(cols, schema=schema)
