"""The single-process executor: the same stage code as the Ray executor (ShardExpander -> ShardGenerator ->
ShardEncoder -> write_shard), shard after shard, with no Ray installed or started. Shard i is encoded (on
--encode-workers threads) and written by a background thread while shard i+1 is expanded and generated."""

from __future__ import annotations

import dataclasses
import os
import platform
from concurrent.futures import Future, ThreadPoolExecutor

from llmgan.io.storage import Storage
from llmgan.job.config import GenerateConfig, usable_cores
from llmgan.job.outcomes import OnOutcome, ShardFailed, ShardOutcome, write_outcome
from llmgan.job.plan import ShardSpec
from llmgan.job.shards import ShardResult
from llmgan.job.stages import ShardEncoder, ShardExpander, ShardGenerator


class LocalExecutor:
    """Runs every shard in this process. Stage models load once, on the first shard, and are kept across the
    driver's retry passes; `--generator-gpus` / `--expander-gpus` > 0 put that stage on the GPU."""

    name = "local"

    def __init__(self) -> None:
        self._stages: tuple[ShardExpander, ShardGenerator, ShardEncoder] | None = None
        self._worker = {"node": platform.node(), "pid": os.getpid()}

    def prepare(self, cfg: GenerateConfig) -> GenerateConfig:
        # one expander and one generator in this process; encoding threads: one per usable core unless given
        return dataclasses.replace(cfg, encode_workers=cfg.encode_workers or usable_cores())

    def run(self, cfg: GenerateConfig, todo: list[ShardSpec], job_id: str, on_outcome: OnOutcome) -> None:
        try:
            expander, generator, encoder = self._load(cfg)
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
                    pending = writer.submit(self._encode_and_write, encoder, storage, cfg, result, job_id)
            if pending is not None:
                on_outcome(pending.result())

    def _load(self, cfg: GenerateConfig) -> tuple[ShardExpander, ShardGenerator, ShardEncoder]:
        if self._stages is None or self._stages[0].cfg != cfg:
            if self._stages is not None:
                self._stages[2].close()
            self._stages = (ShardExpander(cfg), ShardGenerator(cfg), ShardEncoder(cfg, cfg.encode_workers or 1))
        return self._stages

    def _encode_and_write(self, encoder: ShardEncoder, storage: Storage, cfg: GenerateConfig, result: ShardResult,
                          job_id: str) -> ShardOutcome:
        try:
            encoder(result)
            result.workers["encode"] = self._worker
        except Exception as exc:  # noqa: BLE001 - reported per shard, retried by the driver
            return ShardFailed.of(result.index, exc)
        return write_outcome(storage, cfg, result, job_id)
