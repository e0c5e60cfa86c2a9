"""Training inputs shared by `llmgan train --local` and Ray Train: the captioned images, their caption embeddings
(cached in the cache folder, never in the data's, so a rerun or resume skips the encoder) and the config with the encoder's width."""

from __future__ import annotations

import logging

import numpy as np

from llmgan.data.readers import CaptionedImages, load_captioned
from llmgan.errors import UserError
from llmgan.gan.config import GanConfig
from llmgan.io.storage import Storage

log = logging.getLogger(__name__)


def load_training_data(data: str, config: GanConfig, text_encoder: str | None, storage: Storage, *,
                       cache_dir: str | None = None, image_column: str | None = None,
                       caption_column: str | None = None) -> tuple[CaptionedImages, np.ndarray, GanConfig]:
    """-> (dataset, float32 (N, E) caption embeddings, config with text_dim = E). The embeddings are cached under
    `cache_dir` (None: $LLMGAN_CACHE_DIR, else ~/.cache/llmgan); the columns are load_captioned's."""
    from llmgan.text.encoder import TextEncoder, embed_dataset_captions, embedding_cache_url

    dataset = load_captioned(data, config.image_size, image_column=image_column, caption_column=caption_column,
                             storage=storage, channels=config.channels or None)
    if config.channels != dataset.images.shape[-1]:  # decided by the data: RGBA when any image is transparent
        config = config.replace(channels=int(dataset.images.shape[-1]))
        log.info("%s: %s images", data, "RGBA" if config.channels == 4 else "RGB")
    n = len(dataset.captions)
    if n < config.batch_size:
        raise UserError(f"{data}: {n} usable images, fewer than the batch size {config.batch_size}")
    encoder = TextEncoder(model=text_encoder)
    if encoder.dim != config.text_dim:
        config = config.replace(text_dim=encoder.dim)
    cache = embedding_cache_url(data, encoder.identity, cache_dir)
    log.info("embedding %d captions (cached in %s)", n, cache)
    return dataset, embed_dataset_captions(dataset.captions, encoder, cache, storage), config
