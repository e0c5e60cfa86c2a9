"""Colour truth for the openvocab-v1 prompt set: matplotlib's named colours mapped to the shapes palette in CIELAB.

Colour truth comes from matplotlib's colour tables (`XKCD_COLORS`: the XKCD colour survey, CC0; `CSS4_COLORS`:
the X11/CSS names), never from the project's word tables. A colour word's RGB is converted to CIELAB (sRGB, D65,
below) and compared with the palette of the role it plays -- `vocab.COLORS` for a shape's colour,
`vocab.BACKGROUNDS` for "on a X background" -- by the CIE 1976 distance dE76 (Euclidean in L*a*b*):

- near: nearest palette entry at dE76 <= NEAR_DE (30.0, about the smallest gap inside the shape palette,
  blue-purple 29.9) and the second nearest at least AMBIGUITY_RATIO (1.5) times farther -> `expect`;
- far: every palette entry at dE76 >= FAR_DE (50.0, farther than red is from orange, 45.0) -> the colour's
  words go to `undrawable` (the domain cannot draw brown, pink or black shapes, or a red background);
- anything between, or near two entries, is ambiguous and left out;
- near but of another hue is left out too: a neutral palette entry (white, gray, black: chroma C*ab < 5) takes
  only colours with C*ab <= 20 (mauve, cocoa, ivory and pale rose are no gray or white), a chromatic one only
  colours with C*ab >= 5 within 30 degrees of its hue angle h_ab (aubergine is no navy, aquamarine no cyan).

A name's own words must agree with that truth: its head basic colour term (the last of red, green, blue, yellow,
purple, orange, white, cyan, pink, brown, black, grey/gray, navy, found inside words too: "bluish", "orangered")
must name the same palette value ("navy blue" -> navy as a background), or, for a far colour, no palette value
("hot pink", "chocolate brown"). Otherwise the name is contested ("light pink" is near white; "forest green" is
far from the shape palette's green; "aqua blue" is near cyan) and left out. Names with "/" ("blue/green"), crude
names, names that are only modifiers ("pale", "dark") and a few words that are no colour alone ("sea", "ice")
are left out too.
"""

from __future__ import annotations

import functools
import re
from typing import NamedTuple

import numpy as np
from matplotlib import _color_data

from llmgan.domains.shapes import vocab

NEAR_DE, AMBIGUITY_RATIO, FAR_DE = 30.0, 1.5, 50.0
NEUTRAL_C, MAX_C_FOR_NEUTRAL, MAX_HUE_DEG = 5.0, 20.0, 30.0
CRUDE = ("poo", "shit", "diarrhea", "vomit", "puke", "snot", "booger", "piss", "barf")
MODIFIERS = {"pale", "dark", "light", "bright", "deep", "dull", "dusky", "dusty", "faded", "muted", "pastel", "neon",
             "medium", "very", "really", "lightish", "darkish", "off"}
NOT_COLOUR_ALONE = {"sea", "ice", "sky", "tea", "royal", "forest", "earth", "desert", "bland", "ocean", "barney",
                    "dust", "dirt", "mud", "bruise", "stone", "swamp", "slate", "steel", "pea", "velvet"}
BASIC = {"red": "red", "green": "green", "blu": "blue", "yellow": "yellow", "purpl": "purple", "orang": "orange",
         "white": "white", "cyan": "cyan", "pink": "pink", "brown": "brown", "black": "black", "grey": "grey",
         "gray": "grey", "navy": "navy"}
FAMILY = {  # head term -> the palette value it names, per role (absent: names no drawable value)
    "color": {v: v for v in vocab.COLORS},
    "background": {"black": "black", "grey": "gray", "blue": "navy", "navy": "navy", "green": "dark green"},
}


def srgb_to_lab(rgb: np.ndarray | list | tuple) -> np.ndarray:
    """CIELAB (D65) of 8-bit sRGB triples, shape (..., 3)."""
    c = np.asarray(rgb, dtype=np.float64) / 255.0
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    m = np.array([[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750],
                  [0.0193339, 0.1191920, 0.9503041]])
    xyz = linear @ m.T / np.array([0.95047, 1.0, 1.08883])  # normalised by the D65 white
    d = 6.0 / 29.0
    f = np.where(xyz > d**3, np.cbrt(xyz), xyz / (3 * d * d) + 4.0 / 29.0)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], axis=-1)


def hex_rgb(h: str) -> tuple[int, int, int]:
    return int(h[1:3], 16), int(h[3:5], 16), int(h[5:7], 16)


class Truth(NamedTuple):
    status: str  # near | far | ambiguous | contested
    value: str | None
    note: str  # "dE76 18.0 blue / 30.0 purple"


@functools.cache
def _palette(role: str) -> tuple[tuple[str, ...], np.ndarray]:
    table = vocab.COLORS if role == "color" else vocab.BACKGROUNDS
    return tuple(table), srgb_to_lab([table[k] for k in table])


def head_term(name: str) -> str | None:
    """The last basic colour term inside `name` ("greenish blue" -> blue, "orangered" -> red), if any."""
    hits = [(m.end(), BASIC[m.group(0)]) for m in re.finditer("|".join(BASIC), name)]
    return max(hits)[1] if hits else None


def _same_hue(lab: np.ndarray, target: np.ndarray) -> bool:
    c, tc = float(np.hypot(*lab[1:])), float(np.hypot(*target[1:]))
    if tc < NEUTRAL_C:  # white, gray, black take only near-neutral colours
        return c <= MAX_C_FOR_NEUTRAL
    dh = abs((np.degrees(np.arctan2(lab[2], lab[1]) - np.arctan2(target[2], target[1])) + 180) % 360 - 180)
    return c >= NEUTRAL_C and dh <= MAX_HUE_DEG


def colour_truth(name: str, hex_code: str, role: str) -> Truth:
    """What a colour name means as a shape colour (role "color") or a background (role "background")."""
    names, lab = _palette(role)
    d = np.linalg.norm(lab - srgb_to_lab(hex_rgb(hex_code)), axis=-1)
    first, second = np.argsort(d, kind="stable")[:2]
    note = f"dE76 {d[first]:.1f} {names[first]} / {d[second]:.1f} {names[second]}"
    if d[first] <= NEAR_DE and d[second] >= AMBIGUITY_RATIO * d[first]:
        if not _same_hue(srgb_to_lab(hex_rgb(hex_code)), lab[first]):
            return Truth("off-hue", None, note)
        status, value = "near", names[first]
    elif d[first] >= FAR_DE:
        status, value = "far", None
    else:
        return Truth("ambiguous", None, note)
    head = head_term(name)
    if head is not None and FAMILY[role].get(head) != value:
        return Truth("contested", None, note)
    return Truth(status, value, note)


def usable_name(name: str) -> bool:
    """False for names left out before any colour science (see the module docstring)."""
    toks = set(re.split(r"[ \-]+", name))
    return ("/" not in name and not any(c in name for c in CRUDE) and not toks <= MODIFIERS
            and name not in NOT_COLOUR_ALONE)


def xkcd_colours() -> dict[str, str]:
    """Usable XKCD survey names, as a user types them -> hex."""
    out = {k.removeprefix("xkcd:"): v.lower() for k, v in _color_data.XKCD_COLORS.items()}
    return {k: v for k, v in out.items() if usable_name(k)}


def css_outside_xkcd() -> dict[str, tuple[str, str]]:
    """CSS4 names that are no XKCD name -> (the name split into XKCD words, hex): "cornflowerblue" -> "cornflower
    blue" by the fewest-words split, kept only when it splits fully. The one word added is "gray" (XKCD: "grey")."""
    xkcd = [k.removeprefix("xkcd:") for k in _color_data.XKCD_COLORS]
    known = {w for n in xkcd for w in re.split(r"[ /]+", n) if w} | {"gray"}
    joined = {re.sub(r"[ /']", "", n) for n in xkcd}
    out = {}
    for css, hex_code in sorted(_color_data.CSS4_COLORS.items()):
        if css in joined:
            continue
        split = _split_words(css, frozenset(known))
        if split is not None:
            out[css] = (" ".join(split), hex_code.lower())
    return out


def _split_words(s: str, known: frozenset[str]) -> tuple[str, ...] | None:
    best: list[tuple[str, ...] | None] = [None] * len(s) + [()]
    for i in range(len(s) - 1, -1, -1):  # best[i]: fewest-words split of s[i:]; ties: the longer first word
        for j in range(len(s), i, -1):
            rest = best[j]
            if s[i:j] in known and rest is not None and (best[i] is None or len(rest) + 1 < len(best[i])):
                best[i] = (s[i:j],) + rest
    return best[0]
