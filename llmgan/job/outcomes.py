"""What an executor reports per shard (typed: an error is never data), the executor interface, JobFailed."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from llmgan.io.storage import Storage
from llmgan.job.config import GenerateConfig
from llmgan.job.plan import ShardSpec
from llmgan.job.shards import ShardResult, write_shard

MAX_ERROR_CHARS = 500


@dataclass(frozen=True)
class ShardCommitted:
    """The shard's files are written and its stats file (the commit marker) is in place."""

    stats: dict[str, Any]

    @property
    def shard(self) -> int:
        return int(self.stats["shard"])


@dataclass(frozen=True)
class ShardFailed:
    """The shard did not commit this attempt; the driver retries it a bounded number of times."""

    shard: int
    error: str

    @classmethod
    def of(cls, shard: int, exc: BaseException) -> ShardFailed:
        return cls(shard, f"{type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS])


ShardOutcome = ShardCommitted | ShardFailed
OnOutcome = Callable[[ShardOutcome], None]


def write_outcome(storage: Storage, cfg: GenerateConfig, result: ShardResult, job_id: str) -> ShardOutcome:
    """Write an encoded shard, every executor's last step; a failed write (storage outage, conflict) is a
    ShardFailed the driver retries."""
    try:
        return ShardCommitted(write_shard(storage, cfg.out, result, cfg.format, job_id))
    except Exception as exc:  # noqa: BLE001 - reported per shard, retried by the driver
        return ShardFailed.of(result.index, exc)


class Executor(Protocol):
    """Runs shards through the stages (ShardExpander -> ShardGenerator -> write_shard) somewhere.

    Optional: `startup`, a dict of seconds the executor measured of its own start-up, goes into the summary's
    `startup_seconds`; `close()`, called once after the job's last pass, releases what the passes shared (the
    Ray executor's actors: a retry pass reuses the loaded models).
    """

    name: str

    def prepare(self, cfg: GenerateConfig) -> GenerateConfig:
        """Get ready to run (connect, size pools); returns `cfg` with the settings left to the executor filled in.
        Called only when there is work to do, after `_job.json` is written."""
        ...

    def run(self, cfg: GenerateConfig, todo: list[ShardSpec], job_id: str, on_outcome: OnOutcome) -> None:
        """One attempt at every shard in `todo`: call `on_outcome` once per shard as it finishes. A shard left
        without an outcome counts as failed."""
        ...


class QualityGateFailed(Exception):
    """Every shard committed, but more images than --fail-below-share allows stayed below --min-consistency."""

    def __init__(self, message: str, summary: dict) -> None:
        super().__init__(message)
        self.summary = summary


class JobFailed(Exception):
    """Shards still failing after the allowed retries; the message names them and how to resume."""

    def __init__(self, message: str, failures: list[ShardFailed]) -> None:
        super().__init__(message)
        self.failures = failures
