"""The built-in shapes vocabulary: attribute values, their RGB/geometry spec, synonyms, and a caption parser.

One source of truth for the shapes dataset, the caption LM's faithfulness guard and the evaluation:
the renderer draws these values, captions use these words, and `parse_attributes` reads them back.
"""

from __future__ import annotations

import re

ATTRIBUTES: tuple[str, ...] = ("shape", "color", "size", "position", "background")

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross")

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 180, 60),
    "blue": (50, 90, 230),
    "yellow": (240, 220, 40),
    "purple": (150, 60, 200),
    "orange": (245, 140, 30),
    "white": (240, 240, 240),
    "cyan": (40, 210, 220),
}
COLOR_JITTER = 15  # each channel, at most +-

# extent of the shape as a fraction of the image side
SIZES: dict[str, tuple[float, float]] = {"small": (0.30, 0.40), "large": (0.52, 0.60)}

# shape centre as a fraction of the image side (x, y); jitter +-2 px at 32 px, scaled with size
POSITIONS: dict[str, tuple[float, float]] = {
    "center": (0.5, 0.5),
    "top left": (0.32, 0.32),
    "top right": (0.68, 0.32),
    "bottom left": (0.32, 0.68),
    "bottom right": (0.68, 0.68),
}
POSITION_JITTER_AT_32 = 2

BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "black": (15, 15, 15),
    "gray": (110, 110, 110),
    "navy": (20, 25, 80),
    "dark green": (20, 70, 30),
}

VALUES: dict[str, tuple[str, ...]] = {
    "shape": SHAPES,
    "color": tuple(COLORS),
    "size": tuple(SIZES),
    "position": tuple(POSITIONS),
    "background": tuple(BACKGROUNDS),
}

# Words a caption may use for each value. The first synonym is the canonical word.
SYNONYMS: dict[str, dict[str, tuple[str, ...]]] = {
    "shape": {
        "circle": ("circle", "disc", "disk", "round dot"),
        "square": ("square", "box"),
        "triangle": ("triangle",),
        "star": ("star", "five-pointed star"),
        "cross": ("cross", "plus sign"),
    },
    "color": {
        "red": ("red", "crimson", "scarlet"),
        "green": ("green", "emerald"),
        "blue": ("blue", "azure"),
        "yellow": ("yellow", "golden"),
        "purple": ("purple", "violet"),
        "orange": ("orange", "tangerine"),
        "white": ("white", "snow-white"),
        "cyan": ("cyan", "turquoise"),
    },
    "size": {
        "small": ("small", "little", "tiny"),
        "large": ("large", "big", "huge"),
    },
    "position": {
        "center": ("center", "centre", "middle"),
        "top left": ("top left", "upper left", "top-left"),
        "top right": ("top right", "upper right", "top-right"),
        "bottom left": ("bottom left", "lower left", "bottom-left"),
        "bottom right": ("bottom right", "lower right", "bottom-right"),
    },
    "background": {
        "black": ("black",),
        "gray": ("gray", "grey"),
        "navy": ("navy", "dark blue"),
        "dark green": ("dark green", "forest green"),
    },
}

# A background is always named right before one of these nouns ("on a navy background").
BACKGROUND_NOUNS = ("background", "backdrop")


def _alternation(words: list[str]) -> str:
    # longest first so "dark green" wins over "green", "five-pointed star" over "star"
    return "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))


_WORD_TO_VALUE: dict[str, dict[str, str]] = {
    attr: {w: value for value, words in table.items() for w in words} for attr, table in SYNONYMS.items()
}
_PATTERNS: dict[str, re.Pattern[str]] = {
    attr: re.compile(rf"(?<![\w-])({_alternation(list(words))})(?![\w-])")
    for attr, words in _WORD_TO_VALUE.items()
    if attr != "background"
}
_BACKGROUND = re.compile(
    rf"(?<![\w-])({_alternation(list(_WORD_TO_VALUE['background']))})\s+(?:{'|'.join(BACKGROUND_NOUNS)})\b"
)


def parse_attributes(text: str) -> dict[str, list[str]]:
    """Every attribute value a caption names, e.g. {'color': ['red'], 'background': ['navy'], ...}.

    Attributes that are not mentioned are absent; more than one value for an attribute means the text
    contradicts itself. The background phrase is read first and removed, so its colour word is not
    mistaken for the shape's colour.
    """
    lowered = " ".join(text.lower().split())
    found: dict[str, list[str]] = {}
    backgrounds = [_WORD_TO_VALUE["background"][m.group(1)] for m in _BACKGROUND.finditer(lowered)]
    if backgrounds:
        found["background"] = sorted(set(backgrounds))
    rest = _BACKGROUND.sub(" ", lowered)
    for attr, pattern in _PATTERNS.items():
        values = sorted({_WORD_TO_VALUE[attr][m.group(1)] for m in pattern.finditer(rest)})
        if values:
            found[attr] = values
    return found


def is_faithful(short_prompt: str, expansion: str) -> bool:
    """True when `expansion` names every attribute value stated in `short_prompt` and contradicts none."""
    stated = parse_attributes(short_prompt)
    got = parse_attributes(expansion)
    return all(got.get(attr) == values for attr, values in stated.items() if len(values) == 1)
