"""A sheet that puts a job's images beside the training images they should resemble: for prompts sampled across the
job, the real images whose captions are nearest the prompt (sentence-encoder cosine) on the left, the generated ones
on the right. It lets a reader judge a model against its data, and see whether it only copies it."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from PIL import Image

from llmgan.errors import UserError
from llmgan.io.images import png_bytes
from llmgan.io.storage import Storage
from llmgan.job.contact_sheet import render, sample_rows
from llmgan.job.shards import committed_shards

MAX_ROWS = 24


def comparison_panels(storage: Storage, job: str, data: str, rows: int = 12, real: int = 2, generated: int = 4,
                      text_encoder: str | None = None, cache_dir: str | None = None,
                      ) -> list[tuple[str, list[bytes | None]]]:
    """Per sampled prompt: (prompt, [`real` nearest training images as PNG, None (a gap), `generated` images])."""
    from llmgan.data.readers import load_captioned
    from llmgan.text.encoder import TextEncoder, embed_dataset_captions, embedding_cache_url

    if not 1 <= rows <= MAX_ROWS:
        raise UserError(f"--rows must be 1..{MAX_ROWS}, got {rows}")
    if real < 1 or generated < 1:
        raise UserError("--real and --generated must be at least 1")
    if not committed_shards(storage, job):
        raise UserError(f"{job} has no committed shards: run the generation job first")
    sampled = sample_rows(storage, job, rows, generated)
    with Image.open(io.BytesIO(sampled[0][1][0].image)) as first:
        side = first.width  # the training images at the job's size
    dataset = load_captioned(data, side, storage=storage, channels=None)
    encoder = TextEncoder(model=text_encoder)
    caption_emb = embed_dataset_captions(dataset.captions, encoder,
                                         embedding_cache_url(data, encoder.identity, cache_dir), storage)
    prompts = [prompt for prompt, _ in sampled]
    sims = encoder.encode(prompts) @ np.asarray(caption_emb).T  # unit vectors: cosine
    panels: list[tuple[str, list[bytes | None]]] = []
    for (prompt, recs), row in zip(sampled, sims):
        nearest = np.argsort(-row, kind="stable")[:real]
        panels.append((prompt, [*(png_bytes(dataset.images[i]) for i in nearest), None, *(r.image for r in recs)]))
    return panels


def comparison_sheet(storage: Storage, job: str, data: str, **options: Any) -> Any:
    """The panels of `comparison_panels` as one PIL image."""
    return render(comparison_panels(storage, job, data, **options))
