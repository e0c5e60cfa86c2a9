"""GanModel: load a checkpoint (safetensors + json only) and turn caption embeddings + seeds into uint8 images.

Determinism: the noise row for a seed depends only on that seed, and best-of candidates derive from it,
so the same (caption, seed) gives the same image whatever else is in the batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from llmgan.errors import UserError
from llmgan.gan.checkpoint import (
    DISCRIMINATOR,
    GENERATOR,
    content_identity,
    load_weights,
    read_meta,
    resolve_checkpoint,
)
from llmgan.gan.config import MAX_TRUNCATION, GanConfig
from llmgan.gan.networks import Discriminator, Generator
from llmgan.io.images import to_float, to_uint8
from llmgan.io.seeds import derive_seed
from llmgan.io.storage import Storage

CHUNK = 256  # rows per forward pass: bounds memory, and outputs do not depend on it


def default_checkpoint_path() -> str:
    """The shipped 32 px shapes model inside the package."""
    return str(Path(__file__).resolve().parent.parent / "assets" / "gan" / "shapes32")


class GanModel:
    """A trained generator (EMA weights) and optionally its discriminator for image-text match scores."""

    def __init__(
        self,
        config: GanConfig,
        generator: Generator,
        discriminator: Discriminator | None,
        *,
        text_encoder: str | None,
        identity: str,
        meta: dict,
        path: str,
        device: str = "cpu",
    ) -> None:
        self.config = config
        self.image_size = config.image_size
        self.z_dim = config.z_dim
        self.text_encoder = text_encoder
        self.identity = identity
        self.meta = meta
        self.path = path
        self.device = torch.device(device)
        self.generator = generator.to(self.device).eval().requires_grad_(False)
        self.discriminator = None if discriminator is None else discriminator.to(self.device).eval().requires_grad_(False)

    @classmethod
    def load(
        cls, path: str | None = None, *, storage: Storage | None = None, device: str = "cpu", discriminator: bool = False
    ) -> GanModel:
        """Load a checkpoint directory (local or s3://, or a training run directory); None -> the shipped model."""
        storage = storage or Storage()
        path = str(path) if path is not None else default_checkpoint_path()
        path = resolve_checkpoint(path, storage)
        meta = read_meta(path, storage)
        config = GanConfig.from_dict(meta["model"])
        generator = Generator(config)
        g_bytes = load_weights(path, GENERATOR, generator, storage)
        disc = None
        if discriminator:
            disc = Discriminator(config)
            load_weights(path, DISCRIMINATOR, disc, storage)
        try:
            torch.device(device)
        except RuntimeError as exc:
            raise UserError(f"device: {exc}") from None
        return cls(
            config,
            generator,
            disc,
            text_encoder=meta.get("text_encoder"),
            identity=content_identity(meta, g_bytes),
            meta=meta,
            path=path,
            device=device,
        )

    # ---- inputs --------------------------------------------------------------------------------
    def noise(self, seeds: Sequence[int], truncation: float = 1.0) -> torch.Tensor:
        """(N, z_dim) standard normal rows, row i drawn from seeds[i] alone, scaled by `truncation` (1 = none)."""
        if not 0 < truncation <= MAX_TRUNCATION:
            raise UserError(f"truncation must be in (0, {MAX_TRUNCATION:g}], got {truncation}")
        rows = []
        for seed in seeds:
            g = torch.Generator().manual_seed(int(seed) % (2**63))
            rows.append(torch.randn(self.z_dim, generator=g))
        z = torch.stack(rows) if rows else torch.empty(0, self.z_dim)
        return (z * truncation).to(self.device)

    def _emb(self, emb: np.ndarray | torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(np.asarray(emb, dtype=np.float32) if not isinstance(emb, torch.Tensor) else emb)
        t = t.to(self.device, torch.float32)
        if t.dim() != 2 or t.shape[1] != self.config.text_dim:
            raise UserError(f"caption embeddings must have shape (N, {self.config.text_dim}), got {tuple(t.shape)}")
        return t

    # ---- model calls ---------------------------------------------------------------------------
    @torch.inference_mode()
    def _generate_float(self, emb: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        out = [self.generator(z[i : i + CHUNK], emb[i : i + CHUNK]) for i in range(0, emb.shape[0], CHUNK)]
        return torch.cat(out) if out else torch.empty(0, self.config.image_channels, self.image_size, self.image_size)

    def generate(self, emb: np.ndarray | torch.Tensor, z: torch.Tensor) -> np.ndarray:
        """uint8 (N, H, W, C) images (C: 3 RGB or 4 RGBA, the checkpoint's) for caption embeddings (N, text_dim) and noise (N, z_dim)."""
        e = self._emb(emb)
        z = torch.as_tensor(z, dtype=torch.float32).to(self.device)
        if z.shape != (e.shape[0], self.z_dim):
            raise UserError(f"noise must have shape ({e.shape[0]}, {self.z_dim}), got {tuple(z.shape)}")
        return to_uint8(self._generate_float(e, z))

    @torch.inference_mode()
    def _score_float(self, images: torch.Tensor, emb: torch.Tensor) -> np.ndarray:
        if self.discriminator is None:
            raise UserError("scoring needs the discriminator: load with GanModel.load(..., discriminator=True)")
        out = [
            self.discriminator(images[i : i + CHUNK], emb[i : i + CHUNK]).cond for i in range(0, images.shape[0], CHUNK)
        ]
        return torch.cat(out).cpu().numpy() if out else np.empty(0, np.float32)

    def score(self, images: np.ndarray, emb: np.ndarray | torch.Tensor) -> np.ndarray:
        """(N,) D's conditional (image-text match) logit for uint8 images (N, H, W, C); higher = better match."""
        images = np.asarray(images)
        shape = (self.image_size, self.image_size, self.config.image_channels)
        if images.ndim != 4 or images.shape[1:] != shape:
            raise UserError(f"images must be uint8 (N, {', '.join(map(str, shape))}), got {images.shape}")
        x = to_float(images).to(self.device)
        return self._score_float(x, self._emb(emb))

    def sample(
        self, emb: np.ndarray | torch.Tensor, seeds: Sequence[int], best_of: int = 1, truncation: float = 1.0
    ) -> tuple[np.ndarray, np.ndarray]:
        """Images uint8 (N, H, W, C) and scores (N,) (nan when best_of == 1).

        With best_of = K, row i draws K candidates (candidate 0 uses seeds[i], candidate k derive_seed(seed, k)),
        scores each with D's conditional term on the quantised image, and keeps the highest.
        """
        e = self._emb(emb)
        n = e.shape[0]
        if len(seeds) != n:
            raise UserError(f"need one seed per caption: {n} captions, {len(seeds)} seeds")
        if best_of < 1:
            raise UserError(f"best_of must be at least 1, got {best_of}")
        if best_of == 1:
            return self.generate(e, self.noise(seeds, truncation)), np.full(n, np.nan, np.float32)
        cand_seeds = [s if k == 0 else derive_seed(s, k) for s in seeds for k in range(best_of)]  # row-major (N, K)
        e_rep = e.repeat_interleave(best_of, dim=0)  # (N*K, E)
        images = self.generate(e_rep, self.noise(cand_seeds, truncation))  # (N*K, H, W, C)
        scores = self.score(images, e_rep).reshape(n, best_of)
        pick = scores.argmax(axis=1)
        chosen = images.reshape(n, best_of, *images.shape[1:])[np.arange(n), pick]
        return chosen, scores[np.arange(n), pick].astype(np.float32)
