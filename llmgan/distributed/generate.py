"""The Ray executor of the generation job: shards stream through expander and generator actor pools
(Ray Data map_batches), are encoded by a pool of CPU tasks sized apart from the generators, and are written by a
task; each shard yields a typed outcome for the driver (llmgan.job.run), which owns planning, resume, retries
and the summary."""

from __future__ import annotations

import logging
import os
import pickle
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import ray

from llmgan.distributed.cluster import connect_ray
from llmgan.io.storage import Storage
from llmgan.job.config import GenerateConfig, size_pools
from llmgan.job.outcomes import OnOutcome, ShardCommitted, ShardFailed, ShardOutcome
from llmgan.job.plan import ShardSpec
from llmgan.job.shards import ShardResult, write_shard

log = logging.getLogger("llmgan.generate")


def _set_threads(num_cpus: float) -> None:
    import torch

    torch.set_num_threads(max(1, int(num_cpus)))


def _shard_index(obj: ShardSpec | Any) -> int:
    return obj.index if isinstance(obj, (ShardSpec, ShardResult)) else obj.spec.index


def _guarded(stage: Callable[[Any], Any], name: str, payload: bytes) -> bytes:
    """Run a stage on one pickled shard. A failure becomes a ShardFailed that the later stages pass along, so
    one bad shard cannot sink the whole dataset and the driver can retry it."""
    obj = pickle.loads(payload)
    if isinstance(obj, ShardFailed):
        return payload
    try:
        out = stage(obj)
        out.workers[name] = {"node": ray.get_runtime_context().get_node_id(), "pid": os.getpid()}
    except Exception as exc:  # noqa: BLE001 - reported per shard, retried by the driver
        out = ShardFailed.of(_shard_index(obj), exc)
    return pickle.dumps(out)


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


def _encode(batch: dict[str, np.ndarray], cfg: GenerateConfig) -> dict[str, list[bytes]]:
    """The encoding stage on one generated shard (its pixels -> png / webp / jpeg bytes), one thread per task."""
    from llmgan.job.stages import ShardEncoder

    stage = ShardEncoder(cfg)
    return {"payload": [_guarded(stage, "encode", p) for p in batch["payload"]]}


def encode_pool(cfg: GenerateConfig, cluster_cpus: float) -> tuple[int, float]:
    """(tasks at once, CPUs reserved by each) of the encoding stage: the CPUs the actor pools leave, one task per
    whole core left (at least one) unless --encode-workers says how many. Where the pools leave no CPU (CPU
    generators fill the cluster) the tasks reserve none and share the generators' cores, as encoding inside
    the generator did; Ray Data's streaming back-pressure bounds how many generated shards wait for them."""
    exp, gen = cfg.expander, cfg.generator
    free = cluster_cpus - (exp.num_cpus or 0.0) * (exp.max_actors or 1) - (gen.num_cpus or 0.0) * (gen.max_actors or 1)
    free = max(0.0, round(free, 6))  # 2 - 0.25 - 2 x 0.875 is not exactly 0 in floating point
    workers = cfg.encode_workers or max(1, int(free))
    return workers, min(1.0, free / workers)


def _write(batch: dict[str, np.ndarray], out: str, fmt: str, job_id: str, endpoint: str | None) -> dict[str, list[bytes]]:
    storage = Storage(endpoint)
    outcomes: list[ShardOutcome] = []
    for payload in batch["payload"]:
        obj = pickle.loads(payload)
        if isinstance(obj, ShardFailed):
            outcomes.append(obj)
            continue
        try:
            outcomes.append(ShardCommitted(write_shard(storage, out, obj, fmt, job_id)))
        except Exception as exc:  # noqa: BLE001 - a failed write is retried by the driver
            outcomes.append(ShardFailed.of(obj.index, exc))
    return {"outcome": [pickle.dumps(o) for o in outcomes]}


def quiet_ray_data() -> None:
    """Ray Data's progress bars and its per-dataset INFO lines off the terminal: the driver prints one line per
    shard instead. Ray Data's own log file (ray-data.log in the session folder) still gets everything."""
    from ray.data._internal.logging import SessionFileHandler
    from ray.util.debug import log_once

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    log_once("ray_data_progress_manager_disabled")  # else Ray Data warns once that the bars we turned off are off
    for handler in logging.getLogger("ray.data").handlers:
        if not isinstance(handler, SessionFileHandler):
            handler.setLevel(logging.WARNING)


class RayExecutor:
    """Runs shards on the Ray cluster (joined or started in `prepare`), one streaming Ray Data pass per call."""

    name = "ray"

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet  # Ray logs errors only
        self.startup: dict[str, float] = {}  # seconds of its own start-up, for the job's summary

    def prepare(self, cfg: GenerateConfig) -> GenerateConfig:
        t0 = time.perf_counter()
        connect_ray(quiet=self.quiet)
        self.startup = {"ray_connect": time.perf_counter() - t0}
        quiet_ray_data()
        resources = ray.cluster_resources()
        cfg = size_pools(cfg, resources.get("CPU", 0.0), resources.get("GPU", 0.0))
        log.info("actor pools: expander %d-%d x %g CPU, generator %d-%d x %g CPU", cfg.expander.min_actors,
                 cfg.expander.max_actors, cfg.expander.num_cpus, cfg.generator.min_actors, cfg.generator.max_actors,
                 cfg.generator.num_cpus)
        return cfg

    def run(self, cfg: GenerateConfig, todo: list[ShardSpec], job_id: str, on_outcome: OnOutcome) -> None:
        ds = ray.data.from_items([{"payload": pickle.dumps(s)} for s in todo], override_num_blocks=len(todo))
        for actor, res in ((ExpandActor, cfg.expander), (GenerateActor, cfg.generator)):
            ds = ds.map_batches(
                actor, fn_constructor_args=(cfg,), batch_size=1, batch_format="numpy",
                compute=ray.data.ActorPoolStrategy(min_size=res.min_actors, max_size=res.max_actors),
                num_cpus=res.num_cpus, num_gpus=res.num_gpus, resources=res.resources or None,
            )
        workers, cpus = encode_pool(cfg, ray.cluster_resources().get("CPU", 0.0))
        ds = ds.map_batches(_encode, fn_kwargs={"cfg": cfg}, batch_size=1, batch_format="numpy",
                            compute=ray.data.TaskPoolStrategy(size=workers), num_cpus=cpus)
        ds = ds.map_batches(_write, fn_kwargs={"out": cfg.out, "fmt": cfg.format, "job_id": job_id,
                                               "endpoint": cfg.s3_endpoint},
                            batch_size=1, batch_format="numpy", num_cpus=0)
        reported: set[int] = set()
        try:
            for row in ds.iter_rows():
                outcome = pickle.loads(row["outcome"])
                reported.add(outcome.shard)
                on_outcome(outcome)
        except Exception as exc:  # noqa: BLE001 - e.g. a node lost beyond Ray Data's own retries: retry the rest
            first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
            error = f"pass aborted: {type(exc).__name__}: {first}"
            log.warning("%s; %d shard(s) unfinished", error, len(todo) - len(reported))
            for s in todo:
                if s.index not in reported:
                    on_outcome(ShardFailed(s.index, error))
