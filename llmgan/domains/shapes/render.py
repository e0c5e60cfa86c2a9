"""The built-in procedural shapes dataset: rendering, captions, short prompts, held-out split, Parquet output.

Deterministic: every sample's randomness comes from (seed, split, index), so the same arguments give the
same bytes. The vocabulary and geometry spec live in `llmgan.domains.shapes.vocab`; captions only use its synonyms,
so `vocab.parse_attributes(caption)` reads back exactly the labels.

Geometry: a shape's *extent* is the side of its bounding box (its larger side for the star), drawn as a
fraction of the image side from `vocab.SIZES`; its *centre* is the centre of that bounding box, at
`vocab.POSITIONS` plus jitter. Large shapes in a corner would poke out of the image by up to ~1 px at
32 px, so the jittered centre is clamped to keep the whole bounding box inside the image.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pyarrow as pa
from PIL import Image, ImageDraw

from llmgan.data.config import SPLITS, PromptPairsConfig, ShapesConfig
from llmgan.domains.shapes import vocab
from llmgan.errors import UserError
from llmgan.io.images import png_bytes

SUPERSAMPLE = 4  # draw at 4x and downsample with a box filter: anti-aliased edges, exact flat background
STAR_INNER_RATIO = 0.45  # inner/outer radius; a little fatter than a regular star so it survives 32 px

# Held-out split: these (shape, color) pairs never appear in "train". Every shape and every colour is
# still seen in training, so generating one of these tests compositional generalisation.
HELDOUT_PAIRS: frozenset[tuple[str, str]] = frozenset(
    {
        ("circle", "orange"),
        ("square", "cyan"),
        ("triangle", "purple"),
        ("star", "white"),
        ("cross", "yellow"),
    }
)

COLUMNS = ("id", "image", "caption", "short_prompt", "shape", "color", "size", "position", "background", "split")
_SPLIT_CODE = {"train": 0, "heldout": 1, "all": 2}


def is_heldout(labels: dict[str, str]) -> bool:
    """True when the labels form a held-out combination (a (shape, color) pair in HELDOUT_PAIRS)."""
    return (labels["shape"], labels["color"]) in HELDOUT_PAIRS


# ---- geometry -----------------------------------------------------------------------------------


def _unit_polygon(shape: str) -> list[tuple[float, float]]:
    """The shape's outline with its bounding box centred on (0, 0) and its larger side equal to 1."""
    if shape == "square":
        pts = [(-1.0, -1.0), (1.0, -1.0), (1.0, 1.0), (-1.0, 1.0)]
    elif shape == "triangle":  # upright, apex at top (image y grows downwards)
        pts = [(0.0, -1.0), (1.0, 1.0), (-1.0, 1.0)]
    elif shape == "cross":  # plus sign; arms one third of the extent wide
        a = 1.0 / 3.0
        pts = [(-a, -1), (a, -1), (a, -a), (1, -a), (1, a), (a, a), (a, 1), (-a, 1), (-a, a), (-1, a), (-1, -a), (-a, -a)]
    elif shape == "star":  # five points, one straight up
        pts = []
        for k in range(10):
            r = 1.0 if k % 2 == 0 else STAR_INNER_RATIO
            ang = -math.pi / 2 + k * math.pi / 5
            pts.append((r * math.cos(ang), r * math.sin(ang)))
    else:
        raise UserError(f"unknown shape {shape!r}; expected one of {', '.join(vocab.SHAPES)}")
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    cx, cy = (min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2
    span = max(max(xs) - min(xs), max(ys) - min(ys))
    return [((x - cx) / span, (y - cy) / span) for x, y in pts]


def _check_labels(labels: dict[str, str]) -> None:
    for attr in vocab.ATTRIBUTES:
        if attr not in labels:
            raise UserError(f"labels: missing {attr!r}")
        if labels[attr] not in vocab.VALUES[attr]:
            raise UserError(f"labels: {attr}={labels[attr]!r} is not one of {', '.join(vocab.VALUES[attr])}")


def render_shape(labels: dict[str, str], size: int, rng: np.random.Generator) -> np.ndarray:
    """Draw one shape per the vocab spec; returns uint8 (size, size, 3). `rng` supplies all jitter."""
    _check_labels(labels)
    if size < 8:
        raise UserError(f"size must be at least 8 pixels, got {size}")
    lo, hi = vocab.SIZES[labels["size"]]
    extent = float(rng.uniform(lo, hi)) * size
    fx, fy = vocab.POSITIONS[labels["position"]]
    jitter = vocab.POSITION_JITTER_AT_32 * size / 32.0
    half = extent / 2
    cx = float(np.clip(fx * size + rng.uniform(-jitter, jitter), half, size - half))
    cy = float(np.clip(fy * size + rng.uniform(-jitter, jitter), half, size - half))
    base = np.array(vocab.COLORS[labels["color"]])
    fill = tuple(int(v) for v in np.clip(base + rng.integers(-vocab.COLOR_JITTER, vocab.COLOR_JITTER + 1, 3), 0, 255))

    s = SUPERSAMPLE
    canvas = Image.new("RGB", (size * s, size * s), vocab.BACKGROUNDS[labels["background"]])
    draw = ImageDraw.Draw(canvas)
    # Pixel i covers [i, i+1) at output scale; PIL fills pixel centres, so map x -> x*s - 0.5.
    if labels["shape"] == "circle":
        box = [(cx - half) * s, (cy - half) * s, (cx + half) * s - 1, (cy + half) * s - 1]
        draw.ellipse(box, fill=fill)
    else:
        pts = [((cx + x * extent) * s - 0.5, (cy + y * extent) * s - 0.5) for x, y in _unit_polygon(labels["shape"])]
        draw.polygon(pts, fill=fill)
    return np.asarray(canvas.resize((size, size), Image.BOX), dtype=np.uint8)


# ---- captions -----------------------------------------------------------------------------------


def _word(rng: np.random.Generator, attr: str, value: str, canonical_p: float = 0.6) -> str:
    """The canonical word most of the time, otherwise a synonym, so captions vary their vocabulary."""
    words = vocab.SYNONYMS[attr][value]
    if len(words) == 1 or rng.random() < canonical_p:
        return words[0]
    return words[int(rng.integers(1, len(words)))]


def _article(next_word: str) -> str:
    return "an" if next_word[:1] in "aeiou" else "a"


def _position_phrase(rng: np.random.Generator, value: str) -> str:
    word = _word(rng, "position", value)
    if value == "center":
        return str(rng.choice([f"in the {word}", f"at the {word}", f"in the {word} of the image"]))
    return str(rng.choice([f"in the {word} corner", f"in the {word}", f"at the {word}", f"in the {word} of the image"]))


def _background_phrase(rng: np.random.Generator, value: str) -> str:
    word = _word(rng, "background", value)
    noun = str(rng.choice(vocab.BACKGROUND_NOUNS))
    return str(rng.choice([f"on {_article(word)} {word} {noun}", f"against {_article(word)} {word} {noun}"]))


_CAPTION_TEMPLATES: tuple[str, ...] = (
    "{a_size} {size} {color} {shape} {pos}, {bg}",
    "{a_size} {size} {color} {shape} {bg}, {pos}",
    "{a_color} {color} {shape} of {size} size {pos}, {bg}",
    "{A_size} {size} {color} {shape} sits {pos} {bg}.",
    "there is {a_size} {size} {color} {shape} {pos} {bg}",
    "{Bg}: {a_size} {size} {shape} in {color}, {pos}",
    "{a_size} {size} {shape}, colored {color}, {pos} {bg}",
    "an image of {a_size} {size} {color} {shape} {pos}, {bg}",
    "{Pos}, {a_size} {size} {color} {shape} {bg}",
    "{a_color} {color} {shape}, {size}, {pos}, {bg}",
)


def make_caption(labels: dict[str, str], rng: np.random.Generator) -> str:
    """A natural sentence naming all five attributes, from varied templates, word orders and synonyms."""
    _check_labels(labels)
    words = {attr: _word(rng, attr, labels[attr]) for attr in ("shape", "color", "size")}
    pos = _position_phrase(rng, labels["position"])
    bg = _background_phrase(rng, labels["background"])
    template = _CAPTION_TEMPLATES[int(rng.integers(len(_CAPTION_TEMPLATES)))]
    a_size, a_color = _article(words["size"]), _article(words["color"])
    return template.format(
        size=words["size"], color=words["color"], shape=words["shape"], pos=pos, bg=bg,
        a_size=a_size, a_color=a_color, A_size=a_size.capitalize(), Pos=pos[0].upper() + pos[1:],
        Bg=bg[0].upper() + bg[1:],
    )


def make_short_prompt(labels: dict[str, str], rng: np.random.Generator, detail: float | None = None) -> str:
    """What a user would type: 1-3 attributes, always the shape or the colour, never contradicting labels.

    With `detail`, each of size, position and background is stated with that probability instead (up to all
    five attributes): caption-LM training pairs with more stated details to learn to keep.
    """
    _check_labels(labels)
    head = str(rng.choice(["shape", "color", "both", "both"]))
    chosen = {"shape", "color"} if head == "both" else {head}
    optional = ("size", "position", "background")
    if detail is None:
        n_extra = int(rng.integers(0, 3 - len(chosen) + 1))
        chosen.update(str(a) for a in rng.choice(optional, size=n_extra, replace=False))
    else:
        chosen.update(a for a in optional if rng.random() < detail)
    # users mostly type the plain word
    # a fixed order, not the set's: set order follows string hashing, which differs between processes
    w = {attr: _word(rng, attr, labels[attr], canonical_p=0.85) for attr in vocab.ATTRIBUTES if attr in chosen}
    noun = w.get("shape") or str(rng.choice(["shape", "object"]))
    parts = [w[a] for a in ("size", "color") if a in w] + [noun]
    text = " ".join(parts)
    if "position" in w:
        text += f" {rng.choice(['in the', 'at the'])} {w['position']}"
    if "background" in w:
        text += f" on {w['background']} {rng.choice(vocab.BACKGROUND_NOUNS)}"
    return text


# ---- dataset ------------------------------------------------------------------------------------


def sample_labels(rng: np.random.Generator, split: str = "all") -> dict[str, str]:
    """Uniform labels; "train" rejects held-out combinations, "heldout" draws only those."""
    if split not in SPLITS:
        raise UserError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    while True:
        labels = {attr: str(vocab.VALUES[attr][int(rng.integers(len(vocab.VALUES[attr])))]) for attr in vocab.ATTRIBUTES}
        if split == "heldout":  # draw the pair directly instead of rejecting 7 in 8
            pairs = sorted(HELDOUT_PAIRS)
            labels["shape"], labels["color"] = pairs[int(rng.integers(len(pairs)))]
        if split != "train" or not is_heldout(labels):
            return labels


def generate_shapes(
    n: int,
    size: int = 32,
    seed: int = 0,
    split: str = "train",
    progress: Callable[[int], None] | None = None,
) -> pa.Table:
    """`n` captioned shape images as a table with COLUMNS; `progress(k)` is called as samples complete."""
    ShapesConfig(n=n, size=size, seed=seed, split=split)  # validates, naming the CLI options
    cols: dict[str, list] = {c: [] for c in COLUMNS}
    for i in range(n):
        # one independent stream per sample: sample i is the same whatever n is
        rng = np.random.default_rng([seed, _SPLIT_CODE[split], i])
        labels = sample_labels(rng, split)
        image = render_shape(labels, size, rng)
        cols["id"].append(f"shapes-{split}-{seed}-{i:07d}")
        cols["image"].append(png_bytes(image))
        cols["caption"].append(make_caption(labels, rng))
        cols["short_prompt"].append(make_short_prompt(labels, rng))
        for attr in vocab.ATTRIBUTES:
            cols[attr].append(labels[attr])
        cols["split"].append("heldout" if is_heldout(labels) else "train")
        if progress is not None and ((i + 1) % 256 == 0 or i + 1 == n):
            progress(i + 1)
    schema = pa.schema([(c, pa.binary() if c == "image" else pa.string()) for c in COLUMNS])
    return pa.table(cols, schema=schema)


def generate_prompt_pairs(n: int, seed: int = 0, detail: float = 0.6, split: str = "all") -> pa.Table:
    """`n` (short_prompt, caption) pairs, no images: caption-LM training data. The default split is "all": users
    may type any pair, and an LM that never saw one (say "yellow cross") writes another colour instead.

    Half the prompts come from the user-like mix of `make_short_prompt`, half state each optional attribute with
    probability `detail`. Users state size, position or background in a quarter of prompts; with so little of
    that signal a small LM learned to copy colour and shape but sampled size as if it had not been stated.
    """
    PromptPairsConfig(n=n, seed=seed, detail=detail, split=split)
    prompts, captions = [], []
    for i in range(n):
        rng = np.random.default_rng([seed, 99, i])
        labels = sample_labels(rng, split)
        captions.append(make_caption(labels, rng))
        prompts.append(make_short_prompt(labels, rng, detail=None if rng.random() < 0.5 else detail))
    return pa.table({"short_prompt": prompts, "caption": captions})
