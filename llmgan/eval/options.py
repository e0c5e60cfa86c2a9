"""Settings of `llmgan eval` and `llmgan train-classifier`, validated once in `__post_init__` with messages that
name the option as typed; light to import (the CLI takes its defaults from here)."""

from __future__ import annotations

from dataclasses import dataclass

from llmgan.errors import UserError
from llmgan.gan.config import MAX_TRUNCATION

SPLIT_CHOICES = ("both", "train", "heldout", "all")
MAX_EVAL_IMAGES = 1_000_000


def _check_threads(threads: int | None) -> None:
    if threads is not None and threads < 1:
        raise UserError(f"--threads must be at least 1, got {threads}")


@dataclass(frozen=True)
class EvalOptions:
    """What to evaluate: images per split, rerank, seed, which captions, noise scale; torch threads (None: torch's
    choice) for the process that runs it."""

    n: int = 2000
    best_of: int = 1
    seed: int = 0
    split: str = "both"
    truncation: float = 1.0
    classifier_steps: int = 1500
    threads: int | None = None

    def __post_init__(self) -> None:
        # 10 images is the least the diversity and Fréchet figures can be computed from
        if not 10 <= self.n <= MAX_EVAL_IMAGES:
            raise UserError(f"--n must be between 10 and {MAX_EVAL_IMAGES}, got {self.n}")
        if self.best_of < 1:
            raise UserError(f"--best-of must be at least 1, got {self.best_of}")
        if self.seed < 0:
            raise UserError(f"--seed must be non-negative, got {self.seed}")
        if self.split not in SPLIT_CHOICES:
            raise UserError(f"--split must be one of {', '.join(SPLIT_CHOICES)}, got {self.split!r}")
        if not 0 < self.truncation <= MAX_TRUNCATION:
            raise UserError(f"--truncation must be in (0, {MAX_TRUNCATION:g}], got {self.truncation}")
        if self.classifier_steps < 1:
            raise UserError(f"classifier_steps must be at least 1, got {self.classifier_steps}")
        _check_threads(self.threads)


@dataclass(frozen=True)
class ClassifierTrainOptions:
    """Training the evaluation classifier: steps of batch 64, seed (split, init, batches), the side images are
    loaded at, torch threads (1 was measured fastest on a busy 2-core machine)."""

    steps: int = 1500
    seed: int = 1
    image_size: int = 32
    threads: int = 1

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise UserError(f"--steps must be at least 1, got {self.steps}")
        if self.seed < 0:
            raise UserError(f"--seed must be non-negative, got {self.seed}")
        if not 8 <= self.image_size <= 1024:
            raise UserError(f"--image-size must be between 8 and 1024 pixels, got {self.image_size}")
        _check_threads(self.threads)
