"""The generation job's driver, whatever executes it: prompts, plan, model identities, `_job.json`, resume
(committed shards verified and skipped), bounded retries, JobFailed, `_SUCCESS.json`, contact sheet, progress.

The driver holds the shard plan (one small record per shard) and per-shard stats, never prompts or images.
The executor (llmgan.job.local_executor, or the Ray one in llmgan.distributed.generate) runs the shards.
"""

from __future__ import annotations

import json
import logging
import resource
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from llmgan.errors import UserError
from llmgan.io.identity import content_identity
from llmgan.io.prompts import open_prompts
from llmgan.io.storage import Storage, join
from llmgan.job.config import GenerateConfig
from llmgan.job.contact_sheet import write_contact_sheet
from llmgan.job.manifest import SUCCESS_FILE, build_manifest, prepare_output, redact_url, summarize
from llmgan.job.outcomes import Executor, JobFailed, QualityGateFailed, ShardCommitted, ShardFailed, ShardOutcome
from llmgan.job.plan import make_plan
from llmgan.job.preflight import check_models, check_out
from llmgan.job.shards import ShardConflict, check_shard, committed_shards, output_names

log = logging.getLogger("llmgan.generate")


def run_job(cfg: GenerateConfig, executor: Executor, progress: bool = True) -> dict[str, Any]:
    """Run (or resume) a generation job on `executor`; returns the `_SUCCESS.json` summary.

    Everything that can be checked is checked before `_job.json` is written (settings when `cfg` was built;
    prompts file, models and blocklist here); the executor is started only when shards are left to run.
    """
    t_start = time.perf_counter()
    storage = Storage(cfg.s3_endpoint)
    check_out(cfg.out)
    prompts = open_prompts(cfg.prompts, storage, cfg.prompt_column, cfg.input_format)  # bad input fails here
    plan = make_plan(prompts, cfg.n_per_prompt, cfg.shard_size)
    try:
        models = model_identities(cfg, storage)
    except FileNotFoundError as exc:
        raise UserError(f"model not found: {exc}") from None
    run_settings = {k: v for k, v in cfg.to_dict().items() if k not in cfg.output_settings()}
    run_settings["s3_endpoint"] = redact_url(cfg.s3_endpoint)
    run_settings["executor"] = executor.name
    prompts_identity: dict[str, Any] = {"url": redact_url(cfg.prompts), "rows": prompts.num_rows,
                                        "columns": prompts.columns}
    if prompts.format != "parquet":  # the same bytes read as CSV or as TSV are different rows
        prompts_identity["format"] = prompts.format
    manifest = build_manifest(
        cfg.output_settings(), run_settings, models, prompts_identity,
        {"shards": len(plan), "planned_images": sum(s.planned_images for s in plan)},
    )
    job_id = manifest["job_id"]
    resuming = prepare_output(storage, cfg.out, manifest, cfg.overwrite)
    done = committed_shards(storage, cfg.out)
    if done:
        done = verify_committed(storage, cfg.out, job_id, done)
    todo = [s for s in plan if s.index not in done]
    planned = sum(s.planned_images for s in todo)
    log.info("%s: %d shards planned, %d already committed, %d to run (%d images)",
             "resuming" if resuming else "starting", len(plan), len(done), len(todo), planned)
    images_done = 0
    startup: dict[str, float] = {"checks": time.perf_counter() - t_start}  # seconds from the job's start
    if todo:
        storage.delete(join(cfg.out, SUCCESS_FILE))  # the folder is incomplete until this run commits the rest
        cfg = executor.prepare(cfg)
        startup["executor_ready"] = time.perf_counter() - t_start
        reporter = Progress(planned, enabled=progress)
        t_run = time.perf_counter()
        failures: list[ShardFailed] = []
        outcomes: dict[int, ShardOutcome] = {}  # this attempt's

        def on_outcome(outcome: ShardOutcome) -> None:
            nonlocal images_done
            if not isinstance(outcome, (ShardCommitted, ShardFailed)):
                raise TypeError(f"executor reported {type(outcome).__name__}, not a shard outcome")
            outcomes[outcome.shard] = outcome
            if isinstance(outcome, ShardCommitted):
                startup.setdefault("first_shard", time.perf_counter() - t_start)
                images_done += outcome.stats["images"]
                reporter.update(outcome.stats, time.perf_counter() - t_run)
            else:
                log.warning("shard %05d failed: %s", outcome.shard, outcome.error)

        try:
            for attempt in range(cfg.max_retries + 1):
                outcomes.clear()
                executor.run(cfg, todo, job_id, on_outcome)
                failures = [o if isinstance(o, ShardFailed) else ShardFailed(s.index, "no outcome reported")
                            for s in todo if not isinstance(o := outcomes.get(s.index), ShardCommitted)]
                if not failures:
                    break
                failed = {f.shard for f in failures}
                todo = [s for s in todo if s.index in failed]
                if attempt < cfg.max_retries:
                    log.warning("retrying %d failed shard(s) (attempt %d of %d)", len(todo), attempt + 2,
                                cfg.max_retries + 1)
        finally:
            if (close := getattr(executor, "close", None)) is not None:
                close()  # the executor's pools, kept across the passes above, free the cluster
        if failures:
            names = ", ".join(f"{f.shard:05d}" for f in failures[:5]) + (", ..." if len(failures) > 5 else "")
            raise JobFailed(f"{len(failures)} shard(s) failed after {cfg.max_retries} retries (shards {names}: "
                            f"{failures[0].error}); rerun the same command to resume", failures)
    summary = summarize(storage, cfg.out, len(plan), time.perf_counter() - t_start, images_done)
    summary["job_id"] = job_id
    summary["executor"] = executor.name
    summary["startup_seconds"] = startup_seconds(startup, getattr(executor, "startup", None))
    summary["driver_peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    summary["output"] = redact_url(cfg.out)
    summary["contact_sheet"] = write_contact_sheet(storage, cfg.out, cfg.contact_sheet_size)
    gate = quality_gate(cfg, summary.get("consistency"))
    if gate is not None:
        summary["quality_gate"] = gate
    storage.write_text(join(cfg.out, SUCCESS_FILE), json.dumps(summary, indent=1, sort_keys=True))
    if gate is not None and not gate["passed"]:
        raise QualityGateFailed(
            f"quality gate failed: {gate['share_below']:.1%} of {gate['scored']} scored images stayed below "
            f"--min-consistency {cfg.min_consistency:g} after redraws (--fail-below-share {cfg.fail_below_share:g}); "
            f"the images are written, see {redact_url(cfg.out)}/_SUCCESS.json", summary)
    return summary


def startup_seconds(driver: dict[str, float], executor: dict[str, float] | None) -> dict[str, float]:
    """The job's fixed cost, in seconds since it started: `checks` (prompts read, plan, every model checked,
    `_job.json` written), `executor_ready` (Ray joined or started and pools sized), `first_shard` (the first
    shard committed: actors up, models loaded, the pipeline filled); plus what the executor measured of its own
    (the Ray executor: `ray_connect`, the seconds Ray took to join or start)."""
    return {k: round(v, 2) for k, v in {**driver, **(executor or {})}.items()}


def quality_gate(cfg: GenerateConfig, cons: dict[str, Any] | None) -> dict[str, Any] | None:
    """The --fail-below-share verdict on the job's consistency figures; None when no gate was asked for."""
    if cfg.fail_below_share is None:
        return None
    scored = cons["scored"] if cons else 0
    share = cons["share_below_threshold"] if cons and scored else 0.0
    return {"fail_below_share": cfg.fail_below_share, "threshold": cfg.min_consistency, "scored": scored,
            "share_below": share, "passed": share <= cfg.fail_below_share}


def verify_committed(storage: Storage, out: str, job_id: str, committed: dict[int, str]) -> dict[int, str]:
    """The committed shards whose data is intact (sha256 checked). A damaged one is un-committed (its stats
    deleted, with a warning) so this run redoes it; stats from another job stop the run with a UserError."""
    names = output_names(storage, out)
    with ThreadPoolExecutor(max_workers=8) as pool:  # S3 reads are latency-bound: check shards concurrently
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


def model_identities(cfg: GenerateConfig, storage: Storage) -> dict[str, Any]:
    """Identities of the models (and blocklist): any change of weights makes a different job. A missing
    model or a bad blocklist fails here, before any output is written."""
    from llmgan.eval.consistency import resolve_scorer
    from llmgan.gan.checkpoint import read_meta
    from llmgan.gan.inference import default_checkpoint_path, resolve_checkpoint

    ckpt = resolve_checkpoint(cfg.ckpt or default_checkpoint_path(), storage)
    models: dict[str, Any] = {"gan": {"path": cfg.ckpt or "default", "identity": content_identity(ckpt, storage)}}
    meta = read_meta(ckpt, storage)
    models["text_encoder"] = {"path": meta.get("text_encoder") or "default"}
    if cfg.blocklist:
        from llmgan.job.blocklist import load_blocklist

        blocklist = load_blocklist(cfg.blocklist, storage)
        models["blocklist"] = {"path": redact_url(cfg.blocklist), "sha256": blocklist.sha256,
                               "entries": blocklist.entries}
    scorer = resolve_scorer(cfg.consistency, ckpt, storage)  # a bad --consistency fails here
    if scorer is not None:
        kind, source = scorer
        models["consistency"] = {"spec": redact_url(cfg.consistency), "kind": kind,
                                 "identity": content_identity(source, storage)}
    lm = None
    if cfg.expand:
        from llmgan.text.expander import resolve_lm

        lm = name, local = resolve_lm(cfg.lm)
        models["lm"] = {"path": cfg.lm or "default", "identity": content_identity(str(local) if local else name)}
    check_models(cfg, ckpt, meta, scorer, lm, storage)  # every model loads (or one line now), before _job.json
    return models


class Progress:
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
