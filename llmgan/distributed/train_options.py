"""Settings of a distributed (Ray Train) run, validated once with messages that name the option as typed; light
to import (no Ray: the CLI takes its defaults from here)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from llmgan.errors import UserError
from llmgan.gan.train_options import LoopOptions


@dataclass(frozen=True)
class DistTrainOptions(LoopOptions):
    """Settings of a distributed run: the loop's own (LoopOptions: intervals, seed, matcher, ...) plus the cluster's.
    The model and recipe live in GanConfig; batch_size there is global."""

    steps: int | None = None  # total steps; None with epochs=None means 10,000
    epochs: float | None = None  # alternative to steps: passes over the data
    workers: int = 2
    gpu: bool = False
    cpus_per_worker: int | None = None  # None: the cluster's CPUs split evenly (capped at the largest node)
    max_failures: int = 3
    address: str | None = None  # Ray cluster address; None: RAY_ADDRESS, else a local Ray
    text_encoder: str | None = None
    classifier: str | None = "default"  # attribute classifier for accuracy and shapes consistency; None: neither
    # the driver reads the data and embeds its captions (workers get the vectors): the cache folder is the driver's
    cache_dir: str | None = None  # None: $LLMGAN_CACHE_DIR, else ~/.cache/llmgan
    image_column: str | None = None
    caption_column: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.steps is not None and self.epochs is not None:
            raise UserError("give either --steps or --epochs, not both")
        if self.epochs is not None and not self.epochs > 0:
            raise UserError(f"--epochs must be > 0, got {self.epochs}")
        if self.workers < 1:
            raise UserError(f"--workers must be at least 1, got {self.workers}")
        if self.cpus_per_worker is not None and self.cpus_per_worker < 1:
            raise UserError(f"--cpus-per-worker must be at least 1, got {self.cpus_per_worker}")
        if self.max_failures < 0:
            raise UserError(f"--max-failures must be >= 0, got {self.max_failures}")

    def total_steps(self, images: int, batch_size: int) -> int:
        if self.epochs is not None:
            return max(1, math.ceil(self.epochs * images / batch_size))
        return self.steps if self.steps is not None else 10_000
