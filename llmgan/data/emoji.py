"""The emoji dataset: real 64 px RGBA emoji from the emoji-datasource npm packages (one package per drawing style),
captioned from their Unicode names and subcategories, with a held-out split of unseen concept x style pairs.

Caption: "doughnut emoji, food sweet, twitter style". Short prompt (what a user types, the caption LM's input):
the name alone, or with the style ("doughnut", "doughnut, google style"), in the `short_prompt` column that
`llmgan train-lm` and the matcher read. `label` is the concept (its short name,
shared by both styles): the judge's class. Every row carries its image's licence and attribution.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from PIL import Image

from llmgan.errors import UserError
from llmgan.io.images import png_bytes
from llmgan.io.packages import EMOJI_PACKAGES

STYLES = tuple(sorted(EMOJI_PACKAGES))  # the drawing styles with a pinned package
SPLITS = ("all", "train", "heldout")
HELDOUT_SHARE = 0.08  # concepts whose one style is held out (the other style stays in training)
_NON_WORD = re.compile(r"[^a-z0-9'&]+")

SCHEMA = pa.schema([
    ("image", pa.binary()), ("caption", pa.string()), ("short_prompt", pa.string()), ("label", pa.string()),
    ("name", pa.string()), ("category", pa.string()), ("subcategory", pa.string()), ("style", pa.string()),
    ("split", pa.string()), ("license", pa.string()), ("attribution", pa.string()), ("source", pa.string()),
])


def concept_name(entry: Mapping[str, Any]) -> str:
    """'PERSON RAISING BOTH HANDS IN CELEBRATION' -> 'person raising both hands in celebration'; accents folded
    ('Türkiye Flag' -> 'turkiye flag') and typographic apostrophes made plain ('worker's')."""
    name = unicodedata.normalize("NFKD", str(entry["name"]).replace("\u2019", "'"))
    name = "".join(ch for ch in name if not unicodedata.combining(ch))
    return " ".join(_NON_WORD.sub(" ", name.lower()).split())


def caption_of(name: str, subcategory: str, style: str) -> str:
    return f"{name} emoji, {subcategory.replace('-', ' ')}, {style} style"


def heldout_style(label: str, styles: Sequence[str]) -> str | None:
    """The style of `label` kept out of training (None: all its styles train), from the styles the package index says
    it is drawn in (not the styles built), so a one-style build holds out the same pairs as a two-style one."""
    if len(styles) < 2:
        return None
    h = int.from_bytes(hashlib.sha256(f"emoji-heldout:{label}".encode()).digest()[:8], "big")
    if (h % 10_000) / 10_000 >= HELDOUT_SHARE:
        return None
    return sorted(styles)[(h >> 32) % len(styles)]


def _image(path: Path, size: int) -> bytes:
    """PNG bytes of an RGBA image at `size` px; ValueError names the file when it cannot be decoded."""
    try:
        with Image.open(path) as img:
            rgba = img.convert("RGBA")
    except (OSError, SyntaxError) as exc:
        raise ValueError(f"{path.name}: {exc}") from None
    if rgba.size != (size, size):
        rgba = rgba.resize((size, size), Image.LANCZOS)
    return png_bytes(np.asarray(rgba))


def build_emoji_dataset(
    packages: Mapping[str, tuple[Path, str, str, str]],
    size: int = 64,
    split: str = "all",
    progress: Callable[[int], None] | None = None,
) -> tuple[pa.Table, dict[str, int]]:
    """-> (table in SCHEMA, skipped counts by reason).

    `packages` maps a style ("google", "twitter") to (extracted package folder, source "name@version", licence,
    attribution). A style's images are `img/{style}/64/{image}` of its package, described by its `emoji.json`.
    Undecodable images are skipped and counted; no usable image at all is a UserError.
    """
    if split not in SPLITS:
        raise UserError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    if not 8 <= size <= 256:
        raise UserError(f"size must be between 8 and 256, got {size}")
    if not packages:
        raise UserError("no emoji styles chosen")
    entries: dict[str, list[dict[str, Any]]] = {}
    for style, (folder, *_rest) in packages.items():
        meta = Path(folder) / "emoji.json"
        try:
            entries[style] = json.loads(meta.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise UserError(f"{meta}: not a readable emoji-datasource index ({exc.__class__.__name__})") from None
    styles_of = {str(e.get("short_name")): [s for s in STYLES if e.get(f"has_img_{s}")]
                 for rows in entries.values() for e in rows}

    columns: dict[str, list[Any]] = {f.name: [] for f in SCHEMA}
    skipped: dict[str, int] = {}
    done = 0
    for style, rows in entries.items():
        folder, source, licence, attribution = packages[style]
        for e in sorted(rows, key=lambda r: (r.get("sort_order", 0), str(r.get("short_name")))):
            label = str(e.get("short_name") or "")
            if not label or not e.get(f"has_img_{style}") or e.get("category") == "Component":
                continue  # skin-tone swatches and hair parts are not images anyone asks for
            row_split = "heldout" if heldout_style(label, styles_of.get(label, [])) == style else "train"
            if split != "all" and row_split != split:
                continue
            try:
                data = _image(Path(folder) / "img" / style / "64" / str(e["image"]), size)
            except FileNotFoundError:
                skipped["missing image"] = skipped.get("missing image", 0) + 1
                continue
            except ValueError:
                skipped["corrupt image"] = skipped.get("corrupt image", 0) + 1
                continue
            name = concept_name(e)
            sub = str(e.get("subcategory") or "")
            prompt = name if int(hashlib.sha256(f"{label}:{style}".encode()).digest()[0]) % 2 else f"{name}, {style} style"
            for key, value in (("image", data), ("caption", caption_of(name, sub, style)), ("short_prompt", prompt),
                               ("label", label), ("name", name), ("category", str(e.get("category") or "")),
                               ("subcategory", sub), ("style", style), ("split", row_split), ("license", licence),
                               ("attribution", attribution), ("source", source)):
                columns[key].append(value)
            done += 1
            if progress is not None and done % 64 == 0:
                progress(done)
    if not columns["image"]:
        detail = ", ".join(f"{k}: {v}" for k, v in sorted(skipped.items())) or "no matching entries"
        raise UserError(f"no usable emoji images ({detail})")
    if progress is not None:
        progress(done)
    table = pa.table(columns, schema=SCHEMA)
    licences = sorted({f"{s}: {p[2]} ({p[3]})" for s, p in packages.items()})
    return table.replace_schema_metadata({"llmgan.dataset": "emoji", "llmgan.licenses": "; ".join(licences),
                                          "llmgan.image_size": str(size), "llmgan.split": split}), skipped

