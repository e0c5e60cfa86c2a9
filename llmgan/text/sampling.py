"""One token per row from the caption LM's logits and the row's own uniform number (inverse-CDF sampling).

`sample_tokens` is the definition. `sample_tokens_fast` gives the same tokens bit for bit with less work on a CPU,
where sorting the whole vocabulary for top-p was most of a decoding step at large batches (1024 rows x 500
tokens of float64: about as long as the model's forward). It finds each row's top-p threshold from its few
largest probabilities, and sorts only the rows whose nucleus is wider (see `_nucleus_threshold`).
"""

from __future__ import annotations

import torch

# Tiers of the top-p search: most rows' nucleus is within a few tokens of a trained LM (shipped shapes LM at
# temperature 0.9, top-p 0.95: 82 % of rows within 4, 99 % within 16); the rest are sorted whole.
_TIERS = (4, 16)
# A row's nucleus ends within the top k when their exact prefix sum exceeds top_p by more than the rounding of
# `cumsum - p` (a few ulps of 1.0); then every later token's mass-before is >= top_p as well.
_MARGIN = 1e-12


def sample_tokens(logits: torch.Tensor, uniforms: torch.Tensor, temperature: float, top_p: float) -> torch.Tensor:
    """One token per row by inverse-CDF sampling with the row's own uniform number.

    The CDF runs in vocabulary order (not sorted by probability), so a tiny numeric difference in the logits
    (batched vs. single-row forward) moves the choice only when the uniform lies within that difference of
    a boundary; sorting would let near-tied tokens swap places and change the outcome far more often.
    """
    if temperature == 0.0:
        return logits.argmax(-1)
    probs = torch.softmax(logits.double() / temperature, dim=-1)
    if top_p < 1.0:
        # keep the smallest set of most likely tokens whose mass reaches top_p (always at least one)
        sorted_p, _ = probs.sort(dim=-1, descending=True)
        before = sorted_p.cumsum(-1) - sorted_p
        n_keep = (before < top_p).sum(-1, keepdim=True).clamp(min=1)
        threshold = sorted_p.gather(-1, n_keep - 1)
        probs = torch.where(probs >= threshold, probs, torch.zeros_like(probs))
    return _inverse_cdf(probs, uniforms)


def _inverse_cdf(probs: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
    cdf = probs.cumsum(-1)
    target = uniforms.double().unsqueeze(-1) * cdf[:, -1:]
    choice = torch.searchsorted(cdf, target, right=True).squeeze(-1)
    return choice.clamp(max=probs.shape[-1] - 1)


def _nucleus_threshold(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """[B, 1]: each row's top-p threshold exactly as `sample_tokens` computes it (the probability of the last
    token kept), from the row's k largest probabilities where they settle it, else from the sorted row.

    Exact because `topk` returns the same leading values as a descending sort (ties are equal values), CPU
    `cumsum` accumulates in order (so the first k prefix sums are the same bits), and once the top k's sum
    exceeds top_p by _MARGIN no later token can be counted as kept.
    """
    rows, vocab = probs.shape
    threshold = torch.empty(rows, 1, dtype=probs.dtype)
    todo: torch.Tensor | None = None  # None: every row
    for k in (*(t for t in _TIERS if t < vocab), vocab):
        sub = probs if todo is None else probs[todo]
        top = sub.sort(dim=-1, descending=True).values if k == vocab else sub.topk(k, dim=-1).values
        mass = top.cumsum(-1)
        n_keep = ((mass - top) < top_p).sum(-1, keepdim=True).clamp(min=1)
        found = top.gather(-1, n_keep - 1)
        settled = mass[:, -1] >= top_p + _MARGIN if k < vocab else torch.ones(len(sub), dtype=torch.bool)
        index = torch.arange(rows) if todo is None else todo
        threshold[index[settled]] = found[settled]
        todo = index[~settled]
        if todo.numel() == 0:
            break
    return threshold


def sample_tokens_fast(logits: torch.Tensor, uniforms: torch.Tensor, temperature: float, top_p: float
                       ) -> torch.Tensor:
    """`sample_tokens`, the same tokens bit for bit; on a CPU without sorting every row (elsewhere the same
    code: a GPU sorts a batch in one kernel, and its parallel `cumsum` is not known to keep prefix sums)."""
    if temperature == 0.0 or top_p >= 1.0 or logits.device.type != "cpu":
        return sample_tokens(logits, uniforms, temperature, top_p)
    probs = torch.softmax(logits.double() / temperature, dim=-1)
    threshold = _nucleus_threshold(probs, top_p)
    probs = torch.where(probs >= threshold, probs, torch.zeros_like(probs))
    return _inverse_cdf(probs, uniforms)
