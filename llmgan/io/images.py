"""Image conversions shared by every stage: uint8 (N, H, W, C) arrays (C = 3 RGB or 4 RGBA) <-> network tensors in
[-1, 1], arrays / PIL images -> PNG bytes (with alpha when there is one), the job's output encodings
(ImageEncoding: png, webp, jpeg), grids of images."""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch and numpy wait for the functions that need them: job settings import this module's
    # formats, and `llmgan --help` loads neither
    import numpy as np
    import torch


def to_float(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, C) -> float32 (N, C, H, W) in [-1, 1] (a new tensor; read-only inputs are fine)."""
    import numpy as np
    import torch

    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)


def to_uint8_tensor(x: torch.Tensor) -> torch.Tensor:
    """float (N, C, H, W) in [-1, 1] (any device or dtype) -> uint8 (N, H, W, C) view, rounded, on x's device."""
    import torch

    return ((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """float (N, C, H, W) in [-1, 1] (any device or dtype) -> uint8 (N, H, W, C) array on the host, rounded."""
    return to_uint8_tensor(x).cpu().numpy()


def png_bytes(image: np.ndarray | Any) -> bytes:
    """PNG bytes of a uint8 (H, W, 3) or (H, W, 4) array (RGBA keeps its alpha) or a PIL image."""
    import numpy as np
    from PIL import Image

    img = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


IMAGE_FORMATS = ("png", "webp", "jpeg")
EXTENSIONS = {"png": "png", "webp": "webp", "jpeg": "jpg"}
DEFAULT_PNG_LEVEL = 6  # zlib's and Pillow's default
DEFAULT_JPEG_QUALITY = 95


@dataclass(frozen=True)
class ImageEncoding:
    """How the job writes each image. png and webp are lossless unless `quality` is given (webp then lossy);
    jpeg is always lossy (`quality`, default 95) and has no alpha. The same array always gives the same bytes."""

    format: str = "png"
    png_level: int = DEFAULT_PNG_LEVEL  # zlib level 0-9: 1 is about twice as fast as 6 for slightly larger files
    quality: int | None = None  # 1-100; webp: lossy at this quality; jpeg: default 95; png: not allowed

    def __post_init__(self) -> None:
        if self.format not in IMAGE_FORMATS:
            raise ValueError(f"image format must be one of {', '.join(IMAGE_FORMATS)}, got {self.format!r}")
        if not 0 <= self.png_level <= 9:
            raise ValueError(f"png level must be 0-9, got {self.png_level}")
        if self.quality is not None and not 1 <= self.quality <= 100:
            raise ValueError(f"quality must be 1-100, got {self.quality}")
        if self.quality is not None and self.format == "png":
            raise ValueError("quality applies to webp and jpeg; png is lossless (use png level for speed vs size)")

    @property
    def ext(self) -> str:
        return EXTENSIONS[self.format]

    @property
    def lossless(self) -> bool:
        return self.format == "png" or (self.format == "webp" and self.quality is None)

    def encode(self, image: np.ndarray) -> bytes:
        """Bytes of one uint8 (H, W, 3|4) array; jpeg refuses alpha (checked before a job writes anything)."""
        import numpy as np
        from PIL import Image

        arr = np.asarray(image)
        if self.format == "jpeg" and arr.shape[-1] == 4:
            raise ValueError("jpeg has no alpha channel: write RGBA images as png or webp")
        img = Image.fromarray(arr)
        buf = io.BytesIO()
        if self.format == "png":
            img.save(buf, format="PNG", compress_level=self.png_level)
        elif self.format == "webp":
            if self.quality is None:
                img.save(buf, format="WEBP", lossless=True, quality=25, method=1, exact=True)
            else:
                img.save(buf, format="WEBP", quality=self.quality, method=4)
        else:
            img.save(buf, format="JPEG", quality=self.quality or DEFAULT_JPEG_QUALITY)
        return buf.getvalue()


def grid(images: np.ndarray, cols: int, gap: int = 1, fill: int = 255) -> np.ndarray:
    """uint8 (N, H, W, C) -> one uint8 (.., .., C) image with `cols` columns and `gap` px between tiles (opaque
    `fill`; the tiles keep their alpha)."""
    import numpy as np

    n, h, w, c = images.shape
    rows = math.ceil(n / cols)
    canvas = np.full((rows * (h + gap) + gap, cols * (w + gap) + gap, c), fill, np.uint8)
    for i, img in enumerate(images):
        r, c = divmod(i, cols)
        y, x = gap + r * (h + gap), gap + c * (w + gap)
        canvas[y : y + h, x : x + w] = img
    return canvas
