"""Image conversions shared by every stage: uint8 (N, H, W, C) arrays (C = 3 RGB or 4 RGBA) <-> network tensors in
[-1, 1], and arrays / PIL images -> PNG bytes (with alpha when there is one), grids of images."""

from __future__ import annotations

import io
import math
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # torch is heavy; only the tensor helpers need it and they import it when called
    import torch


def to_float(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, C) -> float32 (N, C, H, W) in [-1, 1] (a new tensor; read-only inputs are fine)."""
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
    from PIL import Image

    img = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def grid(images: np.ndarray, cols: int, gap: int = 1, fill: int = 255) -> np.ndarray:
    """uint8 (N, H, W, C) -> one uint8 (.., .., C) image with `cols` columns and `gap` px between tiles (opaque
    `fill`; the tiles keep their alpha)."""
    n, h, w, c = images.shape
    rows = math.ceil(n / cols)
    canvas = np.full((rows * (h + gap) + gap, cols * (w + gap) + gap, c), fill, np.uint8)
    for i, img in enumerate(images):
        r, c = divmod(i, cols)
        y, x = gap + r * (h + gap), gap + c * (w + gap)
        canvas[y : y + h, x : x + w] = img
    return canvas
