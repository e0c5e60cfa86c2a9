"""Settings of the GAN training loop (`LoopOptions`) and of `llmgan train --local` (`LocalTrainOptions`), validated
once with messages that name the option as typed; light to import (the CLI takes its defaults from here)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from llmgan.errors import UserError


@dataclass(frozen=True)
class LoopOptions:
    """Loop settings shared by every runtime (the model and recipe live in GanConfig). `matcher`: train the
    image-text matcher alongside G and D (saved with every checkpoint, scores consistency afterwards);
    `health_warmup`: the training-health checks (blank or collapsed samples, D far ahead, matcher memorising) run at
    every metrics row from this step on; `init_from`: a warm start from exported weights."""

    steps: int = 10_000
    seed: int = 0
    checkpoint_every: int = 500
    sample_every: int = 500
    eval_every: int = 500
    log_every: int = 50
    keep_checkpoints: int = 2
    progress: bool = True
    matcher: bool = True
    health_warmup: int = 200  # steps before the health checks (llmgan.gan.health) start, at the next metrics row
    # a new run starts from these exported weights (final/ or a shipped model) and continues their step count; a run
    # folder with checkpoints of its own resumes from them instead
    init_from: str | None = None

    def __post_init__(self) -> None:
        for name in ("steps", "checkpoint_every", "sample_every", "eval_every", "log_every", "keep_checkpoints"):
            value = getattr(self, name)
            if value is not None and value < 1:  # steps may be None in a subclass (its own default)
                raise UserError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
        if self.health_warmup < 0:
            raise UserError(f"--health-warmup must be non-negative, got {self.health_warmup}")
        if self.seed < 0:
            raise UserError(f"--seed must be non-negative, got {self.seed}")

    def loop(self, **changes: object) -> LoopOptions:
        """The loop's own settings out of a subclass (e.g. to ship to Ray Train workers), with `changes`."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(LoopOptions)}
        return LoopOptions(**{**fields, **changes})  # type: ignore[arg-type]


@dataclass(frozen=True)
class LocalTrainOptions(LoopOptions):
    """`llmgan train --local`: the loop settings plus this process's threads, text encoder, cache folder and the
    data's columns."""

    threads: int | None = None  # None: every core this process may use
    text_encoder: str | None = None  # None: the packaged MiniLM
    device: str = "cpu"  # "cuda": train on this machine's GPU (the core needs no Ray)
    cache_dir: str | None = None  # caption-embedding tables; None: $LLMGAN_CACHE_DIR, else ~/.cache/llmgan
    image_column: str | None = None  # Parquet image column; None: "image"
    caption_column: str | None = None  # None: "caption" (Parquet), "text" else "caption" (metadata.jsonl/.csv)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.threads is not None and self.threads < 1:
            raise UserError(f"--threads must be at least 1, got {self.threads}")
