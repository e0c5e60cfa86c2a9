"""Training health: the training loop watches its own samples, D's margin and the matcher, and says early when a
run is going wrong (rank 0, at metrics rows after a warm-up).

Checks (one `health_<check>` 0/1 flag per metrics row once the check has run, beside the statistic it is decided on):

  blank     the EMA generator's sample-grid images are nearly flat: each image's own pixel spread is a small
            fraction of the real images' (`health_blank_ratio`); e.g. all-white grids
  collapse  the sample-grid images are nearly identical across captions and seeds: their per-pixel spread across the
            grid is a small fraction of the real images' (`health_collapse_ratio`); mode collapse
  d_winning D tells reals from fakes almost perfectly by a wide score margin for several rows in a row
            (`d_acc`, `d_real_score`, `d_fake_score` from the training step; `health_d_rows` the streak)
  matcher_memorising  the matcher trained alongside fits its training pairs far better than its held-out rows
            (`matcher_fit_loss`, `matcher_heldout_loss`, `health_matcher_ratio`): it memorises its pairs

Thresholds are relative where they can be (the real images' own spread, the matcher's own held-out loss), so they hold
for any data. A finding is logged once, as a WARNING with what it means and what usually fixes it, when it appears
(again if it recovers and comes back); `findings(rows)` rebuilds the list from metrics rows, for both runtimes'
summaries. Everything here is pure (numpy on uint8 images and metrics dicts): no RNG, no collectives.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

REAL_REFERENCE = 64  # real images whose spread the sample grid is compared with


@dataclass(frozen=True)
class HealthThresholds:
    """When a check fires. `warmup`: steps before the first check (a fresh G draws nearly one image for every input)."""

    warmup: int = 200
    blank_ratio: float = 0.15  # sample images' own pixel std < 15 % of the real images'
    collapse_ratio: float = 0.15  # per-pixel std across the grid < 15 % of the real images'
    d_acc: float = 0.98  # D's accuracy on reals and fakes (sign of uncond + cond) at least this...
    d_gap: float = 4.0  # ... and mean real score - mean fake score at least this (both hinge margins, 2 + 2)...
    d_rows: int = 3  # ... in this many metrics rows in a row
    matcher_fit_loss: float = 1.0  # matcher loss on training pairs below this...
    matcher_ratio: float = 3.0  # ... and held-out loss at least this many times it...
    matcher_gap: float = 1.0  # ... and at least this much above it (a few held-out rows are noisy at low losses)
    min_real_std: float = 2.0  # (0-255 scale) real images flatter than this: the image checks say nothing


@dataclass(frozen=True)
class Check:
    name: str
    title: str
    meaning: str
    fix: str
    value_key: str  # the row's statistic the finding reports


_AUGMENT_FIX = ("augmentation on (--augment translation,cutout), a lower D learning rate (--lr-d, default 4e-4: "
                "try 2e-4 or 1e-4), a larger R1 penalty (--r1-gamma, default 0.1: try 1-10); "
                "then restart from scratch or from a checkpoint before the problem (the EMA generator recovers slowly)")

CHECKS: dict[str, Check] = {c.name: c for c in (
    Check("blank", "near-constant samples",
          "the EMA generator's sample images are nearly flat (each image's pixel spread is {value:.0%} of the real "
          "images'): G has collapsed to blank output and is not learning the data",
          "usually D has won (see d_winning): " + _AUGMENT_FIX + "; check that the data decodes as expected",
          "health_blank_ratio"),
    Check("collapse", "mode collapse",
          "the sample images are nearly identical across captions and seeds (their spread is {value:.0%} of the "
          "real images'): G ignores caption and noise",
          _AUGMENT_FIX + "; a larger contrastive_weight ties images to captions", "health_collapse_ratio"),
    Check("d_winning", "discriminator winning by a wide margin",
          "D separates reals from fakes almost perfectly (accuracy {value:.2f}, real-fake score gap above the hinge "
          "margins) for several rows: G's gradient carries little information and samples stop improving",
          _AUGMENT_FIX, "d_acc"),
    Check("matcher_memorising", "matcher memorising its training pairs",
          "the matcher's loss on its held-out rows is {value:.1f}x its loss on training pairs: it memorises its pairs "
          "instead of learning image-caption agreement, so its consistency scores of new images are unreliable",
          "more data or stronger augmentation, fewer matcher steps or a smaller matcher (train one separately with "
          "`llmgan train-matcher` and watch its validation AUC), or --no-matcher and a classifier scorer where "
          "the domain has one", "health_matcher_ratio"),
)}


# ---- statistics ---------------------------------------------------------------------------------------


def image_stats(images: np.ndarray) -> dict[str, float]:
    """uint8 (N, S, S, C) -> spread on the 0-255 scale: `own_std` each image's std over its pixels, per channel,
    averaged (0 for flat images of any colour), `batch_std` the mean over pixels and channels of their std across
    the images (0 when all are identical; the root mean squared pairwise distance is sqrt(2) times it)."""
    x = np.asarray(images, dtype=np.float32)
    if len(x) == 0:
        return {"own_std": float("nan"), "batch_std": float("nan")}
    x = x.reshape(len(x), -1, x.shape[-1])  # (N, pixels, C)
    return {"own_std": float(x.std(axis=1).mean()), "batch_std": float(x.std(axis=0).mean()) if len(x) > 1 else 0.0}


def real_reference(images: np.ndarray, seed: int, k: int = REAL_REFERENCE) -> dict[str, float]:
    """image_stats of k real images drawn with `seed` (a pure function of images and seed)."""
    rows = np.random.default_rng([seed, 13]).choice(len(images), size=min(k, len(images)), replace=False)
    return image_stats(np.asarray(images)[np.sort(rows)])


def sample_ratios(samples: np.ndarray, real: Mapping[str, float], th: HealthThresholds = HealthThresholds()
                  ) -> dict[str, float]:
    """The sample images' spread relative to the real images' (`health_blank_ratio`, `health_collapse_ratio`) with
    their flags; a ratio is left out when the real images themselves are flat (nothing to compare with)."""
    s, out = image_stats(samples), {}
    for check, stat, limit in (("blank", "own_std", th.blank_ratio), ("collapse", "batch_std", th.collapse_ratio)):
        if real[stat] >= th.min_real_std:
            ratio = s[stat] / real[stat]
            out[f"health_{check}_ratio"] = round(ratio, 4)
            out[f"health_{check}"] = float(ratio < limit)
    return out


def d_wide_margin(row: Mapping[str, Any], th: HealthThresholds = HealthThresholds()) -> bool | None:
    """Whether one row's D metrics show D winning by a wide margin; None when the row lacks them."""
    if not all(k in row for k in ("d_acc", "d_real_score", "d_fake_score")):
        return None
    return bool(row["d_acc"] >= th.d_acc and row["d_real_score"] - row["d_fake_score"] >= th.d_gap)


def matcher_ratio(fit_loss: float, heldout_loss: float, th: HealthThresholds = HealthThresholds()
                  ) -> dict[str, float]:
    """Held-out / training-pair loss of the matcher (measured the same way) and the memorising flag."""
    if not (np.isfinite(fit_loss) and np.isfinite(heldout_loss)):
        return {}
    ratio = heldout_loss / max(fit_loss, 1e-6)
    memorising = (fit_loss < th.matcher_fit_loss and ratio >= th.matcher_ratio
                  and heldout_loss - fit_loss >= th.matcher_gap)
    return {"health_matcher_ratio": round(ratio, 3), "health_matcher_memorising": float(memorising)}


# ---- the monitor --------------------------------------------------------------------------------------


class HealthMonitor:
    """Rank 0's watcher: `check(row, samples)` adds the health keys to a metrics row and returns the checks that
    fired anew (`warn` logs them). `real` is `real_reference` of the training images; `prime(rows)` takes a resumed
    run's earlier rows, so a problem already reported is not reported again and D's streak continues."""

    def __init__(self, real: Mapping[str, float], thresholds: HealthThresholds = HealthThresholds()) -> None:
        self.real, self.th = dict(real), thresholds
        self.active: set[str] = set()
        self.d_streak = 0

    def due(self, step: int) -> bool:
        return step >= self.th.warmup

    def prime(self, rows: Iterable[Mapping[str, Any]]) -> None:
        for row in rows:
            onsets(self.active, row)
            if "health_d_rows" in row:
                self.d_streak = int(row["health_d_rows"])

    def check(self, row: dict[str, Any], samples: np.ndarray | None = None) -> list[str]:
        """Add health_* keys to `row` (in place; nothing before the warm-up); returns the checks that fired anew."""
        if not self.due(int(row["step"])):
            return []
        if samples is not None:
            row.update(sample_ratios(samples, self.real, self.th))
        if "matcher_fit_loss" in row and "matcher_heldout_loss" in row:
            row.update(matcher_ratio(row["matcher_fit_loss"], row["matcher_heldout_loss"], self.th))
        wide = d_wide_margin(row, self.th)
        if wide is not None:
            self.d_streak = self.d_streak + 1 if wide else 0
            row.update(health_d_rows=self.d_streak, health_d_winning=float(self.d_streak >= self.th.d_rows))
        return onsets(self.active, row)

    @staticmethod
    def warn(names: Iterable[str], row: Mapping[str, Any]) -> None:
        for name in names:
            log.warning("%s", warning_line(name, row))


def onsets(active: set[str], row: Mapping[str, Any]) -> list[str]:
    """The checks whose flag is up in `row` and was not in `active` (updated: raised flags join, lowered leave)."""
    new = []
    for name in CHECKS:
        flag = row.get(f"health_{name}")
        if flag is None:
            continue
        if flag and name not in active:
            active.add(name)
            new.append(name)
        elif not flag:
            active.discard(name)
    return new


def warning_line(name: str, row: Mapping[str, Any]) -> str:
    """The one WARNING line of a finding that fired at `row`: what it is, what it means, what usually fixes it."""
    c = CHECKS[name]
    meaning = c.meaning.format(value=row.get(c.value_key, float("nan")))
    return f"training health at step {row['step']}: {c.title}: {meaning}. What usually fixes it: {c.fix}."


def findings(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The health findings of a run from its metrics rows (in step order): per check that fired, the step it first
    fired, every step it (re)appeared, whether it is still active at the last row that ran the check, the statistic
    when it first fired and at that last row, and what it means and what usually fixes it."""
    out: dict[str, dict[str, Any]] = {}
    for row in rows:
        for name, c in CHECKS.items():
            flag = row.get(f"health_{name}")
            if flag is None:
                continue
            f = out.get(name)
            if flag and (f is None or not f["active"]):
                if f is None:
                    f = out[name] = {"check": name, "title": c.title, "first_step": int(row["step"]), "onsets": [],
                                     "value": row.get(c.value_key), "meaning": c.meaning.format(
                                         value=row.get(c.value_key, float("nan"))), "fix": c.fix}
                f["onsets"].append(int(row["step"]))
            if f is not None:
                f["active"] = bool(flag)
                f["last_step"], f["last_value"] = int(row["step"]), row.get(c.value_key)
    return list(out.values())
