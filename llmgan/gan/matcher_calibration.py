"""The matcher's calibration: Platt scaling (`fit_platt`) fitted on held-out real images against near-miss texts
(`hard_negatives` for captions, llmgan.gan.matcher_texts.prompt_negatives for short prompts), ROC AUC and the
expected calibration error it is judged by."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from llmgan.io.seeds import derive_seed

if TYPE_CHECKING:
    from llmgan.gan.matcher import Matcher


def fit_platt(pos: np.ndarray, neg: np.ndarray, iters: int = 100) -> tuple[float, float]:
    """(a, b) of p = sigmoid(a * cos + b): Newton's method with backtracking on the log loss, with Platt's
    smoothed targets (so separable data gives a finite slope)."""
    x = np.concatenate([pos, neg]).astype(np.float64)
    n1, n0 = len(pos), len(neg)
    y = np.concatenate([np.full(n1, (n1 + 1) / (n1 + 2)), np.full(n0, 1 / (n0 + 2))])

    def loss(a: float, b: float) -> float:  # stable log loss: log(1 + e^z) - y z
        z = a * x + b
        return float((np.logaddexp(0, z) - y * z).sum())

    a, b = 0.0, float(np.log((n1 + 1) / (n0 + 1)))
    current = loss(a, b)
    for _ in range(iters):
        p = 0.5 * (1 + np.tanh(0.5 * (a * x + b)))  # sigmoid without overflow
        g = np.array([((p - y) * x).sum(), (p - y).sum()])
        w = p * (1 - p)
        h = np.array([[(w * x * x).sum(), (w * x).sum()], [(w * x).sum(), w.sum()]]) + 1e-9 * np.eye(2)
        step = np.linalg.solve(h, g)
        t = 1.0
        while t > 1e-6 and loss(a - t * step[0], b - t * step[1]) > current:
            t /= 2
        a, b = a - t * step[0], b - t * step[1]
        new = loss(a, b)
        if current - new < 1e-10 * max(1.0, abs(current)):
            break
        current = new
    return float(a), float(b)


def roc_auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """P(score of a random positive > a random negative), ties count half (Mann-Whitney U)."""
    scores = np.concatenate([pos, neg])
    order = scores.argsort(kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    # average ranks over ties
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    avg = first + (counts - 1) / 2 + 1
    ranks[order] = np.repeat(avg, counts)
    n1, n0 = len(pos), len(neg)
    return float((ranks[:n1].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def hard_negatives(emb: np.ndarray, keys: list[Any], seed: int, k: int = 1) -> np.ndarray:
    """For each row, the index of another row whose caption is among its k nearest *different* ones (k = 1: the
    nearest caption that is not a paraphrase; on shapes it calibrated better than k = 3 or 8 against
    one-attribute changes).

    Rows with equal `keys` (same labels when the data has them, else the same caption) are never picked, so
    paraphrases of the right caption do not count as mismatches. These near misses (often one attribute
    changed) are what calibration must separate, not random captions that differ in everything.
    """
    sims = emb @ emb.T
    key_ids = {key: i for i, key in enumerate(dict.fromkeys(keys))}
    kid = np.array([key_ids[key] for key in keys])
    sims[kid[:, None] == kid[None, :]] = -np.inf
    rng = np.random.default_rng(derive_seed("matcher-negatives", seed))
    k = max(1, min(k, len(emb) - 1))
    top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    pick = top[np.arange(len(emb)), rng.integers(0, k, len(emb))]
    return pick




def evaluate_pairs(matcher: Matcher, images: np.ndarray, emb: np.ndarray, keys: list[Any],
                   seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(cosines of the right captions, cosines of hard-negative captions) for held-out images."""
    neg = hard_negatives(emb, keys, seed)
    return matcher.cosine(images, emb), matcher.cosine(images, emb[neg])


def calibration_error(p_pos: np.ndarray, p_neg: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error of match probabilities (positives true, negatives false) over equal-width bins."""
    p = np.concatenate([p_pos, p_neg])
    y = np.concatenate([np.ones(len(p_pos)), np.zeros(len(p_neg))])
    idx = np.clip((p * bins).astype(int), 0, bins - 1)
    return float(sum(abs(p[idx == b].mean() - y[idx == b].mean()) * (idx == b).mean()
                     for b in range(bins) if (idx == b).any()))


def calibrate(matcher: Matcher, images: np.ndarray, emb: np.ndarray, keys: list[Any], seed: int,
              prompts: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> dict[str, float]:
    """Fit the matcher's Platt calibration on held-out real images scored against their own caption and a near-miss
    caption (`hard_negatives`) and, given `prompts` = (image rows, right prompt embeddings, near-miss prompt
    embeddings), against short prompts too: one fit on the mix (`calibration`) and one per kind of text
    (`calibration_by_text`). Returns the quality per kind under the mixed fit, and the ECE under its own fit."""
    pos, neg = evaluate_pairs(matcher, images, emb, keys, seed)
    ppos = pneg = np.zeros(0, np.float32)
    if prompts is not None and len(prompts[0]):
        rows, right, wrong = prompts
        ppos, pneg = matcher.cosine(images[rows], right), matcher.cosine(images[rows], wrong)
    matcher.calibration = fit_platt(np.concatenate([pos, ppos]), np.concatenate([neg, pneg]))
    matcher.calibration_by_text = {"caption": fit_platt(pos, neg), "prompt": fit_platt(ppos, pneg)} if len(ppos) else {}

    def figures(pos: np.ndarray, neg: np.ndarray, kind: str, suffix: str = "") -> dict[str, float]:
        p_pos, p_neg = matcher.calibrate(pos), matcher.calibrate(neg)
        acc = float(((p_pos >= 0.5).sum() + (p_neg < 0.5).sum()) / (len(pos) + len(neg)))
        out = {f"auc_hard_negative{suffix}": round(roc_auc(pos, neg), 4), f"accuracy_at_0.5{suffix}": round(acc, 4),
               f"ece{suffix}": round(calibration_error(p_pos, p_neg), 4)}
        if matcher.calibration_by_text:
            own = calibration_error(matcher.calibrate(pos, kind), matcher.calibrate(neg, kind))
            out[f"ece_own_calibration{suffix}"] = round(own, 4)
        return out

    quality = figures(pos, neg, "caption")
    if len(ppos):
        quality = {**quality, **figures(ppos, pneg, "prompt", "_prompts"), "prompt_pairs": int(len(ppos))}
    return quality
