"""Colour words as colours: the XKCD colour-survey names (949 names with sRGB, as matplotlib ships them), CIELAB
distances, and the nearest colour a domain can draw with how clear-cut that choice is.

A domain draws a small palette ("red", "navy", ...). A user names colours with any of the words people use;
the survey's names are a large, crowd-sourced and maintained source of such words with their RGB, far less
biased than a list written here. A named colour maps to the palette entry nearest in CIELAB (perceptual
distance, D65), and the mapping is only trusted when the nearest entry is close and clearly nearer than the
second: `Nearest.clarity` is 1 - d1/d2 (0 = a tie, 1 = exact).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import NamedTuple

import numpy as np

RGB = tuple[int, int, int]

# modifiers that people put before a colour name and that the survey names also use ("light blue", "dark green")
SHADE_WORDS = frozenset("light dark pale deep bright dull pastel neon dusty medium vivid soft hot muted".split())
# word forms that say "this colour" after a colour name: "lemon-colored", "reddish", "bluish" (bluish -> blue)
_COLOUR_SUFFIX = re.compile(r"^(.*?)(?:[- ]?(?:colou?red|tinted|toned|hued)|ish)$")


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB (..., 3) in 0..255 -> CIELAB (..., 3), D65 white."""
    c = np.asarray(rgb, dtype=np.float64) / 255.0
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    m = np.array([[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750],
                  [0.0193339, 0.1191920, 0.9503041]])
    xyz = lin @ m.T / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], axis=-1)


class Nearest(NamedTuple):
    value: str  # the palette entry
    distance: float  # CIELAB distance to it (delta E 1976)
    clarity: float  # 1 - d1/d2: 0 when two entries are equally near


def nearest(rgb: RGB, palette: Mapping[str, RGB]) -> Nearest:
    """The palette entry nearest to `rgb` in CIELAB, with its distance and how clear-cut the choice is."""
    names = list(palette)
    d = np.linalg.norm(srgb_to_lab(np.array([palette[n] for n in names])) - srgb_to_lab(np.array(rgb)), axis=-1)
    order = np.argsort(d)
    d1 = float(d[order[0]])
    d2 = float(d[order[1]]) if len(order) > 1 else float("inf")
    return Nearest(names[int(order[0])], d1, 1.0 - d1 / d2 if d2 > 0 else 0.0)


@functools.lru_cache(maxsize=1)
def named_colours() -> dict[str, RGB]:
    """The colour survey's names (lower case, single spaces: "cherry red") -> sRGB."""
    from matplotlib import _color_data  # a data module: importing it loads no plotting machinery

    out: dict[str, RGB] = {}
    for key, hexcode in _color_data.XKCD_COLORS.items():
        name = " ".join(key.removeprefix("xkcd:").replace("/", " ").replace("'", "").split())
        h = hexcode.lstrip("#")
        out[name] = (int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16))
    # the survey spells grey; people write both
    out.update({n.replace("grey", "gray"): rgb for n, rgb in list(out.items()) if "grey" in n})
    return out


def lookup(phrase: str) -> RGB | None:
    """The RGB of a colour phrase as typed: a survey name ("cherry red", "cherry-red"), a name with a "this colour"
    suffix ("lemon-colored", "reddish"), or None."""
    key = " ".join(phrase.lower().replace("-", " ").split())
    table = named_colours()
    if key in table:
        return table[key]
    m = _COLOUR_SUFFIX.match(key)
    if m and m.group(1):
        stem = m.group(1).strip()
        for candidate in (stem, stem[:-1] if stem.endswith(("dd", "ll")) else None, stem + "e"):  # reddish, bluish
            if candidate and candidate in table:
                return table[candidate]
    return None


def has_colour_suffix(phrase: str) -> bool:
    """Whether a phrase ends in a "this colour" form ("lemon-colored", "reddish")."""
    m = _COLOUR_SUFFIX.match(" ".join(phrase.lower().replace("-", " ").split()))
    return bool(m and m.group(1))


def is_colour_word(word: str) -> bool:
    """Whether one word alone names a surveyed colour (or says "this colour" of one)."""
    return lookup(word) is not None
