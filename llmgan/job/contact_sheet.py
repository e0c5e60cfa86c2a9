"""The job's contact sheet: prompts sampled across the whole job, one row of images per prompt (up to a cap),
each row captioned with its prompt and showing that prompt's first images."""

from __future__ import annotations

import io
import math
from typing import Any

import numpy as np

from llmgan.io.images import png_bytes
from llmgan.io.storage import Storage, join
from llmgan.job.shards import ImageRecord, committed_shards, read_shard_records, read_stats

CONTACT_SHEET = "contact_sheet.png"
CONTACT_TILE = 96  # minimum tile side in pixels
MAX_ROWS = 16  # prompts shown
MAX_PER_ROW = 8  # images of one prompt shown
# Shards read to pick the prompts from, spread from the first to the last: each is read whole, so a job of
# large images does not download every shard at its end.
MAX_SHARDS_READ = 8
MIN_PANEL_WIDTH = 240  # so a prompt's caption stays readable when few of its images are shown
BACKGROUND, LABEL = (40, 40, 40), (230, 230, 230)


def spread(items: list[Any], k: int) -> list[Any]:
    """`k` items evenly spaced from first to last (all of them when there are no more than k)."""
    if len(items) <= k:
        return list(items)
    if k == 1:
        return [items[0]]
    return [items[round(i * (len(items) - 1) / (k - 1))] for i in range(k)]


def sample_rows(storage: Storage, out: str, rows: int, per_row: int) -> list[tuple[str, list[ImageRecord]]]:
    """(prompt, its first `per_row` images) for up to `rows` prompts spread over the committed shards."""
    committed = committed_shards(storage, out)
    shards = spread(sorted(committed), min(rows, MAX_SHARDS_READ))
    picked: list[tuple[str, list[ImageRecord]]] = []
    for i, idx in enumerate(shards):
        by_prompt: dict[str, list[ImageRecord]] = {}
        try:
            records = read_shard_records(storage, out, read_stats(storage, committed[idx]))
        except ValueError:  # a shard damaged since its commit: the sheet shows the others (a rerun repairs it)
            continue
        for rec in records:
            by_prompt.setdefault(str(rec.meta.get("prompt_id")), []).append(rec)
        # the rows still to fill, shared between this shard and those left
        quota = -(-(rows - len(picked)) // (len(shards) - i))
        for recs in spread(list(by_prompt.values()), quota):
            picked.append((str(recs[0].meta.get("prompt", "")), recs[:per_row]))
    return picked


def _font(size: int) -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        return ImageFont.load_default()


def _fit(draw: Any, text: str, font: Any, width: int) -> str:
    """`text` cut (with an ellipsis) to fit `width` pixels."""
    text = " ".join(text.split())
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def on_checkerboard(img: Any, cell: int = 4) -> Any:
    """An RGB copy of a PIL image, transparent parts over a light grey checkerboard (how editors show alpha)."""
    from PIL import Image

    if img.mode not in ("RGBA", "LA", "PA") and "transparency" not in img.info:
        return img.convert("RGB")
    yy, xx = np.indices((img.height, img.width))
    board = np.where(((yy // cell + xx // cell) % 2 == 0)[..., None], 255, 204).astype(np.uint8).repeat(3, axis=2)
    under = Image.fromarray(board, "RGB")
    rgba = img.convert("RGBA")
    under.paste(rgba, (0, 0), rgba)
    return under


def render(rows: list[tuple[str, list[bytes | None]]]) -> Any:
    """A PIL image of one panel per prompt: the prompt in a caption strip above its images, left to right.
    Panels stack top to bottom in as many columns as keep the sheet roughly square; transparent images are shown
    over a checkerboard; a None tile leaves a gap."""
    from PIL import Image, ImageDraw

    # any format the job wrote (png, webp, jpeg): Pillow reads it from its bytes
    tiles = [[None if b is None else on_checkerboard(Image.open(io.BytesIO(b))) for b in images] for _, images in rows]
    side = max(max(im.size) for row in tiles for im in row if im is not None)
    scale = -(-CONTACT_TILE // side) if side < CONTACT_TILE else 1  # small images enlarged pixel-exact
    side *= scale
    pad = max(2, side // 16)
    font_size = max(11, min(20, side // 6))
    label_h = font_size + pad
    per_row = max(len(row) for row in tiles)
    panel_w = max(MIN_PANEL_WIDTH, per_row * (side + pad) - pad)
    panel_h = label_h + side
    cols = max(1, min(len(rows), round(math.sqrt(len(rows) * (panel_h + pad) / (panel_w + 2 * pad)))))
    n_down = -(-len(rows) // cols)
    sheet = Image.new("RGB", (cols * (panel_w + 2 * pad) + pad, n_down * (panel_h + pad) + pad), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    font = _font(font_size)
    for i, ((prompt, _), row) in enumerate(zip(rows, tiles)):
        x, y = pad + (i // n_down) * (panel_w + 2 * pad), pad + (i % n_down) * (panel_h + pad)
        draw.text((x, y), _fit(draw, prompt, font, panel_w), fill=LABEL, font=font)
        for j, im in enumerate(row):
            if im is None:
                continue
            if scale > 1:
                im = im.resize((im.width * scale, im.height * scale), Image.NEAREST)
            sheet.paste(im, (x + j * (side + pad), y + label_h))
    return sheet


def write_contact_sheet(storage: Storage, out: str, count: int) -> str | None:
    """contact_sheet.png from at most `count` images: up to MAX_ROWS prompts sampled across the job, as many
    images of each as the count allows (at most MAX_PER_ROW). Returns its URL (None: nothing to show)."""
    if count <= 0:
        return None
    rows = min(MAX_ROWS, count)
    per_row = max(1, min(MAX_PER_ROW, count // rows))
    sampled = sample_rows(storage, out, rows, per_row)
    if not sampled:
        return None
    url = join(out, CONTACT_SHEET)
    storage.write_bytes(url, png_bytes(render([(prompt, [r.image for r in recs]) for prompt, recs in sampled])))
    return url
