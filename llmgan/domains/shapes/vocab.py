"""The shapes domain's values and caption words: what the renderer draws (RGB, geometry) and the words its
captions use for each value. Everything else a user may type is grounded to these by `llmgan.domains.grounding`.
"""

from __future__ import annotations

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
