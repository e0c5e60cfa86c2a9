"""The built-in shapes vocabulary: attribute values, their RGB/geometry spec, synonyms, and a caption parser.

One source of truth for the shapes dataset, the caption LM's faithfulness guard and the evaluation:
the renderer draws these values, captions use these words, and `parse_attributes` reads them back.
"""

from __future__ import annotations

import functools
import re
from typing import NamedTuple

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

# Words users type that generated captions never use: the parser reads them, while the dataset and the caption-LM
# corpus stay as they are (adding them to SYNONYMS would change every generated caption). Kept to words the
# shipped GAN draws right (measured with the evaluation classifier, 48 images each): it never saw these in a
# caption, so a colour or background word is written with its canonical word after it ("ruby red", 1.00;
# "ruby" alone 0.73, "teal" alone 0.00) -- see `caption_phrase`. Dropped after that probe: cobalt, sapphire,
# lilac, amber (< 0.9 even with the canonical word), round, pentagram, plus (shape words the GAN misdraws).
TYPED_SYNONYMS: dict[str, dict[str, tuple[str, ...]]] = {
    "shape": {},
    "color": {
        "red": ("ruby", "cherry"),
        "green": ("lime", "jade"),
        "blue": ("sky blue",),
        "yellow": ("gold", "lemon"),
        "purple": ("lavender",),
        "white": ("ivory",),
        "cyan": ("aqua", "teal"),
    },
    "size": {"small": ("mini", "miniature"), "large": ("giant", "massive")},
    "position": {
        "top left": ("upper-left",),
        "top right": ("upper-right",),
        "bottom left": ("lower-left",),
        "bottom right": ("lower-right",),
    },
    "background": {"gray": ("silver",), "navy": ("navy blue",), "dark green": ("dark-green",)},
}


def _alternation(words: list[str]) -> str:
    # longest first so "dark green" wins over "green", "five-pointed star" over "star"; any run of whitespace
    # may separate the words of a phrase, so spans can be found in text as typed
    return "|".join(re.escape(w).replace(r"\ ", r"\s+") for w in sorted(words, key=len, reverse=True))


_WORD_TO_VALUE: dict[str, dict[str, str]] = {
    attr: {w: value for source in (SYNONYMS, TYPED_SYNONYMS) for value, words in source[attr].items() for w in words}
    for attr in ATTRIBUTES
}
_PATTERNS: dict[str, re.Pattern[str]] = {
    attr: re.compile(rf"(?<![\w-])({_alternation(list(words))})(?![\w-])")
    for attr, words in _WORD_TO_VALUE.items()
    if attr != "background"
}
_BACKGROUND = re.compile(
    rf"(?<![\w-])({_alternation(list(_WORD_TO_VALUE['background']))})\s+({'|'.join(BACKGROUND_NOUNS)})\b"
)
# for the rare text whose lower-casing changes its length (spans would shift): case-insensitive matching instead,
# which is 4x slower than matching the lower-cased text
_PATTERNS_ANY_CASE = {attr: re.compile(p.pattern, re.IGNORECASE) for attr, p in _PATTERNS.items()}
_BACKGROUND_ANY_CASE = re.compile(_BACKGROUND.pattern, re.IGNORECASE)


class Mention(NamedTuple):
    """One attribute value named in a text: `text[start:end]` is the phrase as written (a background's
    phrase includes its noun, "grey backdrop"); `word` is the value's own word in it ("grey")."""

    attr: str
    value: str
    start: int
    end: int
    word: str


def _word_value(attr: str, word: str) -> str:
    return _WORD_TO_VALUE[attr][" ".join(word.lower().split())]


def find_mentions(text: str) -> list[Mention]:
    """Every attribute value named in `text`, in text order, with its span (case-insensitive).

    The background phrase is read first and blanked out, so its colour word is not mistaken for the
    shape's colour ("a green star on a dark green backdrop" names green once, as the shape's colour).
    """
    rest = text.lower()
    background, patterns = _BACKGROUND, _PATTERNS
    if len(rest) != len(text):
        rest, background, patterns = text, _BACKGROUND_ANY_CASE, _PATTERNS_ANY_CASE
    found = [Mention("background", _word_value("background", m.group(1)), m.start(), m.end(), text[m.start(1):m.end(1)])
             for m in background.finditer(rest)]
    for m in found:  # blanked with as many spaces: the spans stay valid
        rest = rest[:m.start] + " " * (m.end - m.start) + rest[m.end:]
    for attr, pattern in patterns.items():
        found += [Mention(attr, _word_value(attr, m.group(1)), m.start(), m.end(), text[m.start(1):m.end(1)])
                  for m in pattern.finditer(rest)]
    return sorted(found, key=lambda m: m.start)


def caption_phrase(attr: str, word: str) -> str:
    """How a caption writes a value word a user typed: a colour or background word that no generated caption
    uses gets its canonical word after it ("ruby" -> "ruby red", "silver" -> "silver gray"), unless it
    already holds it ("sky blue"); every other word as it is."""
    key = " ".join(word.lower().split())
    value = _WORD_TO_VALUE[attr].get(key)
    if attr not in ("color", "background") or value is None or key in SYNONYMS[attr][value]:
        return word
    canonical = SYNONYMS[attr][value][0]
    return word if f" {canonical} " in f" {key.replace('-', ' ')} " else f"{word} {canonical}"


def parse_attributes(text: str) -> dict[str, list[str]]:
    """Every attribute value a caption names, e.g. {'color': ['red'], 'background': ['navy'], ...}.

    Attributes that are not mentioned are absent; more than one value for an attribute means the text
    contradicts itself.
    """
    found: dict[str, set[str]] = {}
    for m in find_mentions(text):
        found.setdefault(m.attr, set()).add(m.value)
    return {attr: sorted(found[attr]) for attr in ATTRIBUTES if attr in found}


@functools.lru_cache(maxsize=4096)
def _stated_values(short_prompt: str) -> tuple[tuple[str, str], ...]:
    # prompts repeat (one per variant and resample): parse each once
    return tuple((attr, values[0]) for attr, values in parse_attributes(short_prompt).items() if len(values) == 1)


def is_faithful(short_prompt: str, expansion: str) -> bool:
    """True when `expansion` names every attribute value stated in `short_prompt` and contradicts none."""
    got = parse_attributes(expansion)
    return all(got.get(attr) == [value] for attr, value in _stated_values(short_prompt))
