"""Readers for captioned training images, local or on S3: Parquet (image bytes + caption columns, incl.
Hugging Face exports), WebDataset tar shards as img2dataset writes them, and image folders: Hugging Face
`imagefolder` layout (metadata.jsonl / metadata.csv with a `file_name` column) or sidecar .txt captions. Bad samples
are skipped and counted by reason; no usable sample at all is a UserError.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import posixpath
import tarfile
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import PurePosixPath

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from llmgan.errors import StorageError, UserError
from llmgan.io.storage import Storage, is_s3, join

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif")
# columns (or WebDataset .json keys) carried along as labels when present
LABEL_COLUMNS = ("shape", "color", "size", "position", "background", "label", "thickness", "slant")
# refuse images above this many pixels before decoding them (decompression bombs)
MAX_IMAGE_PIXELS = 40_000_000
PARQUET_BATCH_ROWS = 1024
# Hugging Face `imagefolder` metadata: one per folder, `file_name` relative to that folder
METADATA_FILES = ("metadata.jsonl", "metadata.csv")
# caption columns of a metadata file, in order, when --caption-column is not given (`text` is what HF uses)
METADATA_CAPTION_COLUMNS = ("text", "caption")


@dataclass
class CaptionedImages:
    """Decoded training samples: uint8 images (N, S, S, C) with C = 3 (RGB) or 4 (RGBA), their captions, labels and
    skip counts."""

    images: np.ndarray
    captions: list[str]
    labels: dict[str, list[str]] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.captions)


@dataclass
class _Sample:
    image: bytes | None
    caption: str | None
    labels: dict[str, str]
    where: str
    problem: str | None = None  # a reason to skip found before decoding


def decode_image(data: bytes, image_size: int) -> np.ndarray:
    """Bytes -> RGBA uint8 (image_size, image_size, 4): centre-cropped to a square, then resized; an image without
    transparency is opaque, and fully transparent pixels are black (one canonical colour for "nothing here").

    Raises ValueError("image too large") before decoding oversized images; PIL errors otherwise.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        img = Image.open(io.BytesIO(data))  # reads the header only
        if img.width * img.height > MAX_IMAGE_PIXELS:
            raise ValueError("image too large")
        if img.format == "JPEG":  # let the JPEG decoder downscale by 2/4/8 for free
            img.draft("RGB", (image_size, image_size))
        img = img.convert("RGBA")
    w, h = img.size
    side = min(w, h)
    if w != h:
        left, top = (w - side) // 2, (h - side) // 2
        img = img.crop((left, top, left + side, top + side))
    if side != image_size:
        img = img.resize((image_size, image_size), Image.BICUBIC, reducing_gap=3.0)
    rgba = np.array(img, dtype=np.uint8)
    rgba[rgba[..., 3] == 0, :3] = 0
    return rgba


def to_channels(rgba: np.ndarray, channels: int | None) -> np.ndarray:
    """uint8 (N, S, S, 4) -> (N, S, S, channels): 4 keeps alpha, 3 composites onto white, None keeps alpha only when
    some pixel is not opaque."""
    if channels is None:
        channels = 4 if bool((rgba[..., 3] < 255).any()) else 3
    if channels == 4:
        return rgba
    if channels != 3:
        raise UserError(f"channels must be 3 (RGB) or 4 (RGBA), got {channels}")
    rgb = np.ascontiguousarray(rgba[..., :3])
    seen = rgba[..., 3] < 255  # only those pixels change: no float copy of a whole (opaque) dataset
    if seen.any():
        alpha = rgba[seen][:, 3:].astype(np.float32) / 255.0
        rgb[seen] = np.rint(rgba[seen][:, :3] * alpha + 255.0 * (1.0 - alpha)).astype(np.uint8)
    return rgb


# ---- format detection ---------------------------------------------------------------------------


def _detect(url: str, storage: Storage) -> tuple[str, list[str]]:
    """(format, file URLs): one file by its extension, or a folder/prefix by what it holds."""
    lower = url.lower().rstrip("/")
    if lower.endswith((".parquet", ".tar")):
        if not storage.exists(url):
            raise UserError(f"dataset not found: {url}")
        return ("parquet" if lower.endswith(".parquet") else "webdataset"), [url]
    names = storage.list(url)
    if not names:
        raise UserError(f"dataset not found or empty: {url}")
    names = [n for n in names if not PurePosixPath(n).name.startswith((".", "_"))]
    tars = [n for n in names if n.endswith(".tar")]
    # img2dataset writes {shard}.parquet metadata next to each {shard}.tar: tars win
    if tars:
        return "webdataset", [join(url, n) for n in tars]
    parquets = [n for n in names if n.endswith(".parquet")]
    if parquets:
        return "parquet", [join(url, n) for n in parquets]
    if any(n.lower().endswith(IMAGE_EXTENSIONS) or PurePosixPath(n).name in METADATA_FILES for n in names):
        return "folder", names
    raise UserError(f"no Parquet files, .tar shards or images found under {url}")


# ---- per-format sample iterators -----------------------------------------------------------------


def _parquet_samples(
    files: list[str], storage: Storage, image_column: str, caption_column: str
) -> Iterator[_Sample]:
    for file_url in files:
        try:
            pf = pq.ParquetFile(storage.open_input(file_url))
        except (pa.ArrowInvalid, OSError) as exc:
            raise UserError(f"{file_url} is not a readable Parquet file: {str(exc).splitlines()[0]}") from None
        names = pf.schema_arrow.names
        for col, what in ((image_column, "image"), (caption_column, "caption")):
            if col not in names:
                raise UserError(
                    f"{file_url} has no {what} column {col!r} (columns: {', '.join(names)}); "
                    f"choose it with --{what}-column"
                )
        label_cols = [c for c in LABEL_COLUMNS if c in names and c not in (image_column, caption_column)]
        for batch in pf.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=[image_column, caption_column, *label_cols]):
            images = batch.column(image_column)
            if pa.types.is_struct(images.type):  # Hugging Face Image feature: {bytes, path}
                images = images.field("bytes") if images.type.get_field_index("bytes") >= 0 else pa.nulls(len(images))
            if not (pa.types.is_binary(images.type) or pa.types.is_large_binary(images.type)):
                raise UserError(f"{file_url}: column {image_column!r} holds {images.type}, not image bytes")
            imgs, caps = images.to_pylist(), batch.column(caption_column).to_pylist()
            labels = {c: batch.column(c).to_pylist() for c in label_cols}
            for i, (img, cap) in enumerate(zip(imgs, caps)):
                yield _Sample(img, cap if isinstance(cap, str) else None,
                              {c: str(v[i]) for c, v in labels.items() if v[i] is not None}, f"{file_url}#{i}")


def _caption_from_json(data: bytes) -> tuple[str | None, dict[str, str]]:
    try:
        meta = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return None, {}
    if not isinstance(meta, dict):
        return None, {}
    caption = meta.get("caption")
    labels = {k: str(meta[k]) for k in LABEL_COLUMNS if meta.get(k) is not None}
    return (caption if isinstance(caption, str) else None), labels


def _group_sample(key: str, parts: dict[str, bytes], where: str) -> _Sample:
    image = next((parts[e] for e in IMAGE_EXTENSIONS if e in parts), None)
    caption, labels = _caption_from_json(parts[".json"]) if ".json" in parts else (None, {})
    if ".txt" in parts:
        caption = parts[".txt"].decode("utf-8", errors="replace")
    return _Sample(image, caption, labels, f"{where}:{key}")


def _tar_samples(files: list[str], storage: Storage) -> Iterator[_Sample]:
    for file_url in files:
        try:
            stream = storage.open_input(file_url)
            # streaming mode: a shard is read once, front to back, never held whole in memory
            with tarfile.open(fileobj=stream, mode="r|*") as tar:
                key, parts = None, {}
                for member in tar:
                    if not member.isfile():
                        continue
                    path = PurePosixPath(member.name)
                    if path.name.startswith("."):
                        continue
                    stem, _, ext = path.name.partition(".")
                    member_key = str(path.parent / stem)
                    if member_key != key:
                        if key is not None:
                            yield _group_sample(key, parts, file_url)
                        key, parts = member_key, {}
                    data = tar.extractfile(member)
                    parts["." + ext.lower()] = data.read() if data is not None else b""
                if key is not None:
                    yield _group_sample(key, parts, file_url)
        except (tarfile.TarError, EOFError, OSError) as exc:
            if isinstance(exc, StorageError):
                raise
            log.warning("shard %s is truncated or unreadable (%s); kept the samples before the damage", file_url, exc)
            yield _Sample(None, None, {}, file_url, problem="damaged shard")


def _metadata_rows(url: str, storage: Storage) -> tuple[list[str], list[dict[str, object] | None]]:
    """(columns, rows) of a metadata.jsonl / metadata.csv; a JSONL line that is not an object is a None row."""
    text = storage.read_text(url)
    if url.lower().endswith(".csv"):
        reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
        rows: list[dict[str, object] | None] = [dict(r) for r in reader]
        return list(reader.fieldnames or []), rows
    rows, columns = [], {}
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            row = None
        rows.append(row if isinstance(row, dict) else None)
        columns.update(dict.fromkeys(row if isinstance(row, dict) else ()))
    return list(columns), rows


def _metadata_samples(url: str, meta: str, available: set[str], storage: Storage,
                      caption_column: str | None) -> Iterator[tuple[str | None, _Sample]]:
    """(image name or None, sample) per row of one metadata file, in file order; images it names are read."""
    meta_url = join(url, meta)
    columns, rows = _metadata_rows(meta_url, storage)
    if "file_name" not in columns:
        raise UserError(f"{meta_url} has no 'file_name' column (columns: {', '.join(columns) or 'none'}); "
                        f"Hugging Face imagefolder metadata names each image in 'file_name'")
    if caption_column is not None:
        caption_col = caption_column if caption_column in columns else None
    else:
        caption_col = next((c for c in METADATA_CAPTION_COLUMNS if c in columns), None)
    if caption_col is None:
        wanted = repr(caption_column) if caption_column else " or ".join(map(repr, METADATA_CAPTION_COLUMNS))
        raise UserError(f"{meta_url} has no caption column {wanted} (columns: {', '.join(columns)}); "
                        f"choose it with --caption-column")
    label_cols = [c for c in LABEL_COLUMNS if c in columns and c not in ("file_name", caption_col)]
    folder = posixpath.dirname(meta)
    for i, row in enumerate(rows):
        where = f"{meta_url}#{i}"
        file_name = row.get("file_name") if row is not None else None
        if not isinstance(file_name, str) or not file_name.strip():
            yield None, _Sample(None, None, {}, where, problem="bad metadata row")
            continue
        name = posixpath.normpath(posixpath.join(folder, file_name.strip().replace("\\", "/")))
        if name not in available:  # also a path that leaves the folder
            yield None, _Sample(None, None, {}, where, problem="missing image")
            continue
        caption = row.get(caption_col)
        labels = {c: str(row[c]) for c in label_cols if row.get(c) not in (None, "")}
        yield name, _Sample(storage.read_bytes(join(url, name)), caption if isinstance(caption, str) else None,
                            labels, join(url, name))


def _folder_samples(url: str, names: list[str], storage: Storage,
                    caption_column: str | None = None) -> Iterator[_Sample]:
    """Images named by metadata files first (their rows in order; metadata wins over a sidecar), then the other
    images in name order with their sidecar .txt captions."""
    available = set(names)
    described: set[str] = set()
    for meta in [n for n in names if PurePosixPath(n).name in METADATA_FILES]:
        for name, sample in _metadata_samples(url, meta, available, storage, caption_column):
            if name is not None:
                described.add(name)
            yield sample
    for name in names:
        if not name.lower().endswith(IMAGE_EXTENSIONS) or name in described:
            continue
        sidecar = str(PurePosixPath(name).with_suffix(".txt"))
        image = storage.read_bytes(join(url, name))
        caption = storage.read_text(join(url, sidecar)) if sidecar in available else None
        yield _Sample(image, caption, {}, join(url, name))


# ---- public entry point -------------------------------------------------------------------------


def load_captioned(
    url: str,
    image_size: int,
    storage: Storage | None = None,
    image_column: str | None = None,
    caption_column: str | None = None,
    limit: int | None = None,
    progress: Callable[[int], None] | None = None,
    channels: int | None = 3,
) -> CaptionedImages:
    """Decode a captioned image dataset (a Parquet file/folder, WebDataset shards, or an image folder).

    Columns: Parquet `image_column` (default "image") and `caption_column` (default "caption"); a folder's
    metadata.jsonl / metadata.csv takes `caption_column`, by default "text", else "caption".
    `channels`: 3 (RGB; transparent images are composited onto white), 4 (RGBA) or None (RGBA when any image has
    transparency, else RGB). Skipped samples are counted by reason in `.skipped`; `progress(n)` reports usable samples so far.
    """
    if image_size < 4 or image_size > 4096:
        raise UserError(f"image_size must be between 4 and 4096, got {image_size}")
    if limit is not None and limit < 1:
        raise UserError(f"limit must be at least 1, got {limit}")
    storage = storage or Storage()
    if is_s3(url):
        storage.check_bucket(url)
    fmt, files = _detect(url, storage)
    if fmt == "parquet":
        samples = _parquet_samples(files, storage, image_column or "image", caption_column or "caption")
    elif fmt == "webdataset":
        samples = _tar_samples(files, storage)
    else:
        samples = _folder_samples(url, files, storage, caption_column)

    images: list[np.ndarray] = []
    captions: list[str] = []
    labels: dict[str, list[str]] = {}
    skipped: Counter[str] = Counter()
    for sample in samples:
        if sample.problem:
            skipped[sample.problem] += 1
            continue
        if sample.image is None:
            skipped["missing image"] += 1
            continue
        caption = (sample.caption or "").strip()
        if not caption:
            skipped["missing caption"] += 1
            continue
        try:
            img = decode_image(sample.image, image_size)
        except ValueError as exc:
            if "too large" in str(exc):
                skipped["image too large"] += 1
                continue
            skipped["corrupt image"] += 1
            continue
        except (OSError, SyntaxError, Image.DecompressionBombError, Image.DecompressionBombWarning):
            skipped["corrupt image"] += 1
            continue
        for name, value in sample.labels.items():  # a label column missing for earlier rows is padded
            labels.setdefault(name, [""] * len(captions)).append(value)
        images.append(img)
        captions.append(caption)
        for values in labels.values():
            if len(values) < len(captions):
                values.append("")
        if progress is not None and len(captions) % 1024 == 0:
            progress(len(captions))
        if limit is not None and len(captions) >= limit:
            break
    if not captions:
        detail = ", ".join(f"{k}: {v}" for k, v in sorted(skipped.items())) or "no samples"
        raise UserError(f"no usable samples in {url} ({fmt}; skipped {detail})")
    if skipped:
        log.warning("%s: skipped %s", url, ", ".join(f"{v} ({k})" for k, v in sorted(skipped.items())))
    if progress is not None:
        progress(len(captions))
    return CaptionedImages(to_channels(np.stack(images), channels), captions, labels, dict(skipped))
