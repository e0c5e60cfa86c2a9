"""The single-process executor: the same stage code as the Ray actors (ShardExpander -> ShardGenerator ->
write_shard), shard after shard, with no Ray installed or started. Shard i is written by a background thread
while shard i+1 is expanded and generated (PNG encoding already overlaps the GAN inside ShardGenerator)."""

from __future__ import annotations

import os
import platform
from concurrent.futures import Future, ThreadPoolExecutor

from llmgan.io.storage import Storage
from llmgan.job.config import GenerateConfig
from llmgan.job.outcomes import OnOutcome, ShardCommitted, ShardFailed, ShardOutcome
from llmgan.job.plan import ShardSpec
from llmgan.job.shards import ShardResult, write_shard
from llmgan.job.stages import ShardExpander, ShardGenerator


class LocalExecutor:
    """Runs every shard in this process. Stage models load once, on the first shard, and are kept across the
    driver's retry passes; `--generator-gpus` / `--expander-gpus` > 0 put that stage on the GPU."""

    name = "local"

    def __init__(self) -> None:
        self._stages: tuple[ShardExpander, ShardGenerator] | None = None
        self._worker = {"node": platform.node(), "pid": os.getpid()}

    def prepare(self, cfg: GenerateConfig) -> GenerateConfig:
        return cfg  # nothing to size: one expander and one generator, in this process

    def run(self, cfg: GenerateConfig, todo: list[ShardSpec], job_id: str, on_outcome: OnOutcome) -> None:
        try:
            expander, generator = self._load(cfg)
        except Exception as exc:  # noqa: BLE001 - e.g. a model on unreachable storage: every shard fails, retried
            for spec in todo:
                on_outcome(ShardFailed.of(spec.index, exc))
            return
        storage = Storage(cfg.s3_endpoint)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="shard-writer") as writer:
            pending: Future[ShardOutcome] | None = None
            for spec in todo:
                try:
                    work = expander(spec)
                    work.workers["expand"] = self._worker
                    result = generator(work)
                    result.workers["generate"] = self._worker
                except Exception as exc:  # noqa: BLE001 - reported per shard, retried by the driver
                    outcome: ShardOutcome | None = ShardFailed.of(spec.index, exc)
                else:
                    outcome = None
                if pending is not None:  # at most one shard waits for its write: memory stays one shard
                    on_outcome(pending.result())
                    pending = None
                if outcome is not None:
                    on_outcome(outcome)
                else:
                    pending = writer.submit(_write, storage, cfg, result, job_id)
            if pending is not None:
                on_outcome(pending.result())

    def _load(self, cfg: GenerateConfig) -> tuple[ShardExpander, ShardGenerator]:
        if self._stages is None or self._stages[0].cfg != cfg:
            self._stages = (ShardExpander(cfg), ShardGenerator(cfg))
        return self._stages


def _write(storage: Storage, cfg: GenerateConfig, result: ShardResult, job_id: str) -> ShardOutcome:
    try:
        return ShardCommitted(write_shard(storage, cfg.out, result, cfg.format, job_id))
    except Exception as exc:  # noqa: BLE001 - a failed write (storage outage, conflict) is retried by the driver
        return ShardFailed.of(result.index, exc)
