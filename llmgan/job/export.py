"""`llmgan export`: a job's output (local or s3://) as a plain folder of images, `{prompt_id}/{variant}_{index}.{ext}`
(ext: png, webp or jpg, as the job encoded them; the bytes are copied, never re-encoded), plus `manifest.csv` (one row per image), for tools that want files rather than shards (an artist, a game
engine's import step). Every check runs before anything is written; the manifest is written last, so a
folder without one is an export that did not finish.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmgan.errors import UserError
from llmgan.io.storage import Storage, is_s3, join
from llmgan.job.manifest import JOB_FILE, SUCCESS_FILE
from llmgan.job.shard_columns import FIELDS, KNOWN
from llmgan.job.shards import ImageRecord, committed_shards, read_shard_records, read_stats

MANIFEST = "manifest.csv"
# The manifest's columns before the prompts file's extra columns. Missing fields are empty cells (a job without
# consistency feedback has no consistency; `consistency` is also empty for prompts with words the model did
# not understand); lists and dicts (`understood`, `not_understood`, `disagree`) are JSON.
COLUMNS = ("path", "prompt_id", "prompt", "caption", "seed", "variant", "index", "consistency", "first_consistency",
           "attempts", "score", "understood", "not_understood", "disagree", "drawn_from", "key", "shard", "sha256")
MAX_NAME = 80  # characters of a prompt id kept in its folder name
WRITERS = 8  # concurrent image writes (S3 PUTs are latency-bound)


class ExportError(Exception):
    """The job output cannot be exported as it is (a damaged shard): one line, exit code 1."""


@dataclass
class ExportPlan:
    """What `run_export` will do; made by `plan_export` after every check."""

    src: str
    dest: str
    shards: list[tuple[int, dict[str, Any]]]  # (index, stats) of the committed shards, in order
    planned_shards: int
    complete: bool
    extra_columns: list[str]
    images: int = field(init=False)

    def __post_init__(self) -> None:
        self.images = sum(st["images"] for _, st in self.shards)


def plan_export(storage: Storage, src: str, dest: str, partial: bool = False, overwrite: bool = False) -> ExportPlan:
    """Check the source job and the destination; raise UserError (one line) before anything is written."""
    if _same_or_inside(dest, src):
        raise UserError(f"DEST {dest} is the job output or inside it; export somewhere else")
    if not is_s3(dest) and Path(dest).exists() and not Path(dest).is_dir():
        raise UserError(f"DEST {dest} is a file, not a folder")
    if not storage.exists(join(src, JOB_FILE)):
        raise UserError(f"{src} is not a job output (no {JOB_FILE})")
    try:
        job = json.loads(storage.read_text(join(src, JOB_FILE)))
    except json.JSONDecodeError:
        raise UserError(f"{src}/{JOB_FILE} is not readable JSON") from None
    committed = committed_shards(storage, src)
    planned = int(job.get("plan", {}).get("shards", len(committed)))
    complete = storage.exists(join(src, SUCCESS_FILE))
    if not complete and not partial:
        raise UserError(f"{src} is an unfinished job ({len(committed)} of {planned} shards committed, no "
                        f"{SUCCESS_FILE}); rerun the job to finish it, or pass --partial to export the committed shards")
    if not committed:
        raise UserError(f"{src} has no committed shards: nothing to export")
    if storage.list(dest) and not overwrite:
        raise UserError(f"DEST {dest} is not empty; choose an empty folder or pass --overwrite")
    with ThreadPoolExecutor(max_workers=WRITERS) as pool:  # S3 reads are latency-bound
        stats = list(pool.map(lambda i: (i, read_stats(storage, committed[i])), sorted(committed)))
    prompt_column = job.get("settings", {}).get("prompt_column", "prompt")
    extras = [c for c in job.get("prompts", {}).get("columns", []) if c not in (prompt_column, "id", "n", "seed")
              # a column named like one of the job's metadata fields was overridden by the job's value
              and c not in KNOWN]
    return ExportPlan(src, dest, stats, planned, complete, extras)


def _same_or_inside(dest: str, src: str) -> bool:
    if is_s3(dest) != is_s3(src):
        return False
    if is_s3(dest):
        a, b = dest.rstrip("/") + "/", src.rstrip("/") + "/"
    else:
        a, b = str(Path(dest).resolve()) + "/", str(Path(src).resolve()) + "/"
    return a.startswith(b)


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


class FolderNames:
    """A folder name per prompt id that stays inside DEST and never merges two ids: characters other than
    letters, digits, '.', '_' and '-' become '_', and an id that had to change (or that would collide with
    another on a case-insensitive file system) gets a short hash of itself appended."""

    def __init__(self) -> None:
        self._taken: dict[str, str] = {}  # casefolded name -> the id that has it

    def __call__(self, prompt_id: str) -> str:
        name = _UNSAFE.sub("_", prompt_id)[:MAX_NAME]
        if name.startswith("."):  # no ".", "..", nor hidden folders
            name = "_" + name[1:]
        if name != prompt_id or self._taken.get(name.casefold(), prompt_id) != prompt_id:
            name = f"{name}-{hashlib.blake2b(prompt_id.encode('utf-8', 'surrogatepass'), digest_size=4).hexdigest()}"
        self._taken.setdefault(name.casefold(), prompt_id)
        return name


def image_path(rec: ImageRecord, folder: str) -> str:
    meta = rec.meta
    if meta.get("variant") is None or meta.get("index") is None:
        return f"{folder}/{rec.key}.{rec.ext}"  # an image without its (variant, index): named by its unique key
    return f"{folder}/{int(meta['variant'])}_{int(meta['index'])}.{rec.ext}"


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, (list, dict, tuple)):
        return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
    return value


def manifest_header(extras: list[str]) -> list[str]:
    """COLUMNS, then the extra columns (one named like ours is written as `extra_<name>`)."""
    return [*COLUMNS, *(f"extra_{c}" if c in COLUMNS else c for c in extras)]


def manifest_row(rec: ImageRecord, path: str, shard: int, extras: list[str]) -> list[Any]:
    # the same defaults as the Parquet columns (attempts: 1 draw), so both shard formats export the same rows
    ours = {**{name: default for name, _, default in FIELDS}, **rec.meta, "path": path, "key": rec.key,
            "shard": f"{shard:05d}", "caption": rec.caption, "sha256": hashlib.sha256(rec.image).hexdigest()}
    return [_cell(ours.get(c)) for c in COLUMNS] + [_cell(rec.meta.get(c)) for c in extras]


def run_export(storage: Storage, plan: ExportPlan,
               on_shard: Callable[[int, int, int], None] | None = None) -> dict[str, Any]:
    """Write every image of the planned shards, then the manifest. `on_shard(shard, images done, total)`."""
    names = FolderNames()
    done = 0
    with tempfile.TemporaryDirectory(prefix="llmgan-export-") as tmp, \
            open(Path(tmp, MANIFEST), "w", newline="", encoding="utf-8") as f, \
            ThreadPoolExecutor(max_workers=WRITERS) as pool:
        writer = csv.writer(f)
        writer.writerow(manifest_header(plan.extra_columns))
        for index, stats in plan.shards:
            try:
                records = read_shard_records(storage, plan.src, stats)
            except ValueError as exc:
                raise ExportError(f"shard {index:05d} of {plan.src} is damaged ({exc}); rerun the job to repair "
                                  f"it") from None
            paths = [image_path(rec, names(str(rec.meta.get("prompt_id", "")))) for rec in records]
            # list(): wait for this shard's writes (and raise the first failure) before the next shard
            list(pool.map(lambda a: storage.write_bytes(join(plan.dest, a[0]), a[1].image), zip(paths, records)))
            writer.writerows(manifest_row(rec, path, index, plan.extra_columns) for rec, path in zip(records, paths))
            done += len(records)
            if on_shard is not None:
                on_shard(index, done, plan.images)
        f.flush()
        storage.write_bytes(join(plan.dest, MANIFEST), Path(tmp, MANIFEST).read_bytes())
    return {"images": done, "shards": len(plan.shards), "planned_shards": plan.planned_shards,
            "complete": plan.complete, "dest": plan.dest, "manifest": join(plan.dest, MANIFEST)}
