"""One-letter typos for the openvocab-v1 prompt set: drop, swap, substitute (a QWERTY neighbour) and insert.

A typo is kept only when it is not in `REAL_WORDS` (English words and near-words a reader could take at face value,
written by hand and extended after reading the generated list: "shall" for small, "gay" for gray), not a word of
the colour survey, the palette or the hand-written lists, and at edit distance >= 2 from every other target word,
so the intended word is the only sensible reading.
"""

from __future__ import annotations

import numpy as np

# word -> (attribute, value); XKCD colour names here are checked against the colour rule by the builder
TYPO_TARGETS: dict[str, tuple[str, str]] = {
    "red": ("color", "red"), "green": ("color", "green"), "blue": ("color", "blue"), "yellow": ("color", "yellow"),
    "purple": ("color", "purple"), "orange": ("color", "orange"), "white": ("color", "white"),
    "cyan": ("color", "cyan"), "sapphire": ("color", "blue"), "turquoise": ("color", "cyan"),
    "emerald": ("color", "green"), "crimson": ("color", "red"), "scarlet": ("color", "red"),
    "tangerine": ("color", "orange"), "violet": ("color", "purple"), "lemon": ("color", "yellow"),
    "circle": ("shape", "circle"), "square": ("shape", "square"), "triangle": ("shape", "triangle"),
    "star": ("shape", "star"), "cross": ("shape", "cross"),
    "small": ("size", "small"), "large": ("size", "large"), "tiny": ("size", "small"), "huge": ("size", "large"),
    "black": ("background", "black"), "gray": ("background", "gray"), "grey": ("background", "gray"),
    "navy": ("background", "navy"),
    "left": ("position", ""), "right": ("position", ""), "bottom": ("position", ""), "center": ("position", "center"),
    "middle": ("position", "center"),
}
# three-letter words have few safe typos: written by hand
HAND_TYPOS: dict[str, tuple[str, ...]] = {"red": ("rde", "erd", "rwd", "redd")}
REAL_WORDS = {
    "rad", "rod", "can", "str", "cya", "shall", "gay", "gary", "gravy", "grays", "greys", "sta", "tsar",
    "reed", "bed", "led", "glue", "blur", "bluer", "grin", "greet", "white", "whit", "while", "write",
    "whine", "whites", "sat", "tar", "stat", "scar", "stare", "start", "stir", "spar", "soar", "sear", "stag",
    "cress", "crass", "cros", "moss", "loss", "toss", "boss", "gross", "crossa", "squat", "quare", "small",
    "mall", "stall", "smell", "snall", "large", "barge", "lager", "larger", "lard", "tin", "tint", "tine", "ting",
    "tony", "hug", "hue", "hugs", "bleak", "back", "lack", "slack", "blacks", "grew", "prey", "grey", "gray",
    "fray", "tray", "nave", "nay", "navvy", "lift", "loft", "lefty", "eft", "light", "fight", "tight", "rigid",
    "bottle", "botto", "enter", "canter", "centre", "cent", "piddle", "riddle", "middy", "midle", "lemony",
    "demon", "melon", "lemons", "scarlett", "violent", "violets", "carlet", "crimsons", "emeralds",
    "purple", "purply", "orang", "orangey", "ornage", "gren", "greene", "cyn", "cyans", "range", "oranges",
    "circe", "cirle", "squre", "yell", "fellow", "mellow", "bellow", "yellows", "hellow", "purle", "pimple",
    "tringle", "tangle", "turquois", "saphire", "sapphires", "bluey", "blues", "greens", "stars", "crosse",
    "cirque", "squares", "crooss", "smaller", "largo", "larges", "tinny", "tiy", "huger", "hugh", "hume",
    "blac", "bloack", "navi", "navu", "lefts", "rights", "bottoms", "centers", "middles", "scalet", "blume",
}

_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")


def _keyboard_neighbours() -> dict[str, str]:
    out = {}
    for r, row in enumerate(_ROWS):
        for c, ch in enumerate(row):
            near = [row[k] for k in (c - 1, c + 1) if 0 <= k < len(row)]
            for dr in (-1, 1):
                if 0 <= r + dr < len(_ROWS):
                    other = _ROWS[r + dr]
                    near += [other[k] for k in (c - 1, c, c + 1) if 0 <= k < len(other)]
            out[ch] = "".join(sorted(set(near)))
    return out


_NEIGHBOURS = _keyboard_neighbours()
OPS = ("drop", "swap", "substitute", "insert")


def edit_distance(a: str, b: str) -> int:
    """Optimal-string-alignment distance (insert, delete, substitute, swap of neighbours)."""
    d = [[i + j if i * j == 0 else 0 for j in range(len(b) + 1)] for i in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] != b[j - 1]))
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
    return d[len(a)][len(b)]


def _apply(word: str, op: str, rng: np.random.Generator) -> str | None:
    n = len(word)
    i = int(rng.integers(1, n)) if n > 3 else int(rng.integers(n))  # first letters are rarely mistyped
    if op == "drop":
        return word[:i] + word[i + 1:]
    if op == "swap":
        i = min(i, n - 2)
        return None if word[i] == word[i + 1] else word[:i] + word[i + 1] + word[i] + word[i + 2:]
    if op == "substitute":
        options = _NEIGHBOURS.get(word[i], "")
        return word[:i] + options[int(rng.integers(len(options)))] + word[i + 1:] if options else None
    options = _NEIGHBOURS.get(word[i], "") + word[i]  # insert: a neighbour or a doubled letter before word[i]
    return word[:i] + options[int(rng.integers(len(options)))] + word[i:]


def make_typo(word: str, op: str, rng: np.random.Generator, known: set[str], taken: set[str]) -> str | None:
    """A one-letter `op` typo of `word` that reads only as `word`, or None when none was found in 40 tries."""
    if word in HAND_TYPOS:
        free = [t for t in HAND_TYPOS[word] if t not in taken]
        return free[0] if free else None
    for _ in range(40):
        typo = _apply(word, op, rng)
        if (typo is None or typo == word or len(typo) < 3 or typo in taken or typo in known
                or typo in REAL_WORDS):
            continue
        if all(edit_distance(typo, other) >= 2 for other in TYPO_TARGETS if other != word):
            return typo
    return None
