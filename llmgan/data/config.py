"""Settings of the built-in datasets (shapes, prompt pairs, digits, game icons) and of their Parquet output, each
validated once in `__post_init__` with messages that name the option as typed; light to import (the CLI reads
defaults)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from llmgan.errors import UserError

SPLITS = ("train", "heldout", "all")
MIN_SIZE, MAX_SIZE = 8, 1024


def _check_size(size: int, option: str = "--size") -> None:
    if not MIN_SIZE <= size <= MAX_SIZE:
        raise UserError(f"{option} must be between {MIN_SIZE} and {MAX_SIZE} pixels, got {size}")


def _check_seed(seed: int) -> None:
    if seed < 0:
        raise UserError(f"--seed must be non-negative, got {seed}")


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise UserError(f"--split must be one of {', '.join(SPLITS)}, got {split!r}")


@dataclass(frozen=True)
class ShapesConfig:
    """`llmgan data shapes`: n procedural shape images of `size` px; "train" leaves out held-out combinations."""

    n: int
    size: int = 32
    seed: int = 0
    split: str = "train"

    def __post_init__(self) -> None:
        if self.n < 1:
            raise UserError(f"--n must be at least 1, got {self.n}")
        _check_size(self.size)
        _check_seed(self.seed)
        _check_split(self.split)


@dataclass(frozen=True)
class PromptPairsConfig:
    """`llmgan data prompt-pairs`: n (short prompt, caption) pairs; `detail` is the chance a prompt states each
    optional attribute (for half the pairs)."""

    n: int
    seed: int = 0
    detail: float = 0.6
    split: str = "all"

    def __post_init__(self) -> None:
        if self.n < 1:
            raise UserError(f"--n must be at least 1, got {self.n}")
        _check_seed(self.seed)
        if not 0 <= self.detail <= 1:
            raise UserError(f"--detail must be in [0, 1], got {self.detail}")
        _check_split(self.split)


@dataclass(frozen=True)
class DigitsConfig:
    """`llmgan data digits`: scikit-learn's digits upscaled to `size` px; `limit` keeps the first rows (tests)."""

    size: int = 32
    seed: int = 0
    limit: int | None = None

    def __post_init__(self) -> None:
        _check_size(self.size)
        _check_seed(self.seed)
        if self.limit is not None and self.limit < 1:
            raise UserError(f"limit must be at least 1, got {self.limit}")


@dataclass(frozen=True)
class ParquetOut:
    """Where a dataset is written: one Parquet file, a local path or an s3:// URL (never an existing folder)."""

    url: str

    def __post_init__(self) -> None:
        if not self.url.strip():
            raise UserError("--out must not be empty")
        if self.url.startswith("s3://"):
            if not self.url.removeprefix("s3://").partition("/")[2]:
                raise UserError(f"--out {self.url}: give a key inside the bucket, e.g. s3://bucket/data.parquet")
        elif Path(self.url).is_dir():
            raise UserError(f"--out {self.url} is a directory; give a file path such as "
                            f"{Path(self.url) / 'data.parquet'}")


@dataclass(frozen=True)
class GameIconsConfig:
    """`llmgan data game-icons`: every icon drawn at `size` px in `pairings` (colour, background) pairings for training
    and `heldout_rows` held-out rows (0, 1 or 2: an unseen pairing and/or an unseen icon x pairing combination);
    `icons`, when given, keeps only those icon names (a studio's own set: the held-out rule is per name, so a subset
    holds out exactly the full build's rows of those icons)."""

    size: int = 64
    split: str = "train"
    pairings: int = 3
    heldout_rows: int = 1
    icons: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if not MIN_SIZE <= self.size <= 256:  # 256 px x 8 samples a side is the rasteriser's comfortable limit
            raise UserError(f"--size must be between {MIN_SIZE} and 256 pixels, got {self.size}")
        _check_split(self.split)
        if self.pairings < 1:
            raise UserError(f"--pairings must be at least 1, got {self.pairings}")
        if self.heldout_rows not in (0, 1, 2):
            raise UserError(f"--heldout-rows must be 0, 1 or 2, got {self.heldout_rows}")
        if self.icons is not None and not self.icons:
            raise UserError("--icons names no icon")
