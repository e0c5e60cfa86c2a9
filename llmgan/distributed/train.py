"""Distributed GAN training on Ray Train (`llmgan train` without --local, jobs/train.py): the driver side.

The driver decodes the data and embeds the captions once, ships each worker only its rows through the
object store, and runs a TorchTrainer whose workers (llmgan.distributed.train_worker) run the same training
loop as --local (llmgan.gan.trainer). Run folder RUN_URL (local or s3://):
  run.json                   settings (model config, data, seed); a rerun with another config is refused
  checkpoints/{step:08d}/    GAN checkpoints with training state, reported through Ray Train (last 2 kept)
  final/                     inference checkpoint (config.json + safetensors) when the run is complete
  samples/{step:08d}.png     sample grid every --sample-every steps (captions in samples/captions.txt)
  metrics.jsonl, metrics.png losses, images/s, learning rates, per-attribute accuracy (--eval-every); curves
  events.jsonl               one line per start/resume (step, workers with pid and node) and finish
  summary.json               the last invocation's summary
  checkpoint_manager_snapshot.json  Ray Train's own record: rerunning the same command resumes from it
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
import threading
import time
from typing import Any

import numpy as np
import ray

from llmgan.distributed.cluster import connect_ray
from llmgan.distributed.train_options import DistTrainOptions
from llmgan.domains import Domain
from llmgan.errors import UserError
from llmgan.gan.config import GanConfig
from llmgan.io.storage import Storage, is_s3, join

log = logging.getLogger("llmgan.train")

RUN_FILE = "run.json"
SUMMARY_FILE = "summary.json"


class TrainFailed(Exception):
    """Training stopped after using up its allowed worker failures; the run folder can be resumed."""


def split_run_url(out: str, storage: Storage) -> tuple[Any, str, str]:
    """(pyarrow filesystem, storage_path, name) for Ray Train so that storage_path/name is exactly `out`."""
    fs, path = storage.arrow_filesystem(out)
    path = path.rstrip("/")
    parent, _, name = path.rpartition("/")
    if not name or not parent or (is_s3(out) and "/" not in path):
        raise UserError(f"--out {out}: give a folder inside the bucket, e.g. s3://bucket/runs/my-run")
    return fs, parent, name


def _completed(storage: Storage, out: str, target: int) -> dict[str, Any] | None:
    """The final checkpoint's metadata when the run already reached `target` steps."""
    from llmgan.gan.checkpoint import CONFIG

    url = join(out, "final", CONFIG)
    if not storage.exists(url):
        return None
    meta = json.loads(storage.read_text(url))
    return meta if int(meta.get("step", 0)) >= target else None


def _check_compatible(saved: dict[str, Any], config: GanConfig, data: str, out: str) -> None:
    old = GanConfig.from_dict(saved["model"])
    if old != config:
        diff = [k for k, v in config.to_dict().items() if old.to_dict().get(k) != v]
        raise UserError(f"{out} holds a run with a different configuration ({', '.join(diff)}); resume with the "
                        f"same options or choose a new --out")
    if saved.get("data") != data:
        raise UserError(f"{out} holds a run trained on {saved.get('data')}, not {data}; choose a new --out")


@ray.remote(num_cpus=0)
class ProgressTracker:
    """Rank 0 sends metrics rows and start/finish events here; the driver polls them for its progress line."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self.log: list[tuple[str, int]] = []  # ("start", step) / ("row", step) in arrival order

    def row(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        self.log.append(("row", int(row["step"])))

    def event(self, event: dict[str, Any]) -> None:
        self.events.append(event)
        self.log.append((event["event"], int(event["step"])))

    def since(self, rows: int, events: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        return self.rows[rows:], self.events[events:]

    def steps_run(self) -> int:
        """Steps trained in this invocation, over all attempts (redone steps after a failure count again)."""
        total, start, last = 0, None, None
        for kind, step in self.log + [("start", -1)]:
            if kind == "start":
                if start is not None and last is not None:
                    total += max(0, last - start)
                start, last = step, step
            else:
                last = step
        return total


def shutdown_ray() -> None:
    ray.shutdown()


def _cpus_per_worker(options: DistTrainOptions) -> int:
    if options.cpus_per_worker is not None:
        return options.cpus_per_worker
    total = int(ray.cluster_resources().get("CPU", 1))
    largest = max([int(n["Resources"].get("CPU", 0)) for n in ray.nodes() if n.get("Alive")] or [1])
    return max(1, min(largest, total // options.workers))


def _progress(tracker: Any, target: int, stop: threading.Event, enabled: bool) -> None:
    """Driver-side progress: one line per metrics row and per start/resume, polled from the tracker, and a warning
    line when a training-health finding appears (the workers' own warnings stay in their logs)."""
    from llmgan.gan.health import onsets, warning_line

    seen_rows = seen_events = 0
    active: set[str] = set()
    while True:
        finished = stop.wait(2.0)
        try:
            rows, events = ray.get(tracker.since.remote(seen_rows, seen_events), timeout=30)
        except Exception:  # noqa: BLE001 - progress is best effort
            rows, events = [], []
        seen_rows, seen_events = seen_rows + len(rows), seen_events + len(events)
        if enabled:
            for e in events:
                if e["event"] == "start":
                    how = f"resumed from step {e['resumed_from']}" if e["resumed_from"] is not None else "started"
                    nodes = len({w["node"] for w in e["workers"]})
                    print(f"[llmgan] {how} with {len(e['workers'])} worker(s) on {nodes} node(s)",
                          file=sys.stderr, flush=True)
            for r in rows:
                accs = " ".join(f"{k[4:]}={v:.2f}" for k, v in r.items() if k.startswith("acc_"))
                if "consistency_mean" in r:
                    accs += f" consistency={r['consistency_mean']:.2f}"
                print(f"[llmgan] step {r['step']}/{target} | loss_d {r['loss_d']:.3f} loss_g {r['loss_g']:.3f} | "
                      f"{r['imgs_per_s']:.1f} img/s" + (f" | {accs}" if accs else ""), file=sys.stderr, flush=True)
                for name in onsets(active, r):
                    print(f"[llmgan] WARNING {warning_line(name, r)}", file=sys.stderr, flush=True)
        if finished:
            return


def run_evaluators(classifier: str | None, labels: dict[str, list[str]], domain: Domain) -> tuple[list[Any], Any]:
    """(per-attribute accuracy under the attribute classifier `classifier` ("default": the shipped one) when the
    data has its labels, consistency under that classifier's scorer when the data's domain has a classifier);
    empty / None where not wanted or the classifier cannot be loaded."""
    from llmgan.eval.classifier import load_classifier
    from llmgan.eval.consistency import ClassifierScorer
    from llmgan.gan.train_report import AccuracyEvaluator, ConsistencyEvaluator, evaluator_fits

    if classifier is None:
        return [], None
    try:
        clf = load_classifier(None if classifier == "default" else classifier)
    except Exception as exc:  # noqa: BLE001 - accuracy tracking is optional
        log.info("no evaluation classifier (%s); per-attribute accuracy is not tracked", exc)
        return [], None
    accuracy = AccuracyEvaluator(clf)
    evaluators = [accuracy] if evaluator_fits(accuracy, labels) else []
    if not evaluators:
        log.info("evaluation classifier does not fit this data; per-attribute accuracy is not tracked")
    return evaluators, ConsistencyEvaluator(ClassifierScorer(domain, clf)) if domain.scorer() is not None else None


def run_train(data: str, out: str, config: GanConfig, options: DistTrainOptions,
              storage: Storage | None = None) -> dict[str, Any]:
    """Train (or resume) a GAN on Ray Train; returns the summary (also written to RUN_URL/summary.json)."""
    from llmgan.domains import detect_domain
    from llmgan.gan.train_data import load_training_data
    from llmgan.gan.train_report import make_probes

    storage = storage or Storage()
    started = time.perf_counter()
    if config.batch_size % options.workers or config.batch_size // options.workers < 2:
        raise UserError(f"batch_size {config.batch_size} must be a multiple of workers ({options.workers}) with at "
                        f"least 2 images per worker")
    fs, storage_path, name = split_run_url(out, storage)
    storage.check_bucket(out)
    saved = json.loads(storage.read_text(join(out, RUN_FILE))) if storage.exists(join(out, RUN_FILE)) else None
    if saved is not None:  # finished already? answer before decoding any data
        target = options.total_steps(int(saved["images"]), config.batch_size)
        meta = _completed(storage, out, target)
        if meta is not None and saved.get("data") == data:
            decided = {"text_dim": saved["model"]["text_dim"],  # the encoder and the data decided these
                       "channels": config.channels or saved["model"].get("channels", 3)}
            _check_compatible(saved, config.replace(**decided), data, out)
            return _summary(storage, out, target, 0, 0, time.perf_counter() - started, already_complete=True)

    dataset, emb, config = load_training_data(data, config, options.text_encoder, storage, cache_dir=options.cache_dir,
                                              image_column=options.image_column,
                                              caption_column=options.caption_column)
    n = len(dataset.captions)
    if saved is not None:
        _check_compatible(saved, config, data, out)
    target = options.total_steps(n, config.batch_size)
    domain = detect_domain(dataset.captions)
    evaluators, consistency = run_evaluators(options.classifier, dataset.labels, domain)
    probes = make_probes(emb, dataset.captions, dataset.labels, options.seed,
                         sorted({a for ev in evaluators for a in ev.attributes}))
    storage.write_text(join(out, RUN_FILE), json.dumps({
        "model": config.to_dict(), "data": data, "images": n, "seed": options.seed, "skipped": dataset.skipped,
        "text_encoder": options.text_encoder, "target_steps": target, "workers": options.workers,
    }, indent=2, sort_keys=True) + "\n")

    # workers at normal priority on a local Ray; a local Ray has no dashboard, so Ray Train's helpers would fill
    # the terminal with state-API warnings if workers' output reached it (connect_ray keeps it in the logs)
    connect_ray(options.address, normal_priority=True)
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from llmgan.distributed.train_worker import train_loop_per_worker

    threads = _cpus_per_worker(options)
    # each worker gets only its rows (r, r + W, ...): the object store holds every image once
    shards = [{"images": np.ascontiguousarray(dataset.images[r :: options.workers]),
               "emb": np.ascontiguousarray(emb[r :: options.workers])} for r in range(options.workers)]
    if options.matcher:  # rank 0 calibrates the matcher on some of its rows: it needs their labels / captions
        from llmgan.gan.matcher_component import row_keys

        shards[0]["keys"] = row_keys(dataset.captions, dataset.labels)[:: options.workers]
    shards = [ray.put(s) for s in shards]
    del dataset
    tracker = ProgressTracker.remote()
    loop_config = {
        "model": config.to_dict(), "out": out, "endpoint": storage.endpoint, "shards": shards,
        "probes": ray.put(probes), "evaluators": ray.put(evaluators),
        "consistency": ray.put(consistency) if consistency is not None else None, "domain": domain.meta(),
        "tracker": tracker, "threads": threads, "gpu": options.gpu, "text_encoder": options.text_encoder, "data": data,
        "loop": dataclasses.asdict(options.loop(steps=target, progress=False)),
    }
    resources = {"CPU": threads}
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config=loop_config,
        scaling_config=ScalingConfig(num_workers=options.workers, use_gpu=options.gpu, resources_per_worker=resources),
        run_config=RunConfig(
            name=name, storage_path=storage_path, storage_filesystem=fs,
            failure_config=FailureConfig(max_failures=options.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=options.keep_checkpoints),
        ),
    )
    log.info("training %s on %d worker(s) x %d CPU%s: %d images, %d steps, run folder %s", data, options.workers,
             threads, " + 1 GPU" if options.gpu else "", n, target, out)
    stop = threading.Event()
    printer = threading.Thread(target=_progress, args=(tracker, target, stop, options.progress), daemon=True)
    printer.start()
    try:
        trainer.fit()
    except Exception as exc:  # noqa: BLE001 - Ray Train wraps worker errors; report them in one line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TrainFailed(f"training failed ({type(exc).__name__}: {first[:300]}); rerun the same command to "
                          f"resume from the latest checkpoint in {out}") from None
    finally:
        stop.set()
        printer.join(timeout=60)
    steps_run = ray.get(tracker.steps_run.remote())
    ray.kill(tracker)
    return _summary(storage, out, target, steps_run, steps_run * config.batch_size, time.perf_counter() - started)


def _summary(storage: Storage, out: str, target: int, steps_run: int, images_run: int, seconds: float,
             already_complete: bool = False) -> dict[str, Any]:
    from llmgan.distributed.train_worker import EVENTS
    from llmgan.gan.checkpoint import read_meta
    from llmgan.gan.health import findings
    from llmgan.gan.trainer import METRICS

    meta = read_meta(join(out, "final"), storage)
    rows = [json.loads(ln) for ln in storage.read_text(join(out, METRICS)).splitlines() if ln.strip()] \
        if storage.exists(join(out, METRICS)) else []
    events = [json.loads(ln) for ln in storage.read_text(join(out, EVENTS)).splitlines() if ln.strip()] \
        if storage.exists(join(out, EVENTS)) else []
    starts = [e for e in events if e["event"] == "start"]
    last = rows[-1] if rows else {}
    speeds = [r["imgs_per_s"] for r in rows if r.get("workers") and r["step"] > 0]
    summary = {
        "out": out, "final": join(out, "final"), "steps": int(meta["step"]), "target_steps": target,
        "steps_this_run": steps_run, "already_complete": already_complete, "seconds": round(seconds, 1),
        "imgs_per_s": round(float(np.median(speeds)), 1) if speeds else None,
        "images_this_run": images_run, "starts": len(starts),
        "resumed_from": [e["resumed_from"] for e in starts if e["resumed_from"] is not None],
        "accuracy": {k[4:]: v for k, v in last.items() if k.startswith("acc_")},
        "consistency": {k[12:]: v for k, v in last.items() if k.startswith("consistency_")},
        "health": findings(rows),
    }
    if not already_complete:
        storage.write_text(join(out, SUMMARY_FILE), json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return summary
