"""The shard plan (row ranges of the prompts file) and the seed of every image.

The plan depends only on the prompts file, `n_per_prompt` and `shard_size`, so a rerun computes the same
shards and can skip the committed ones. Seeds depend only on (job seed or row seed, prompt id, variant,
image index), never on batching or scheduling, so a redone shard is byte-identical.
"""

from __future__ import annotations

from dataclasses import dataclass

from llmgan.io.prompts import PromptsFile
from llmgan.io.seeds import derive_seed

# A shard also closes after this many rows, so a file of mostly null or rejected prompts still makes
# bounded shards (bounded memory in the actors, bounded rejection lists) instead of one huge one.
MAX_SHARD_ROWS = 100_000


@dataclass(frozen=True)
class ShardSpec:
    index: int
    row_start: int
    row_stop: int
    planned_images: int

    @property
    def name(self) -> str:
        return f"{self.index:05d}"


def make_plan(prompts: PromptsFile, n_per_prompt: int, shard_size: int) -> list[ShardSpec]:
    """Cut the rows into consecutive ranges of about `shard_size` images each (a prompt never splits).

    Streams the `n` and prompt columns; rows with no prompt count no images. Memory: one small record per
    shard. A shard never spans more than max(shard_size, MAX_SHARD_ROWS) rows.
    """
    shards: list[ShardSpec] = []
    start = row = images = 0
    max_rows = max(shard_size, MAX_SHARD_ROWS)
    for counts, present in zip(prompts.image_counts(n_per_prompt), prompts.prompt_present()):
        for c in (counts * present).tolist():
            images += c
            row += 1
            if images >= shard_size or row - start >= max_rows:
                shards.append(ShardSpec(len(shards), start, row, images))
                start, images = row, 0
    if row > start:
        shards.append(ShardSpec(len(shards), start, row, images))
    return shards


def prompt_seed(job_seed: int, prompt_id: str, row_seed: int | None) -> int:
    """A row's `seed` column wins; otherwise the seed derives from (job seed, prompt id)."""
    return derive_seed("prompt", row_seed) if row_seed is not None else derive_seed("prompt", job_seed, prompt_id)


def image_seed(base: int, variant: int, index: int) -> int:
    return derive_seed("image", base, variant, index)


def caption_seed(job_seed: int) -> int:
    """Seed handed to the caption expander (which derives per-(prompt id, variant) streams from it)."""
    return derive_seed("caption", job_seed)
