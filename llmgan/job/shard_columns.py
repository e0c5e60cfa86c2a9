"""The columns of a `--format parquet` data file: one typed column per metadata field and the image as the
struct Hugging Face `datasets` decodes as an `Image` feature; and the way back from a row to an image's metadata.

`datasets.load_dataset("parquet", data_files="OUT/shards/*.parquet")` reads the files as they are: the schema
metadata names only the image column's feature (the struct alone reads as a plain dict), the other columns'
features follow from their Arrow types, so the files do not depend on one `datasets` version's feature names.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable
from typing import Any

IMAGE_COLUMN = "image"
EXTRA_IMAGE = "extra_image"  # a prompts file's column named "image"
# The image's metadata fields in column order: (name, Arrow type name, default when an image lacks the field).
# `understood` (word -> {attr, value, confidence}) is nested and differs per prompt, so it is a JSON string.
FIELDS: tuple[tuple[str, str, Any], ...] = (
    ("prompt", "string", None),
    ("prompt_id", "string", None),
    ("caption", "string", None),
    ("seed", "uint64", None),
    ("variant", "int32", None),
    ("index", "int32", None),
    ("row", "int64", None),
    ("score", "float64", None),
    ("consistency", "float64", None),  # None: not scored, or the prompt had words the model did not understand
    ("first_consistency", "float64", None),
    ("consistency_of_understood", "float64", None),
    ("attempts", "int32", 1),
    ("disagree", "list<string>", None),
    ("drawn_from", "string", None),
    ("understood", "json", None),
    ("not_understood", "list<string>", None),
)
# the job's own metadata fields: any other key of an image's metadata is an extra column of the prompts file
KNOWN = {"key"} | {name for name, _, _ in FIELDS}


def _arrow_type(name: str) -> Any:
    import pyarrow as pa

    return {"string": pa.string(), "json": pa.string(), "uint64": pa.uint64(), "int32": pa.int32(),
            "int64": pa.int64(), "float64": pa.float64(), "list<string>": pa.list_(pa.string())}[name]


def _to_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


def _coerce(kind: str) -> Callable[[Any], Any]:
    """A converter to the column's type that never raises: a value that does not fit becomes null (a prompts
    file may name an extra column like a metadata field; the shard must still be written)."""

    def number(cast: type) -> Callable[[Any], Any]:
        def f(v: Any) -> Any:
            try:
                return None if v is None or isinstance(v, (str, bytes)) else cast(v)
            except (TypeError, ValueError, OverflowError):
                return None
        return f

    if kind == "string":
        return lambda v: None if v is None else str(v)
    if kind == "json":
        return lambda v: None if v is None else _to_json(v)
    if kind == "list<string>":
        return lambda v: None if v is None else [str(x) for x in v] if isinstance(v, (list, tuple)) else [str(v)]
    if kind == "float64":
        return number(float)
    return number(int)


def _safe_int(kind: str, v: Any) -> Any:
    bounds = {"uint64": (0, 2**64 - 1), "int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}
    lo, hi = bounds.get(kind, (None, None))
    return v if v is None or lo is None or lo <= v <= hi else None


def _extra_array(values: list[Any]) -> Any:
    """An extra (prompts-file) column, typed from its values: bool, int64, float64, string, binary, date or
    timestamp as they come; lists and dicts as JSON strings. A column null in this whole shard is string."""
    import pyarrow as pa

    kinds = {type(v) for v in values if v is not None}
    if not kinds:
        return pa.array(values, pa.string())
    if kinds <= {bool}:
        wanted = pa.bool_()
    elif kinds <= {int, float}:
        wanted = pa.float64() if float in kinds else pa.int64()
    elif kinds <= {str}:
        wanted = pa.string()
    elif kinds <= {bytes}:
        wanted = pa.binary()
    elif kinds <= {datetime.date, datetime.datetime} and len(kinds) == 1:
        wanted = None  # Arrow infers date32 / timestamp
    else:
        return pa.array([None if v is None else _to_json(v) for v in values], pa.string())
    try:
        return pa.array(values, wanted)
    except (pa.ArrowException, OverflowError, TypeError):  # e.g. an integer beyond int64
        return pa.array([None if v is None else str(v) for v in values], pa.string())


def extra_names(metas: list[dict[str, Any]]) -> list[str]:
    """The prompts file's extra columns, in their order in the file (the metadata dicts keep it)."""
    names: dict[str, None] = {}
    for meta in metas:
        for k in meta:
            if k not in KNOWN:
                names.setdefault(k)
    return list(names)


def data_table(keys: list[str], images: list[bytes], exts: list[str], metas: list[dict[str, Any]]) -> Any:
    """The Arrow table of a shard's Parquet data file (one row per image). The image struct's `path` ends in the
    image's extension (`datasets` decodes the bytes whatever the format; the path names the file on export)."""
    import pyarrow as pa

    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    columns: dict[str, Any] = {
        "key": pa.array(keys, pa.string()),
        IMAGE_COLUMN: pa.array([{"bytes": b, "path": f"{key}.{ext}"} for key, b, ext in zip(keys, images, exts)],
                               image_type),
    }
    for name, kind, default in FIELDS:
        coerce = _coerce(kind)
        values = [coerce(m.get(name, default)) for m in metas]
        if kind in ("uint64", "int32", "int64"):
            values = [_safe_int(kind, v) for v in values]
        columns[name] = pa.array(values, _arrow_type(kind))
    for name in extra_names(metas):
        # an extra column may not take the name of ours: only "image" can collide (the other names are
        # metadata fields, where the job's value already won over the prompts file's)
        columns[name if name != IMAGE_COLUMN else EXTRA_IMAGE] = _extra_array([m.get(name) for m in metas])
    features = {IMAGE_COLUMN: {"_type": "Image"}}
    return pa.table(columns).replace_schema_metadata({"huggingface": json.dumps({"info": {"features": features}})})


def row_meta(row: dict[str, Any]) -> dict[str, Any]:
    """An image's metadata from a data-file row (what the WebDataset `.json` member holds): `understood` parsed
    back, fields the image never had (null) dropped. The key and image bytes are not metadata."""
    meta = {k: v for k, v in row.items() if k not in ("key", IMAGE_COLUMN) and v is not None}
    if EXTRA_IMAGE in meta:  # the prompts file's own "image" column, renamed in the data file
        meta[IMAGE_COLUMN] = meta.pop(EXTRA_IMAGE)
    if isinstance(meta.get("understood"), str):
        meta["understood"] = json.loads(meta["understood"])
    return meta
