"""GanConfig: the frozen, validated description of a GAN (architecture + training recipe) saved with every checkpoint."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from llmgan.errors import UserError

IMAGE_SIZES = (32, 64, 128, 256)
CHANNELS = (0, 3, 4)  # 0: decided by the training data (RGBA when any image is not opaque)
AUGMENTS = ("translation", "cutout")
MAX_TRUNCATION = 1.0  # noise scale bound: truncation is in (0, MAX_TRUNCATION] for sampling and every job


@dataclass(frozen=True)
class GanConfig:
    """Architecture and training hyper-parameters. Everything a checkpoint needs to rebuild its networks."""

    image_size: int = 32
    channels: int = 0  # 3 (RGB) or 4 (RGBA); 0 until the training data decides
    z_dim: int = 64
    text_dim: int = 384
    g_width: int = 32  # generator channels at full resolution; doubles per halving, capped at g_width * 4
    d_width: int = 32  # discriminator channels after the first downsample; doubles per halving, capped at d_width * 4
    cond_dim: int = 64  # caption embedding is projected to this size inside D before being tiled
    contrastive_dim: int = 128  # shared image/text space of the contrastive (XMC-GAN style) loss
    # training recipe
    batch_size: int = 32
    lr_g: float = 2e-4
    lr_d: float = 4e-4
    beta1: float = 0.0
    beta2: float = 0.9
    mismatch_weight: float = 1.0
    contrastive_weight: float = 1.0  # 0 disables the image-text contrastive loss
    contrastive_temperature: float = 0.1
    # extra negatives: this many dataset captions per step join the batch's captions in the image->text
    # contrastive term; among hundreds of captions some differ from the right one only in shape or position
    contrastive_pool: int = 0
    r1_gamma: float = 0.1  # 0 disables R1
    r1_every: int = 4  # lazy regularisation: R1 every k steps, scaled by k
    ema_decay: float = 0.999
    augment: tuple[str, ...] = field(default=AUGMENTS)
    translation: float = 0.0625  # max shift as a fraction of the side (2 px at 32 px)
    cutout: float = 0.25  # cutout square side as a fraction of the side
    cutout_p: float = 0.5  # probability that an image gets a cutout

    def __post_init__(self) -> None:
        if isinstance(self.augment, (list, str)):  # from JSON / CLI
            value = tuple(a for a in (self.augment.split(",") if isinstance(self.augment, str) else self.augment) if a)
            object.__setattr__(self, "augment", value)
        if self.channels not in CHANNELS:
            raise UserError(f"channels must be 3 (RGB) or 4 (RGBA), got {self.channels!r}")
        if self.image_size not in IMAGE_SIZES:
            raise UserError(f"image_size must be one of {IMAGE_SIZES}, got {self.image_size}")
        for name in ("z_dim", "text_dim", "g_width", "d_width", "cond_dim", "contrastive_dim", "batch_size", "r1_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise UserError(f"{name} must be a positive integer, got {value!r}")
        if self.batch_size < 2:
            raise UserError(f"batch_size must be at least 2 (the mismatch and contrastive terms pair captions), got {self.batch_size}")
        for name in ("lr_g", "lr_d", "contrastive_temperature"):
            if not getattr(self, name) > 0:
                raise UserError(f"{name} must be > 0, got {getattr(self, name)}")
        if not isinstance(self.contrastive_pool, int) or self.contrastive_pool < 0:
            raise UserError(f"contrastive_pool must be a non-negative integer, got {self.contrastive_pool!r}")
        for name in ("mismatch_weight", "contrastive_weight", "r1_gamma"):
            if getattr(self, name) < 0:
                raise UserError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("beta1", "beta2", "ema_decay", "cutout_p"):
            if not 0 <= getattr(self, name) < 1 and not (name == "cutout_p" and getattr(self, name) == 1):
                raise UserError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        for name in ("translation", "cutout"):
            if not 0 <= getattr(self, name) <= 0.5:
                raise UserError(f"{name} must be in [0, 0.5], got {getattr(self, name)}")
        unknown = [a for a in self.augment if a not in AUGMENTS]
        if unknown:
            raise UserError(f"augment: unknown augmentation {unknown[0]!r}; choose from {', '.join(AUGMENTS)}")

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["augment"] = list(self.augment)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GanConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise UserError(f"GAN config: unknown field {unknown[0]!r}")
        # checkpoints written before RGBA existed drew RGB
        return cls(**{"channels": 3, **data})

    @property
    def image_channels(self) -> int:
        """Channels the networks draw and read: 3 until the data said otherwise."""
        return self.channels or 3

    def replace(self, **changes: Any) -> GanConfig:
        return dataclasses.replace(self, **changes)
