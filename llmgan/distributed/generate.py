"""The Ray executor of the generation job, in one of two stage layouts (llmgan.job.config.resolve_layout):

- fused (CPU clusters): one actor pool, each actor taking a whole shard through read, caption LM, GAN, feedback,
  encoding and the shard write in its own process, as the local executor does;
- split (GPUs or custom resources): expander actors -> generator actors -> encode-and-write actors on the CPUs
  the other pools leave, each pool sized and placed on its own; shards stream between them (Ray Data
  map_batches) with Ray Data's back-pressure.

Every stage runs long-lived actors: no task processes start and stop per shard. Each shard yields a typed
outcome for the driver (llmgan.job.run), which owns planning, resume, retries and the summary."""

from __future__ import annotations

import logging
import os
import pickle
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np
import ray

from llmgan.distributed.cluster import connect_ray
from llmgan.io.storage import Storage
from llmgan.job.config import GenerateConfig, StageResources, size_pools
from llmgan.job.outcomes import OnOutcome, ShardFailed, ShardOutcome, write_outcome
from llmgan.job.plan import ShardSpec
from llmgan.job.shards import ShardResult

log = logging.getLogger("llmgan.generate")


def _set_threads(num_cpus: float) -> None:
    import torch

    torch.set_num_threads(max(1, int(num_cpus)))


def _shard_index(obj: ShardSpec | Any) -> int:
    return obj.index if isinstance(obj, (ShardSpec, ShardResult)) else obj.spec.index


def _worker() -> dict[str, Any]:
    return {"node": ray.get_runtime_context().get_node_id(), "pid": os.getpid()}


def _in_stage(stage: Callable[[Any], Any], name: str, obj: Any) -> Any:
    """Run a stage on one shard. A failure becomes a ShardFailed that the later stages pass along, so one bad
    shard cannot sink the whole dataset and the driver can retry it."""
    if isinstance(obj, ShardFailed):
        return obj
    try:
        out = stage(obj)
        out.workers[name] = _worker()
    except Exception as exc:  # noqa: BLE001 - reported per shard, retried by the driver
        out = ShardFailed.of(_shard_index(obj), exc)
    return out


def _guarded(stage: Callable[[Any], Any], name: str, payload: bytes) -> bytes:
    """_in_stage on a pickled shard, between two pools of the split layout."""
    return pickle.dumps(_in_stage(stage, name, pickle.loads(payload)))


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


class _Finisher:
    """The end of every layout: a ShardFailed passes through, a generated and encoded shard is written."""

    def __init__(self, cfg: GenerateConfig, job_id: str) -> None:
        self.cfg, self.job_id, self.storage = cfg, job_id, Storage(cfg.s3_endpoint)

    def finish(self, obj: ShardResult | ShardFailed) -> ShardOutcome:
        return obj if isinstance(obj, ShardFailed) else write_outcome(self.storage, self.cfg, obj, self.job_id)


class EncodeWriteActor(_Finisher):
    """Split layout, last stage: encodes a generated shard's pixels (png / webp / jpeg) on one thread and writes
    the shard, on the CPUs the expander and generator pools leave (encode_pool)."""

    def __init__(self, cfg: GenerateConfig, job_id: str) -> None:
        from llmgan.job.stages import ShardEncoder

        super().__init__(cfg, job_id)
        self.stage = ShardEncoder(cfg)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list[bytes]]:
        return {"outcome": [pickle.dumps(self.finish(_in_stage(self.stage, "encode", pickle.loads(p))))
                            for p in batch["payload"]]}


class ShardActor(_Finisher):
    """Fused layout: one shard through every stage in this process (the local executor's path, one thread).
    A plain Ray actor (FusedPool), not a Ray Data stage: with one stage there is nothing to stream between."""

    def __init__(self, cfg: GenerateConfig, job_id: str) -> None:
        from llmgan.job.stages import ShardEncoder, ShardExpander, ShardGenerator

        _set_threads(cfg.generator.num_cpus)
        super().__init__(cfg, job_id)
        self.stages = (ShardExpander(cfg), ShardGenerator(cfg, lazy=True), ShardEncoder(cfg))

    def _shard(self, spec: ShardSpec) -> ShardResult:
        expand, generate, encode = self.stages
        result = encode(generate(expand(spec)))
        result.workers["expand"] = result.workers["generate"] = _worker()
        return result

    def run(self, spec: ShardSpec) -> ShardOutcome:
        return self.finish(_in_stage(self._shard, "encode", spec))


class FusedPool:
    """The fused layout's actors, kept across the driver's retry passes (models stay loaded) and killed by
    `close`. Each ready actor holds one shard at a time, so memory stays one shard per actor and a slow actor
    takes fewer shards. An actor that dies is restarted by Ray, which runs the shard it held once more on the
    new process (the shard writer makes a rerun safe); a shard that also kills the second process is reported
    failed and left to the driver's bounded retries. An actor that waits for room on the cluster takes shards
    once it starts; the others do not wait for it."""

    def __init__(self, cfg: GenerateConfig, job_id: str) -> None:
        gen = cfg.generator
        remote = ray.remote(ShardActor).options(
            num_cpus=gen.num_cpus, num_gpus=gen.num_gpus, resources=gen.resources or None, max_restarts=-1,
            max_task_retries=1)
        self.key = (cfg, job_id)
        self.actors = [remote.remote(cfg, job_id) for _ in range(gen.max_actors or 1)]
        self._starting = {a.__ray_ready__.remote(): a for a in self.actors}
        self._idle: list[Any] = []

    def run(self, todo: list[ShardSpec], on_outcome: OnOutcome) -> None:
        queue = deque(todo)
        busy: dict[Any, tuple[Any, ShardSpec]] = {}
        while queue or busy:
            while self._idle and queue:
                actor, spec = self._idle.pop(), queue.popleft()
                busy[actor.run.remote(spec)] = (actor, spec)
            [ref], _ = ray.wait([*busy, *self._starting], num_returns=1)
            if ref in self._starting:  # started (or failed to: its shards then fail with the reason)
                self._idle.append(self._starting.pop(ref))
                continue
            actor, spec = busy.pop(ref)
            try:
                outcome = ray.get(ref)
            except Exception as exc:  # noqa: BLE001 - e.g. the actor's process died: retried by the driver
                outcome = ShardFailed.of(spec.index, exc)
            self._idle.append(actor)
            on_outcome(outcome)

    def close(self) -> None:
        for actor in self.actors:
            ray.kill(actor)


def _pool(res: StageResources) -> ray.data.ActorPoolStrategy:
    """A stage's actor pool, all of its actors started at once: Ray Data otherwise adds one only when the
    others are busy, and the second of 2 CPU generators started seconds after the first. The minimum stays
    the user's, so a pool that does not fit whole still runs on the actors that do."""
    return ray.data.ActorPoolStrategy(min_size=res.min_actors, max_size=res.max_actors, initial_size=res.max_actors)


def encode_pool(cfg: GenerateConfig, cluster_cpus: float) -> tuple[int, float]:
    """(actors, CPUs reserved by each) of the split layout's encode-and-write stage: the CPUs the actor pools
    leave, one actor per whole core left (at least one) unless --encode-workers says how many. Where the pools
    leave no CPU (CPU generators fill the cluster) the actors reserve none and share the generators' cores;
    Ray Data's streaming back-pressure bounds how many generated shards wait for them."""
    exp, gen = cfg.expander, cfg.generator
    free = cluster_cpus - (exp.num_cpus or 0.0) * (exp.max_actors or 1) - (gen.num_cpus or 0.0) * (gen.max_actors or 1)
    free = max(0.0, round(free, 6))  # 2 - 0.25 - 2 x 0.875 is not exactly 0 in floating point
    workers = cfg.encode_workers or max(1, int(free))
    return workers, min(1.0, free / workers)


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
        self._fused: FusedPool | None = None

    def prepare(self, cfg: GenerateConfig) -> GenerateConfig:
        t0 = time.perf_counter()
        connect_ray(quiet=self.quiet)
        self.startup = {"ray_connect": time.perf_counter() - t0}
        quiet_ray_data()
        resources = ray.cluster_resources()
        cfg = size_pools(cfg, resources.get("CPU", 0.0), resources.get("GPU", 0.0))
        if cfg.stage_layout == "fused":
            log.info("fused stages: %d-%d whole-shard actors x %g CPU", cfg.generator.min_actors,
                     cfg.generator.max_actors, cfg.generator.num_cpus)
        else:
            log.info("actor pools: expander %d-%d x %g CPU, generator %d-%d x %g CPU", cfg.expander.min_actors,
                     cfg.expander.max_actors, cfg.expander.num_cpus, cfg.generator.min_actors,
                     cfg.generator.max_actors, cfg.generator.num_cpus)
        return cfg

    def run(self, cfg: GenerateConfig, todo: list[ShardSpec], job_id: str, on_outcome: OnOutcome) -> None:
        if cfg.stage_layout == "fused":
            if self._fused is None or self._fused.key != (cfg, job_id):
                self.close()
                self._fused = FusedPool(cfg, job_id)
            self._fused.run(todo, on_outcome)
            return
        ds = ray.data.from_items([{"payload": pickle.dumps(s)} for s in todo], override_num_blocks=len(todo))
        for actor, res in ((ExpandActor, cfg.expander), (GenerateActor, cfg.generator)):
            ds = ds.map_batches(
                actor, fn_constructor_args=(cfg,), batch_size=1, batch_format="numpy", compute=_pool(res),
                num_cpus=res.num_cpus, num_gpus=res.num_gpus, resources=res.resources or None,
            )
        workers, cpus = encode_pool(cfg, ray.cluster_resources().get("CPU", 0.0))
        ds = ds.map_batches(EncodeWriteActor, fn_constructor_args=(cfg, job_id), batch_size=1, batch_format="numpy",
                            compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=cpus)
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

    def close(self) -> None:
        if self._fused is not None:
            self._fused.close()
            self._fused = None
