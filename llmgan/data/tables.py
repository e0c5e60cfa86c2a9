"""Writing a built dataset as one Parquet file and decoding its PNG column: shared by every dataset builder."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from llmgan.io.storage import Storage


def write_dataset(table: pa.Table, url: str, storage: Storage | None = None) -> None:
    """Write a table as one Parquet file (local path or s3:// URL), atomically."""
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    (storage or Storage()).write_bytes(url, buf.getvalue())


def decode_images(images: Sequence[bytes]) -> np.ndarray:
    """PNG bytes -> uint8 (N, H, W, 3); for tests and quick looks at a generated table."""
    return np.stack([np.asarray(Image.open(io.BytesIO(b)).convert("RGB")) for b in images])
