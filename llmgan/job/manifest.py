"""Job-level files: `_job.json` (written first, checked on rerun) and `_SUCCESS.json` (the contact sheet:
llmgan.job.contact_sheet)."""

from __future__ import annotations

import hashlib
import json
import platform
import time
from typing import Any

from llmgan import __version__
from llmgan.errors import UserError
from llmgan.io.storage import Storage, join, redact_url  # noqa: F401 - redact_url: re-exported
from llmgan.job.contact_sheet import CONTACT_SHEET
from llmgan.job.feedback import merge_consistency, merge_understanding
from llmgan.job.shards import INDEX_DIR, SHARDS_DIR, committed_shards, read_stats

JOB_FILE = "_job.json"
SUCCESS_FILE = "_SUCCESS.json"


def versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"llmgan": __version__, "python": platform.python_version()}
    for pkg in ("torch", "transformers", "ray", "pyarrow"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def job_id(settings: dict[str, Any], models: dict[str, Any], prompts: dict[str, Any]) -> str:
    blob = json.dumps({"settings": settings, "models": models, "prompts": prompts}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def build_manifest(settings: dict[str, Any], run: dict[str, Any], models: dict[str, Any],
                   prompts: dict[str, Any], plan: dict[str, Any]) -> dict[str, Any]:
    return {
        "job_id": job_id(settings, models, prompts),
        "settings": settings,
        "models": models,
        "prompts": prompts,
        "plan": plan,
        "run": run,  # concurrency, batch size, endpoint: free to change between reruns
        "versions": versions(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    diffs = []
    for section in ("settings", "models", "prompts", "plan"):
        a, b = old.get(section, {}), new.get(section, {})
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                diffs.append(f"{section}.{key}: {a.get(key)!r} -> {b.get(key)!r}")
    return diffs


def prepare_output(storage: Storage, out: str, manifest: dict[str, Any], overwrite: bool) -> bool:
    """Write `_job.json` first, or check the existing one. Returns True when resuming an existing job.

    An incompatible existing job is refused unless `overwrite`, which deletes its files first.
    """
    storage.check_bucket(out)
    job_url = join(out, JOB_FILE)
    if storage.exists(job_url):
        try:
            old = json.loads(storage.read_text(job_url))
        except json.JSONDecodeError:
            old = {}
        if old.get("job_id") == manifest["job_id"] and not overwrite:
            return True
        if not overwrite:
            diffs = _differences(old, manifest) or ["unreadable _job.json"]
            raise UserError(
                f"{out} holds a different job ({'; '.join(diffs[:3])}); use a new --out or pass --overwrite"
            )
        clear_output(storage, out)
    elif not overwrite and storage.list(join(out, SHARDS_DIR)):
        raise UserError(f"{out} has shard files but no {JOB_FILE}; use a new --out or pass --overwrite")
    elif overwrite:
        clear_output(storage, out)
    storage.write_text(job_url, json.dumps(manifest, indent=1, sort_keys=True, default=str))
    return False


def clear_output(storage: Storage, out: str) -> None:
    """Remove what a previous job wrote (only our own file names)."""
    for folder in (SHARDS_DIR, INDEX_DIR):
        for name in storage.list(join(out, folder)):
            storage.delete(join(out, folder, name))
    for name in (SUCCESS_FILE, CONTACT_SHEET, JOB_FILE):
        storage.delete(join(out, name))


def summarize(storage: Storage, out: str, num_shards: int, wall_seconds: float,
              images_this_run: int) -> dict[str, Any]:
    """Totals over every committed shard (including ones skipped on this run)."""
    committed = committed_shards(storage, out)
    totals: dict[str, Any] = {"images": 0, "prompts": 0, "rejected": 0, "shards": len(committed)}
    reasons: dict[str, int] = {}
    expansion: dict[str, int] = {}
    seconds: dict[str, float] = {}
    rejected_sample: list[dict[str, Any]] = []
    dropped, dropped_sample = 0, []
    consistency: list[dict[str, Any]] = []
    understanding: list[dict[str, Any] | None] = []
    for idx in sorted(committed):
        st = read_stats(storage, committed[idx])
        totals["images"] += st["images"]
        totals["prompts"] += st["prompts"]
        totals["rejected"] += sum(st["rejected_counts"].values())
        rejected_sample.extend(st["rejected"][: max(0, 20 - len(rejected_sample))])
        dropped += st.get("dropped", 0)
        dropped_sample.extend(st.get("dropped_sample", [])[: max(0, 20 - len(dropped_sample))])
        consistency.append(st.get("consistency"))
        understanding.append(st.get("understanding"))
        for table, into in ((st["rejected_counts"], reasons), (st["expansion"], expansion), (st["seconds"], seconds)):
            for k, v in table.items():
                into[k] = into.get(k, 0) + v
    return {
        **totals,
        "planned_shards": num_shards,
        "rejected_reasons": reasons,
        "rejected_sample": rejected_sample,
        "dropped_below_consistency": dropped,
        "dropped_sample": dropped_sample,
        "expansion": expansion,
        "consistency": merge_consistency(consistency),
        "understanding": merge_understanding(understanding),
        "stage_seconds": {k: round(v, 2) for k, v in seconds.items()},
        "binding_stage": binding_stage(seconds),
        "wall_seconds": round(wall_seconds, 2),
        "images_this_run": images_this_run,
        "images_per_second": round(images_this_run / wall_seconds, 2) if wall_seconds > 0 else None,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


# Stages that run beside the others rather than in line with them: the local executor encodes and writes shard i on
# threads while shard i+1 is computed, the Ray executor encodes and writes in tasks of their own.
OVERLAPPED_STAGES = ("encode", "write")
# the name a stage's seconds are reported under; png_wait was the generator's wait for its PNG thread, now `encode`
STAGE_ALIASES = {"png_wait": "encode"}


def binding_stage(seconds: dict[str, float]) -> dict[str, Any] | None:
    """The stage that bounds the run: the largest share of the summed per-stage busy seconds, or None without any.

    Stages share the node: in the local executor they run one after another in one process, so the largest share of
    their seconds is the largest share of wall time; in the Ray executor each stage's seconds are its pool's busy time,
    and with the pools sized to the work the stage needing the most seconds per image needs the most of the node.
    The stages that run beside the others (OVERLAPPED_STAGES) bind only when together they take longer than all
    the others together (the larger of them is named): until then they are hidden.
    """
    merged: dict[str, float] = {}
    for k, v in seconds.items():
        name = STAGE_ALIASES.get(k, k)
        merged[name] = merged.get(name, 0.0) + max(0.0, float(v))
    total = sum(merged.values())
    if total <= 0:
        return None
    inline = {k: v for k, v in merged.items() if k not in OVERLAPPED_STAGES}
    beside = {k: v for k, v in merged.items() if k in OVERLAPPED_STAGES}
    stage, secs = max(inline.items(), key=lambda kv: kv[1], default=("", 0.0))
    if sum(beside.values()) > sum(inline.values()):
        stage, secs = max(beside.items(), key=lambda kv: kv[1])
    return {"stage": stage, "seconds": round(secs, 2), "share": round(secs / total, 3)}
