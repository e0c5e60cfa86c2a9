"""The texts a matcher trains on: each row's caption and, where the data has one, its short prompt (what a user
types: "red star"), drawn per row and step; which texts are true of which images; near-miss prompts for calibration.

A short prompt states only some of a row's labels, so "star" is true of every star in a batch. What a prompt
states is read from the data itself, never from a word list: a label column is stated by a prompt text when every
row carrying that text agrees on it. InfoNCE then never treats a text that is true of an image as its negative,
and a calibration negative is a prompt that contradicts the image on a column it surely states.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from llmgan.errors import StorageError, UserError
from llmgan.io.storage import Storage

if TYPE_CHECKING:
    from llmgan.data.readers import CaptionedImages

PROMPT_COLUMN = "short_prompt"
# a column counts as surely stated when agreement by chance would be rarer than this; 0.05 let 1 in 80 shapes
# calibration negatives be true of their image (thousands of prompt texts: chance agreements add up), 0.01 none
SURE_CHANCE = 0.01


def read_short_prompts(data: str, captions: Sequence[str], storage: Storage,
                       column: str = PROMPT_COLUMN) -> list[str | None] | None:
    """Each loaded row's short prompt (None where empty), read from the Parquet dataset's `column`; None when the
    data is not Parquet or has no such column.

    Rows the reader skipped (corrupt images, no caption) are stepped over by matching captions in order.
    """
    import pyarrow.parquet as pq

    from llmgan.data.readers import _detect

    try:
        fmt, files = _detect(data, storage)
    except (StorageError, UserError):
        return None
    if fmt != "parquet":
        return None
    rows: list[tuple[str, str | None]] = []
    for url in files:
        pf = pq.ParquetFile(io.BytesIO(storage.read_bytes(url)))
        if column not in pf.schema_arrow.names or "caption" not in pf.schema_arrow.names:
            return None
        table = pf.read(columns=["caption", column])
        for cap, prompt in zip(table["caption"].to_pylist(), table[column].to_pylist()):
            text = prompt.strip() if isinstance(prompt, str) else ""
            rows.append(((cap or "").strip() if isinstance(cap, str) else "", text or None))
    out: list[str | None] = []
    k = 0
    for caption in captions:
        while k < len(rows) and rows[k][0] != caption:
            k += 1
        if k == len(rows):  # not the rows the reader loaded: no prompts rather than misaligned ones
            return None
        out.append(rows[k][1])
        k += 1
    return out


def load_training_texts(data: str, ds: CaptionedImages, emb: np.ndarray, share: float, text_encoder: str | None,
                        storage: Storage, cache_dir: str | None = None) -> TrainingTexts:
    """The rows' captions and (share > 0 and the data has them) short prompts, embedded through the dataset's
    embedding cache in `cache_dir` (keyed by text, so prompts sit beside the captions)."""
    prompts = read_short_prompts(data, ds.captions, storage) if share > 0 else None
    if not prompts or not any(p is not None for p in prompts):
        return TrainingTexts.build(ds.captions, ds.labels, emb)
    from llmgan.text.encoder import TextEncoder, embed_dataset_captions, embedding_cache_url

    have = [p for p in prompts if p is not None]
    encoder = TextEncoder(model=text_encoder)
    vecs = embed_dataset_captions(have, encoder, embedding_cache_url(data, encoder.identity, cache_dir), storage)
    pr_emb = np.zeros_like(emb, dtype=np.float32)
    pr_emb[[i for i, p in enumerate(prompts) if p is not None]] = vecs
    return TrainingTexts.build(ds.captions, ds.labels, emb, prompts, pr_emb)


def check_prompt_share(value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise UserError(f"--prompt-share must be a number in [0, 1], got {value!r}")
    return float(value)


@dataclass
class TrainingTexts:
    """Per row: label ids `lab` (N, C); its caption's embedding and what the caption states (`cap_stated`, -1: not
    stated); its prompt's embedding (`has_prompt` rows), the columns the prompt may state (`pr_stated`: every row
    carrying the text agrees) and the ones it surely states (`pr_sure`: enough rows agree to rule out chance)."""

    lab: np.ndarray
    cap_emb: np.ndarray
    cap_stated: np.ndarray
    pr_emb: np.ndarray
    pr_stated: np.ndarray
    pr_sure: np.ndarray
    has_prompt: np.ndarray
    prompts: list[str | None]

    @classmethod
    def build(cls, captions: Sequence[str], labels: dict[str, list[str]], cap_emb: np.ndarray,
              prompts: Sequence[str | None] | None = None, pr_emb: np.ndarray | None = None) -> TrainingTexts:
        """Label columns when every row has them (a caption states them all), else the texts themselves."""
        n = len(captions)
        prompts = list(prompts) if prompts is not None else [None] * n
        has = np.array([p is not None for p in prompts], dtype=bool)
        cols = sorted(c for c in labels if len(labels[c]) == n and all(labels[c]))
        if cols:
            lab = np.stack([_ids(labels[c]) for c in cols], axis=1)
            cap_stated = lab.copy()
            pr_stated, pr_sure = _prompt_statements(lab, prompts)
        else:  # no labels: a text is true of the rows that carry that very text
            cap_ids = _ids(list(captions))
            pr_ids = np.where(has, _ids([p or "" for p in prompts]), -2)
            lab = np.stack([cap_ids, pr_ids], axis=1)
            cap_stated = np.stack([cap_ids, np.full(n, -1)], axis=1)
            pr_stated = np.stack([np.full(n, -1), pr_ids], axis=1)
            pr_sure = np.full_like(pr_stated, -1)  # another prompt text may be true as well: no sure negatives
        dim = cap_emb.shape[1]
        pr = np.zeros((n, dim), np.float32) if pr_emb is None else np.asarray(pr_emb, np.float32)
        return cls(lab, np.asarray(cap_emb, np.float32), cap_stated, pr, pr_stated, pr_sure, has, prompts)

    @property
    def n_prompts(self) -> int:
        return int(self.has_prompt.sum())

    def draw(self, rows: np.ndarray, share: float, rng: np.random.Generator | None) -> tuple[np.ndarray, np.ndarray]:
        """(embeddings (B, E), stated (B, C)) of each row's text: its short prompt with probability `share` where it
        has one, else its caption. No draw is taken when share is 0 (a captions-only run stays as it was)."""
        use = np.zeros(len(rows), dtype=bool)
        if share > 0 and rng is not None:
            use = (rng.random(len(rows)) < share) & self.has_prompt[rows]
        emb = np.where(use[:, None], self.pr_emb[rows], self.cap_emb[rows])
        stated = np.where(use[:, None], self.pr_stated[rows], self.cap_stated[rows])
        return emb, stated

    def true_of(self, rows: np.ndarray, stated: np.ndarray) -> np.ndarray:
        """(len(rows), M) bool: text m (what it states) is true of image row r."""
        return true_of(self.lab[rows], stated)


def true_of(lab: np.ndarray, stated: np.ndarray) -> np.ndarray:
    """(N, M) bool: every column text m states agrees with image n's labels."""
    return ((stated[None] < 0) | (stated[None] == lab[:, None])).all(-1)


def _ids(values: Sequence[str]) -> np.ndarray:
    index = {v: i for i, v in enumerate(dict.fromkeys(values))}
    return np.array([index[v] for v in values], dtype=np.int64)


def _prompt_statements(lab: np.ndarray, prompts: Sequence[str | None]) -> tuple[np.ndarray, np.ndarray]:
    """(may state, surely states) per row's prompt: a column's value where all rows with that prompt text agree;
    "surely" where there are enough such rows that agreement by chance (1/k per row, k the column's number of
    values) is below SURE_CHANCE."""
    n, c = lab.shape
    stated, sure = np.full((n, c), -1), np.full((n, c), -1)
    k = np.array([len(np.unique(lab[:, j])) for j in range(c)])
    need = np.array([1 + math.ceil(math.log(SURE_CHANCE) / math.log(1 / v)) if v > 1 else n + 1 for v in k])
    groups: dict[str, list[int]] = {}
    for i, p in enumerate(prompts):
        if p is not None:
            groups.setdefault(p, []).append(i)
    for rows in groups.values():
        sub = lab[rows]
        agree = (sub == sub[0]).all(0)
        value = np.where(agree, sub[0], -1)
        stated[rows] = value
        sure[rows] = np.where(agree & (len(rows) >= need), sub[0], -1)
    return stated, sure


def prompt_negatives(texts: TrainingTexts, rows: np.ndarray, seed: int, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(rows that got one, the row whose prompt is its near miss): for each image row with a prompt, one of the k
    prompt texts nearest its own prompt (text embedding) that surely contradicts the image, so a negative is a
    prompt that differs in a stated attribute, never a paraphrase or a prompt that leaves that attribute open.

    Candidates are the distinct prompt texts of the whole dataset (text only: no image outside `rows` is used).
    """
    from llmgan.io.seeds import derive_seed

    rows = np.asarray(rows)[texts.has_prompt[np.asarray(rows)]]
    cand = np.flatnonzero(texts.has_prompt & (texts.pr_sure >= 0).any(1))
    if not len(rows) or not len(cand):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    _, first = np.unique([texts.prompts[i] for i in cand], return_index=True)
    cand = cand[np.sort(first)]
    sims = texts.pr_emb[rows] @ texts.pr_emb[cand].T
    sims[true_of(texts.lab[rows], texts.pr_sure[cand])] = -np.inf  # no sure contradiction: may be true
    k = max(1, min(k, len(cand)))
    top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    rng = np.random.default_rng(derive_seed("matcher-prompt-negatives", seed))
    pick = top[np.arange(len(rows)), rng.integers(0, k, len(rows))]
    ok = np.isfinite(sims[np.arange(len(rows)), pick])
    return rows[ok], cand[pick[ok]]
