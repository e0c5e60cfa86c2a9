"""The bulk generation job on Ray: plan shards, stream them through expander and generator actor pools
(Ray Data map_batches), write each shard from a task, retry failed shards, then summarise.

The driver holds the shard plan (one small record per shard) and per-shard stats, never prompts or images.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import resource
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import ray

from llmgan.errors import UserError
from llmgan.io.identity import content_identity
from llmgan.io.prompts import open_prompts
from llmgan.io.storage import Storage, join
from llmgan.job.config import GenerateConfig, size_pools
from llmgan.job.manifest import (
    SUCCESS_FILE,
    build_manifest,
    prepare_output,
    redact_url,
    summarize,
    write_contact_sheet,
)
from llmgan.job.plan import ShardSpec, make_plan
from llmgan.job.shards import SHARDS_DIR, ShardConflict, check_shard, committed_shards, write_shard

log = logging.getLogger("llmgan.generate")


class JobFailed(Exception):
    """Shards still failing after the allowed retries; the message names them and how to resume."""


def _set_threads(num_cpus: float) -> None:
    import torch

    torch.set_num_threads(max(1, int(num_cpus)))


def _guarded(stage: Callable[[Any], Any], name: str, payload: bytes) -> bytes:
    """Run a stage on one pickled shard; a failure becomes an error record, so one bad shard cannot sink
    the whole dataset and the driver can retry it."""
    obj = pickle.loads(payload)
    if isinstance(obj, dict) and "error" in obj:
        return payload
    try:
        out = stage(obj)
        out.workers[name] = {"node": ray.get_runtime_context().get_node_id(), "pid": os.getpid()}
        return pickle.dumps(out)
    except Exception as exc:  # noqa: BLE001 - reported per shard, retried by the driver
        index = getattr(obj, "index", None)
        if index is None:
            index = obj.spec.index
        return pickle.dumps({"error": f"{type(exc).__name__}: {exc}"[:500], "shard": index})


class ExpandActor:
    def __init__(self, cfg: GenerateConfig) -> None:
        from llmgan.job.stages import ShardExpander

        _set_threads(cfg.expander.num_cpus)
        self.stage = ShardExpander(cfg)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list[bytes]]:
        return {"payload": [_guarded(self.stage, "expand", p) for p in batch["payload"]]}


class GenerateActor:
    def __init__(self, cfg: GenerateConfig) -> None:
        from llmgan.job.stages import ShardGenerator

        _set_threads(cfg.generator.num_cpus)
        self.stage = ShardGenerator(cfg, lazy=True)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list[bytes]]:
        return {"payload": [_guarded(self.stage, "generate", p) for p in batch["payload"]]}


def _write(batch: dict[str, np.ndarray], out: str, fmt: str, job_id: str, endpoint: str | None) -> dict[str, list[str]]:
    storage = Storage(endpoint)
    rows = []
    for payload in batch["payload"]:
        obj = pickle.loads(payload)
        if isinstance(obj, dict):
            rows.append(json.dumps(obj))
            continue
        try:
            rows.append(json.dumps(write_shard(storage, out, obj, fmt, job_id)))
        except Exception as exc:  # noqa: BLE001
            rows.append(json.dumps({"error": f"{type(exc).__name__}: {exc}"[:500], "shard": obj.index}))
    return {"stats": rows}


def connect_ray() -> None:
    """Join the cluster given by RAY_ADDRESS / `ray job submit`, else start a local Ray."""
    if not ray.is_initialized():
        ray.init(logging_level=logging.WARNING, log_to_driver=True, include_dashboard=False,
                 configure_logging=True)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False


def _run_pass(cfg: GenerateConfig, todo: list[ShardSpec], job_id: str,
              on_shard: Callable[[dict[str, Any]], None]) -> list[dict[str, Any]]:
    """One streaming pass over `todo`; returns the error records of shards that failed."""
    ds = ray.data.from_items([{"payload": pickle.dumps(s)} for s in todo], override_num_blocks=len(todo))
    for actor, res in ((ExpandActor, cfg.expander), (GenerateActor, cfg.generator)):
        ds = ds.map_batches(
            actor, fn_constructor_args=(cfg,), batch_size=1, batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(min_size=res.min_actors, max_size=res.max_actors),
            num_cpus=res.num_cpus, num_gpus=res.num_gpus, resources=res.resources or None,
        )
    ds = ds.map_batches(_write, fn_kwargs={"out": cfg.out, "fmt": cfg.format, "job_id": job_id,
                                           "endpoint": cfg.s3_endpoint},
                        batch_size=1, batch_format="numpy", num_cpus=0)
    failures = []
    reported: set[int] = set()
    try:
        for row in ds.iter_rows():
            stats = json.loads(row["stats"])
            reported.add(stats["shard"])
            if "error" in stats:
                log.warning("shard %05d failed: %s", stats["shard"], stats["error"])
                failures.append(stats)
            else:
                on_shard(stats)
    except Exception as exc:  # noqa: BLE001 - e.g. a node lost beyond Ray Data's own retries: retry the rest
        error = f"pass aborted: {type(exc).__name__}: {str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ''}"
        log.warning("%s; %d shard(s) unfinished", error, len(todo) - len(reported))
        failures += [{"shard": s.index, "error": error} for s in todo if s.index not in reported]
    return failures


def verify_committed(storage: Storage, out: str, job_id: str, committed: dict[int, str]) -> dict[int, str]:
    """The committed shards whose data is intact (sha256 checked). A damaged one is un-committed (its stats
    deleted, with a warning) so this run redoes it; stats from another job stop the run with a UserError."""
    from concurrent.futures import ThreadPoolExecutor

    names = set(storage.list(join(out, SHARDS_DIR)))
    with ThreadPoolExecutor(max_workers=8) as pool:
        futures = {i: pool.submit(check_shard, storage, out, i, names, job_id) for i in sorted(committed)}
        problems = {}
        for i, fut in futures.items():
            try:
                problems[i] = fut.result()
            except ShardConflict as exc:
                raise UserError(str(exc)) from None
    for i, why in problems.items():
        if why:
            log.warning("shard %05d is damaged (%s): redoing it", i, why)
            storage.delete(committed[i])
    return {i: url for i, url in committed.items() if not problems[i]}


def _models(cfg: GenerateConfig, storage: Storage) -> dict[str, Any]:
    """Identities of the models: any change of weights makes a different job."""
    from llmgan.gan.checkpoint import read_meta
    from llmgan.gan.inference import default_checkpoint_path, resolve_checkpoint

    ckpt = resolve_checkpoint(cfg.ckpt or default_checkpoint_path(), storage)
    models: dict[str, Any] = {"gan": {"path": cfg.ckpt or "default", "identity": content_identity(ckpt, storage)}}
    models["text_encoder"] = {"path": read_meta(ckpt, storage).get("text_encoder") or "default"}
    if cfg.blocklist:
        from llmgan.job.blocklist import load_blocklist

        blocklist = load_blocklist(cfg.blocklist, storage)  # a bad file or pattern fails here, before any output
        models["blocklist"] = {"path": redact_url(cfg.blocklist), "sha256": blocklist.sha256,
                               "entries": blocklist.entries}
    if cfg.expand:
        from llmgan.text.expander import resolve_lm

        name, local = resolve_lm(cfg.lm)
        models["lm"] = {"path": cfg.lm or "default", "identity": content_identity(str(local) if local else name)}
    return models


def run_generate(cfg: GenerateConfig, progress: bool = True) -> dict[str, Any]:
    """Run (or resume) a generation job; returns the `_SUCCESS.json` summary."""
    t_start = time.perf_counter()
    storage = Storage(cfg.s3_endpoint)
    prompts = open_prompts(cfg.prompts, storage, cfg.prompt_column)  # bad input fails here, nothing written
    plan = make_plan(prompts, cfg.n_per_prompt, cfg.shard_size)
    try:
        models = _models(cfg, storage)
    except FileNotFoundError as exc:
        raise UserError(f"model not found: {exc}") from None
    run_settings = {k: v for k, v in cfg.to_dict().items() if k not in cfg.output_settings()}
    run_settings["s3_endpoint"] = redact_url(cfg.s3_endpoint)
    manifest = build_manifest(
        cfg.output_settings(), run_settings, models,
        {"url": redact_url(cfg.prompts), "rows": prompts.num_rows, "columns": prompts.columns},
        {"shards": len(plan), "planned_images": sum(s.planned_images for s in plan)},
    )
    resuming = prepare_output(storage, cfg.out, manifest, cfg.overwrite)
    done = committed_shards(storage, cfg.out)
    if done:
        done = verify_committed(storage, cfg.out, manifest["job_id"], done)
    todo = [s for s in plan if s.index not in done]
    planned = sum(s.planned_images for s in todo)
    log.info("%s: %d shards planned, %d already committed, %d to run (%d images)",
             "resuming" if resuming else "starting", len(plan), len(done), len(todo), planned)
    images_done = 0
    if todo:
        storage.delete(join(cfg.out, SUCCESS_FILE))  # the folder is incomplete until this run commits the rest
        connect_ray()
        resources = ray.cluster_resources()
        cfg = size_pools(cfg, resources.get("CPU", 0.0), resources.get("GPU", 0.0))
        log.info("actor pools: expander %d-%d x %g CPU, generator %d-%d x %g CPU", cfg.expander.min_actors,
                 cfg.expander.max_actors, cfg.expander.num_cpus, cfg.generator.min_actors, cfg.generator.max_actors,
                 cfg.generator.num_cpus)
        reporter = _Progress(planned, enabled=progress)
        t_run = time.perf_counter()

        def on_shard(stats: dict[str, Any]) -> None:
            nonlocal images_done
            images_done += stats["images"]
            reporter.update(stats, time.perf_counter() - t_run)

        failures: list[dict[str, Any]] = []
        for attempt in range(cfg.max_retries + 1):
            failures = _run_pass(cfg, todo, manifest["job_id"], on_shard)
            if not failures:
                break
            failed_ids = {f["shard"] for f in failures}
            todo = [s for s in todo if s.index in failed_ids]
            if attempt == cfg.max_retries:
                break
            log.warning("retrying %d failed shard(s) (attempt %d of %d)", len(todo), attempt + 2, cfg.max_retries + 1)
        if failures:
            names = ", ".join(f"{f['shard']:05d}" for f in failures[:5])
            raise JobFailed(f"{len(failures)} shard(s) failed after {cfg.max_retries} retries (shards {names}: "
                            f"{failures[0]['error']}); rerun the same command to resume")
    summary = summarize(storage, cfg.out, len(plan), time.perf_counter() - t_start, images_done)
    summary["job_id"] = manifest["job_id"]
    summary["driver_peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    summary["output"] = redact_url(cfg.out)
    summary["contact_sheet"] = write_contact_sheet(storage, cfg.out, cfg.contact_sheet_size)
    storage.write_text(join(cfg.out, SUCCESS_FILE), json.dumps(summary, indent=1, sort_keys=True))
    return summary


class _Progress:
    """One line on stderr per finished shard: images done, images/s, where the time goes."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.enabled, self.done = total, enabled, 0
        self.stage_s: dict[str, float] = {}

    def update(self, stats: dict[str, Any], elapsed: float) -> None:
        self.done += stats["images"]
        for k, v in stats["seconds"].items():
            self.stage_s[k] = self.stage_s.get(k, 0.0) + v
        if self.enabled:
            rate = self.done / elapsed if elapsed > 0 else 0.0
            stages = " ".join(f"{k}={v:.1f}s" for k, v in sorted(self.stage_s.items()))
            print(f"[llmgan] shard {stats['shard']:05d} done: {self.done}/{self.total} images "
                  f"({rate:.1f} img/s) | {stages}", file=sys.stderr, flush=True)
