"""Consistency feedback in the generator stage: score every image against its caption and the user's prompt,
redraw the ones below `--min-consistency` with new seeds, keep the best draw; and the per-shard / per-job
figures that describe it (score histogram, share below the threshold, draws spent).

Redraw seeds derive from the image's own seed and the attempt number only, and each shard is scored and redrawn
in the same fixed batches on every run, so a rerun or a resumed run keeps exactly the same images.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from llmgan.eval.consistency import Consistency, ConsistencyScorer
from llmgan.io.seeds import derive_seed

HIST_BINS = 10  # score histogram over [0, 1] in the stats: bin i holds scores in [i/10, (i+1)/10)


def redraw_seed(seed: int, attempt: int) -> int:
    """The seed of draw `attempt` (1 = the first redraw) of an image whose first draw used `seed`."""
    return derive_seed("redraw", seed, attempt)


@dataclass
class Draws:
    """One batch after feedback: the kept image per item, with its verdict, its seed and the draws spent."""

    images: np.ndarray  # uint8 (N, H, W, 3)
    scores: np.ndarray  # D's match score of the kept draw (NaN without --best-of)
    verdicts: list[Consistency]
    first_scores: list[float]  # consistency of the first draw
    seeds: list[int]  # seed of the kept draw
    attempts: list[int]  # draws made for the item (1 = no redraw)
    drawn_from: list[str | None]  # the text the kept draw was conditioned on, when not the caption


class Feedback:
    """Scores a batch and redraws what scores below `threshold`, up to `max_attempts` draws per image.

    `draw(emb, seeds)` is the generator stage's own sampler (GAN + best-of); the scorer sees the uint8 images,
    the expanded captions and the user's prompts (the prompt wins where they disagree). Of all draws of an image
    the one with the highest score is kept (the earliest on a tie), so feedback never makes an image worse.

    `recaption(caption, prompt)`, when the domain has one, gives the text a redraw is conditioned on: the same
    attributes in the plainest wording the GAN was trained on (None: redraw from the caption itself); `embed`
    turns those texts into the GAN's caption embeddings.
    """

    def __init__(self, scorer: ConsistencyScorer, threshold: float, max_attempts: int, share_emb: bool = True,
                 recaption: Callable[[str, str], str | None] | None = None,
                 embed: Callable[[list[str]], np.ndarray] | None = None) -> None:
        self.scorer, self.threshold, self.max_attempts = scorer, threshold, max_attempts
        self.share_emb = share_emb  # False: the scorer embeds texts with its own encoder
        self.recaption, self.embed = (recaption, embed) if recaption is not None and embed is not None else (None, None)

    def __call__(self, draw: Any, emb: np.ndarray, seeds: list[int], captions: list[str], prompts: list[str],
                 images: np.ndarray, scores: np.ndarray) -> Draws:
        emb = np.asarray(emb)
        images, scores = images.copy(), np.array(scores, dtype=np.float32)
        verdicts = self.scorer.score(images, captions, prompts, emb if self.share_emb else None)
        out = Draws(images, scores, verdicts, [v.score for v in verdicts], list(seeds), [1] * len(seeds),
                    [None] * len(seeds))
        texts: dict[int, str | None] = {}  # item -> its redraw text (None: the caption)
        redraw_emb: dict[int, np.ndarray] = {}
        for attempt in range(1, self.max_attempts):
            redo = [i for i, v in enumerate(out.verdicts) if v.score < self.threshold]
            if not redo:
                break
            self._redraw_texts(redo, captions, prompts, emb, texts, redraw_emb)
            new_seeds = [redraw_seed(seeds[i], attempt) for i in redo]
            new_images, new_scores = draw(np.stack([redraw_emb[i] for i in redo]), new_seeds)
            new_verdicts = self.scorer.score(new_images, [captions[i] for i in redo], [prompts[i] for i in redo],
                                             emb[redo] if self.share_emb else None)
            for k, i in enumerate(redo):
                out.attempts[i] = attempt + 1
                if new_verdicts[k].score > out.verdicts[i].score:
                    out.images[i], out.scores[i] = new_images[k], new_scores[k]
                    out.verdicts[i], out.seeds[i], out.drawn_from[i] = new_verdicts[k], new_seeds[k], texts[i]
        return out

    def _redraw_texts(self, redo: list[int], captions: list[str], prompts: list[str], emb: np.ndarray,
                      texts: dict[int, str | None], redraw_emb: dict[int, np.ndarray]) -> None:
        """Fill in the redraw text and embedding of every item in `redo` that has none yet."""
        new = [i for i in redo if i not in redraw_emb]
        for i in new:
            text = self.recaption(captions[i], prompts[i]) if self.recaption is not None else None
            texts[i] = text if text and text != captions[i] else None
        fresh = [i for i in new if texts[i] is not None]
        if fresh:
            assert self.embed is not None
            for i, e in zip(fresh, self.embed([texts[i] for i in fresh])):  # type: ignore[misc]
                redraw_emb[i] = np.asarray(e)
        for i in new:
            redraw_emb.setdefault(i, emb[i])


def shard_consistency(metas: list[dict[str, Any]], scorer: str, threshold: float, max_attempts: int) -> dict[str, Any]:
    """The per-shard figures, from the images' metadata (`consistency`, `first_consistency`, `attempts`). Images
    whose prompt held words the domain did not understand have no certified score: they are counted as
    `unverified` and left out of the score figures."""
    scored = [m for m in metas if m.get("consistency") is not None]
    final = np.array([m["consistency"] for m in scored], dtype=np.float64)
    first = np.array([m["first_consistency"] for m in scored], dtype=np.float64)
    attempts = np.array([m["attempts"] for m in metas], dtype=np.int64)
    hist = np.histogram(np.clip(final, 0, 1 - 1e-9), bins=HIST_BINS, range=(0.0, 1.0))[0] if len(final) else \
        np.zeros(HIST_BINS, np.int64)
    return {
        "scorer": scorer,
        "threshold": threshold,
        "max_attempts": max_attempts,
        "scored": int(len(final)),
        "unverified": len(metas) - len(scored),
        "score_sum": round(float(final.sum()), 6),
        "first_score_sum": round(float(first.sum()), 6),
        "histogram": [int(c) for c in hist],
        "below_threshold": int((final < threshold).sum()),
        "below_threshold_first_draw": int((first < threshold).sum()),
        "redrawn": int((attempts > 1).sum()),
        "draws": int(attempts.sum()),
        "images": len(metas),
    }


def merge_consistency(parts: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Job totals of the shards' figures: counts and histograms summed, means and shares over every scored image."""
    parts = [p for p in parts if p]
    if not parts:
        return None
    keys = ("scored", "unverified", "score_sum", "first_score_sum", "below_threshold", "below_threshold_first_draw",
            "redrawn", "draws")
    total: dict[str, Any] = {k: sum(p.get(k, 0) for p in parts) for k in keys}
    total["histogram"] = [sum(col) for col in zip(*(p["histogram"] for p in parts))]
    n = total["scored"]
    images = sum(p.get("images", p["scored"]) for p in parts)
    total.update(
        scorer=parts[0]["scorer"], threshold=parts[0]["threshold"], max_attempts=parts[0]["max_attempts"],
        mean=round(total["score_sum"] / n, 4) if n else None,
        mean_first_draw=round(total["first_score_sum"] / n, 4) if n else None,
        share_below_threshold=round(total["below_threshold"] / n, 4) if n else None,
        share_below_threshold_first_draw=round(total["below_threshold_first_draw"] / n, 4) if n else None,
        extra_draws_per_image=round((total["draws"] - images) / images, 4) if images else None,
    )
    return total


NOT_UNDERSTOOD = "not understood"  # the reason of a row rejected by --on-unsupported reject
TOP_WORDS = 50  # words kept per shard and per job in the counts


def shard_understanding(metas: list[dict[str, Any]]) -> dict[str, Any]:
    """How many images (and prompts) asked for words the domain did not understand, and which words, per image."""
    words: dict[str, int] = {}
    prompts: set[Any] = set()
    images = 0
    for m in metas:
        missing = m.get("not_understood") or []
        if missing:
            images += 1
            prompts.add(m.get("prompt_id"))
            for w in missing:
                words[w] = words.get(w, 0) + 1
    top = dict(sorted(words.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_WORDS])
    return {"images_not_understood": images, "prompts_not_understood": len(prompts), "words": top}


def merge_understanding(parts: list[dict[str, Any] | None]) -> dict[str, Any]:
    """Job totals of the shards' understanding figures."""
    words: dict[str, int] = {}
    total = {"images_not_understood": 0, "prompts_not_understood": 0}
    for p in parts:
        if not p:
            continue
        for k in total:
            total[k] += p.get(k, 0)
        for w, c in p.get("words", {}).items():
            words[w] = words.get(w, 0) + c
    return {**total, "words": dict(sorted(words.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_WORDS])}


def describe_understanding(u: dict[str, Any] | None) -> str | None:
    """One summary line: "3 prompts asked for things this model cannot draw: dragon x12, heart x9", or None."""
    if not u or not u.get("prompts_not_understood"):
        return None
    words = ", ".join(f"{w} \u00d7{c}" for w, c in list(u["words"].items())[:8])
    n = u["prompts_not_understood"]
    return (f"{n} prompt{'s' if n != 1 else ''} asked for things this model did not understand ({words}); "
            f"their {u['images_not_understood']} images carry no consistency claim")
