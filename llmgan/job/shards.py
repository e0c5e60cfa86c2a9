"""Shard files: write one shard's data, index and stats (stats last = committed), and read them back.

Layout under OUTPUT/: shards/{shard}.tar (WebDataset: {key}.{ext}, {key}.json, {key}.txt; ext png, webp or jpg by
the job's --image-format) or shards/{shard}.parquet
(typed columns, image as a Hugging Face `datasets` Image feature), shards/{shard}.stats.json, and
index/{shard}.parquet (one row per image; outside shards/ so a `shards/*.parquet` data glob reads only data).
Every file is written atomically and deterministically (fixed tar headers, fixed order), so a redone shard
is byte-identical to the first attempt.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from llmgan.io.images import EXTENSIONS
from llmgan.io.storage import Storage, join

if TYPE_CHECKING:
    import numpy as np

SHARDS_DIR = "shards"
INDEX_DIR = "index"
STATS_SUFFIX = ".stats.json"
LEGACY_INDEX_SUFFIX = ".index.parquet"  # where older outputs kept the index: beside the data, in shards/
MAX_REJECTED_DETAIL = 1000  # rejected rows listed one by one per shard; all are counted in rejected_counts
IMAGE_EXTS = frozenset(EXTENSIONS.values()) | {"jpeg"}  # image members of a shard's tar, whatever its format


class ShardConflict(Exception):
    """A committed shard would be overwritten with different bytes, or belongs to another job."""


@dataclass
class ImageRecord:
    """One image of a shard. The generator stage makes it with `pixels` (uint8 H x W x C) and no bytes yet; the
    encoding stage (llmgan.job.stages.ShardEncoder) fills `image` and `ext` and drops the pixels."""

    key: str
    image: bytes  # the encoded file (png, webp or jpeg)
    caption: str
    meta: dict[str, Any]  # prompt, prompt_id, seed, variant, score, extra columns ...
    ext: str = "png"  # the file extension of `image`: png, webp or jpg
    pixels: np.ndarray | None = None


@dataclass
class ShardResult:
    """Everything a finished shard needs to be written; produced by the generator stage."""

    index: int
    row_start: int
    row_stop: int
    records: list[ImageRecord] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)  # {row, id, reason}
    expansion: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    workers: dict[str, dict] = field(default_factory=dict)  # stage -> {node, pid} that ran it
    consistency: dict[str, Any] | None = None  # score histogram, share below threshold, draws (job.feedback)
    understanding: dict[str, Any] | None = None  # prompts / images / words the domain did not understand
    dropped: list[dict[str, Any]] = field(default_factory=list)  # {key, prompt_id, consistency} under --drop-below

    @property
    def name(self) -> str:
        return f"{self.index:05d}"


def shard_url(out: str, name: str, suffix: str) -> str:
    return join(out, SHARDS_DIR, f"{name}{suffix}")


def index_url(out: str, name: str) -> str:
    return join(out, INDEX_DIR, f"{name}.parquet")


def output_names(storage: Storage, out: str) -> set[str]:
    """Every file under `out`, as paths relative to it ("shards/00000.tar", "index/00000.parquet")."""
    return set(storage.list(out))


def image_key(shard: int, i: int) -> str:
    """Keys are made by us, never from user ids, so they cannot escape the output prefix."""
    return f"{shard:05d}_{i:06d}"


def _tar_bytes(records: list[ImageRecord]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for rec in records:
            members = (
                (f"{rec.key}.{rec.ext}", rec.image),
                (f"{rec.key}.json", json.dumps(rec.meta, sort_keys=True, ensure_ascii=False, default=str).encode()),
                (f"{rec.key}.txt", rec.caption.encode("utf-8")),
            )
            for name, data in members:
                info = tarfile.TarInfo(name)
                info.size, info.mtime, info.mode = len(data), 0, 0o644
                info.uname = info.gname = ""
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _parquet_bytes(table: Any) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue().to_pybytes()


def _images_table(records: list[ImageRecord]) -> Any:
    """Parquet data file: typed columns, the image as a Hugging Face `datasets` Image (llmgan.job.shard_columns)."""
    from llmgan.job.shard_columns import data_table

    # the caption is the record's (what the .txt member of a tar holds), whatever the metadata says
    return data_table([r.key for r in records], [r.image for r in records], [r.ext for r in records],
                      [dict(r.meta, caption=r.caption) for r in records])


def _index_table(records: list[ImageRecord]) -> Any:
    import pyarrow as pa

    def col(name: str, default: Any = None) -> list[Any]:
        return [r.meta.get(name, default) for r in records]

    return pa.table({
        "key": pa.array([r.key for r in records], pa.string()),
        "prompt_id": pa.array([str(v) for v in col("prompt_id")], pa.string()),
        "prompt": pa.array(col("prompt"), pa.string()),
        "caption": pa.array([r.caption for r in records], pa.string()),
        "seed": pa.array(col("seed"), pa.uint64()),
        "variant": pa.array(col("variant"), pa.int32()),
        "score": pa.array(col("score"), pa.float32()),
        "consistency": pa.array(col("consistency"), pa.float32()),
        "attempts": pa.array(col("attempts", 1), pa.int32()),
        "not_understood": pa.array([list(v or []) for v in col("not_understood")], pa.list_(pa.string())),
        "sha256": pa.array([hashlib.sha256(r.image).hexdigest() for r in records], pa.string()),
        # the encoded image's size (outputs written before --image-format call this column png_bytes)
        "image_bytes": pa.array([len(r.image) for r in records], pa.int64()),
    })


def write_shard(storage: Storage, out: str, result: ShardResult, fmt: str, job_id: str) -> dict[str, Any]:
    """Write data + index, then stats (the commit marker). Returns the stats dict.

    A shard that is already committed is never rewritten: identical bytes (a retried write whose first
    attempt committed) return the existing stats; different bytes or another job raise ShardConflict.
    """
    import time

    t0 = time.perf_counter()
    if any(r.pixels is not None for r in result.records):
        raise ValueError(f"shard {result.name} has images that were never encoded")
    if fmt == "webdataset":
        data_suffix, data = ".tar", _tar_bytes(result.records)
    else:
        data_suffix, data = ".parquet", _parquet_bytes(_images_table(result.records))
    data_sha = hashlib.sha256(data).hexdigest()
    stats_url = shard_url(out, result.name, STATS_SUFFIX)
    if storage.exists(stats_url):
        old = read_stats(storage, stats_url)
        if old.get("job_id") == job_id and old.get("data_sha256") == data_sha:
            return old
        raise ShardConflict(f"shard {result.name} is already committed in {out} with different content "
                            f"(job {old.get('job_id')}); refusing to overwrite it")
    storage.write_bytes(shard_url(out, result.name, data_suffix), data)
    storage.write_bytes(index_url(out, result.name), _parquet_bytes(_index_table(result.records)))
    seconds = dict(result.seconds, write=time.perf_counter() - t0)
    reasons: dict[str, int] = {}
    for r in result.rejected:
        reasons[r["reason"]] = reasons.get(r["reason"], 0) + 1
    stats = {
        "shard": result.index,
        "job_id": job_id,
        "rows": [result.row_start, result.row_stop],
        "images": len(result.records),
        "prompts": len({r.meta.get("prompt_id") for r in result.records}),
        "rejected": result.rejected[:MAX_REJECTED_DETAIL],
        "rejected_counts": reasons,
        "expansion": result.expansion,
        "consistency": result.consistency,
        "understanding": result.understanding,
        "dropped": len(result.dropped),
        "dropped_sample": result.dropped[:MAX_REJECTED_DETAIL],
        "seconds": {k: round(v, 4) for k, v in seconds.items()},
        "workers": result.workers,
        "data_file": f"{result.name}{data_suffix}",
        "data_sha256": data_sha,
        "data_bytes": len(data),
    }
    storage.write_text(stats_url, json.dumps(stats, indent=1, sort_keys=True))
    return stats


def committed_shards(storage: Storage, out: str) -> dict[int, str]:
    """{shard index: stats URL} for shards whose stats file exists (the commit marker)."""
    found: dict[int, str] = {}
    for name in storage.list(join(out, SHARDS_DIR)):
        if name.endswith(STATS_SUFFIX) and "/" not in name and name[:-len(STATS_SUFFIX)].isdigit():
            found[int(name[:-len(STATS_SUFFIX)])] = shard_url(out, name[:-len(STATS_SUFFIX)], STATS_SUFFIX)
    return found


def read_stats(storage: Storage, url: str) -> dict[str, Any]:
    return json.loads(storage.read_text(url))


def check_shard(storage: Storage, out: str, index: int, names: set[str], job_id: str) -> str | None:
    """Why a committed shard cannot be trusted (None: intact). Reads its data file and checks the sha256
    recorded in its stats, so a truncated or missing data file is found before the shard is skipped.
    `names`: output_names(out). Raises ShardConflict when the stats belong to another job (folders mixed up:
    never repaired silently). A shard written with its index in shards/ (an older llmgan) is redone, and that
    index removed, so no index file is left where a `shards/*.parquet` data glob would read it.
    """
    name = f"{index:05d}"
    try:
        stats = read_stats(storage, shard_url(out, name, STATS_SUFFIX))
        data_file = stats["data_file"]
        want_sha = stats["data_sha256"]
    except (ValueError, KeyError, TypeError):
        return "stats file unreadable"
    if stats.get("job_id") != job_id:
        raise ShardConflict(f"shard {name} in {out} was written by job {stats.get('job_id')!r}, but _job.json is "
                            f"job {job_id!r} (output folders mixed?); use a new --out or pass --overwrite")
    if data_file != f"{name}.tar" and data_file != f"{name}.parquet":
        return f"stats names an unexpected data file {data_file!r}"
    legacy = f"{SHARDS_DIR}/{name}{LEGACY_INDEX_SUFFIX}"
    if legacy in names:
        storage.delete(join(out, legacy))
        return f"index in the old place ({legacy})"
    if f"{SHARDS_DIR}/{data_file}" not in names:
        return f"data file {data_file} missing"
    if f"{INDEX_DIR}/{name}.parquet" not in names:
        return f"index file {INDEX_DIR}/{name}.parquet missing"
    if hashlib.sha256(storage.read_bytes(join(out, SHARDS_DIR, data_file))).hexdigest() != want_sha:
        return f"data file {data_file} damaged (sha256 differs from its stats)"
    return None


def read_shard_records(storage: Storage, out: str, stats: dict[str, Any]) -> list[ImageRecord]:
    """Every image of a committed shard with its metadata, in key order, from its data file (tar or Parquet).
    Raises ValueError when the data file's sha256 is not the one its stats recorded."""
    data = storage.read_bytes(join(out, SHARDS_DIR, stats["data_file"]))
    if hashlib.sha256(data).hexdigest() != stats.get("data_sha256"):
        raise ValueError(f"data file {stats['data_file']} damaged (sha256 differs from its stats)")
    if stats["data_file"].endswith(".tar"):
        members: dict[str, dict[str, bytes]] = {}
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            for member in tar:
                key, _, ext = member.name.rpartition(".")
                members.setdefault(key, {})[ext] = tar.extractfile(member).read()  # type: ignore[union-attr]
        records = []
        for key, m in sorted(members.items()):
            ext = next((e for e in m if e in IMAGE_EXTS), None)
            if ext is not None:
                records.append(ImageRecord(key, m[ext], m.get("txt", b"").decode("utf-8"),
                                           json.loads(m.get("json", b"{}")), ext))
        return records
    import pyarrow.parquet as pq

    from llmgan.job.shard_columns import IMAGE_COLUMN, row_meta

    records = []
    for row in pq.read_table(io.BytesIO(data)).to_pylist():
        meta = row_meta(row)
        image = row[IMAGE_COLUMN]
        ext = (image.get("path") or "").rpartition(".")[2].lower()
        records.append(ImageRecord(row["key"], image["bytes"], meta.get("caption", ""), meta,
                                   ext if ext in IMAGE_EXTS else "png"))
    return records
