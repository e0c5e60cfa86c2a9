"""Training-run reporting: fixed probes (sample-grid captions, an evaluation set with labels), EMA images,
the injected evaluator interface (figures into metrics rows and curves) with its accuracy and consistency
evaluators, and the metrics.png curves."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from llmgan.io.images import to_uint8
from llmgan.io.seeds import derive_seed

GRID_ROWS = 8
EVAL_IMAGES = 500


@dataclass
class Probes:
    """Fixed inputs for sample grids and evaluation: the same captions and seeds at every evaluation."""

    grid_emb: np.ndarray  # (GRID_ROWS * GRID_ROWS, E): each grid caption repeated once per column
    grid_seeds: list[int]
    grid_captions: list[str]
    eval_emb: np.ndarray  # (M, E)
    eval_seeds: list[int]
    eval_captions: list[str]
    eval_labels: dict[str, list[str]]  # attribute -> M labels (the evaluator's attributes only)


def make_probes(emb: np.ndarray, captions: list[str], labels: dict[str, list[str]], seed: int,
                attributes: Sequence[str] = ()) -> Probes:
    """Probe rows and seeds from the whole dataset: a pure function of (data, seed), so every runtime and
    every resume evaluates the same captions with the same noise."""
    n = len(captions)
    rng = np.random.default_rng([seed, 7])
    grid_rows = rng.choice(n, size=min(GRID_ROWS, n), replace=False)
    grid_emb = emb[np.repeat(grid_rows, GRID_ROWS)]
    eval_rows = rng.choice(n, size=min(EVAL_IMAGES, n), replace=False)
    return Probes(
        grid_emb=np.ascontiguousarray(grid_emb, np.float32),
        grid_seeds=[derive_seed("train-grid", seed, i) for i in range(len(grid_emb))],
        grid_captions=[captions[i] for i in grid_rows],
        eval_emb=np.ascontiguousarray(emb[eval_rows], np.float32),
        eval_seeds=[derive_seed("train-eval", seed, i) for i in range(len(eval_rows))],
        eval_captions=[captions[i] for i in eval_rows],
        eval_labels={a: [labels[a][i] for i in eval_rows] for a in attributes},
    )


@torch.no_grad()
def ema_images(G_ema: nn.Module, z_dim: int, emb: np.ndarray | torch.Tensor, seeds: list[int]) -> np.ndarray:
    """uint8 (N, S, S, 3) from the EMA generator; noise row i depends only on seeds[i] (CPU generator)."""
    device = next(G_ema.parameters()).device
    e = torch.as_tensor(np.array(emb, dtype=np.float32))  # a copy: object-store arrays are read-only
    z = torch.stack([torch.randn(z_dim, generator=torch.Generator().manual_seed(s)) for s in seeds])
    out = [G_ema(z[i : i + 256].to(device), e[i : i + 256].to(device)) for i in range(0, len(seeds), 256)]
    return to_uint8(torch.cat(out))


# ---- evaluation, injected by the caller ----------------------------------------------------------------


@dataclass(frozen=True)
class Panel:
    """One panel of metrics.png: the metrics keys it plots (exact names, or every key starting with `prefix`)."""

    title: str
    keys: tuple[str, ...] = ()
    prefix: str | None = None
    y_range: tuple[float, float] | None = None

    def select(self, names: set[str]) -> list[str]:
        return [k for k in self.keys if k in names] + sorted(
            k for k in names if self.prefix and k.startswith(self.prefix) and k not in self.keys)


LOSSES = Panel("losses", keys=("loss_d", "loss_g", "d_contrastive", "g_contrastive"))


class Evaluator(Protocol):
    """Scores EMA-generator images of the fixed evaluation probes. The training loop gets one from its caller
    (so this layer never imports llmgan.eval); its figures go into metrics.jsonl rows and its panels into
    metrics.png."""

    attributes: Sequence[str]  # label columns the probes must carry (may be empty)
    panels: Sequence[Panel]  # curves it adds to metrics.png

    def evaluate(self, images: np.ndarray, captions: list[str], labels: dict[str, list[str]],
                 emb: np.ndarray) -> dict[str, float]:
        """images uint8 (M, S, S, 3) generated from `captions` (embeddings `emb`); -> {metrics key: value}."""
        ...


class AttributeModel(Protocol):
    attributes: list[str]

    def accuracy(self, images: np.ndarray, labels: dict[str, list[str]]) -> dict[str, float]: ...


@dataclass
class AccuracyEvaluator:
    """Per-attribute accuracy of generated images under an attribute classifier (e.g.
    llmgan.eval.classifier.AttributeClassifier): metrics keys acc_<attribute>."""

    classifier: AttributeModel
    panels: Sequence[Panel] = field(default=(
        Panel("per-attribute accuracy of the EMA generator", prefix="acc_", y_range=(0.0, 1.0)),))

    @property
    def attributes(self) -> list[str]:
        return list(self.classifier.attributes)

    def evaluate(self, images: np.ndarray, captions: list[str], labels: dict[str, list[str]],
                 emb: np.ndarray) -> dict[str, float]:
        return {f"acc_{k}": round(float(v), 4) for k, v in self.classifier.accuracy(images, labels).items()}


@dataclass(frozen=True)
class Score:
    """One image's consistency score in [0, 1] (what llmgan.eval.consistency's verdicts carry as `.score`)."""

    score: float


class ConsistencyScorer(Protocol):
    """llmgan.eval.consistency's scorer interface (ClassifierScorer, MatcherScorer), or the in-training matcher's."""

    name: str

    def score(self, images: np.ndarray, captions: list[str], prompts: list[str],
              emb: np.ndarray | None = None) -> Sequence[Any]: ...


CONSISTENCY = Panel("consistency of the EMA generator (mean score, share below 0.5)",
                    keys=("consistency_mean", "consistency_below_0.5"), y_range=(0.0, 1.0))


@dataclass
class ConsistencyEvaluator:
    """Consistency of generated images with their captions under a scorer (the captions are the prompts here):
    metrics keys consistency_mean and consistency_below_0.5 (share of images the scorer would redraw)."""

    scorer: ConsistencyScorer
    attributes: Sequence[str] = ()
    panels: Sequence[Panel] = (CONSISTENCY,)

    def evaluate(self, images: np.ndarray, captions: list[str], labels: dict[str, list[str]],
                 emb: np.ndarray) -> dict[str, float]:
        scores = np.array([v.score for v in self.scorer.score(images, captions, captions, emb)], dtype=np.float64)
        return {"consistency_mean": round(float(scores.mean()), 4),
                "consistency_below_0.5": round(float((scores < 0.5).mean()), 4)}


def evaluator_fits(evaluator: Evaluator, labels: dict[str, list[str]]) -> bool:
    """Whether the data carries every label the evaluator needs (all rows labelled)."""
    return all(a in labels and all(labels[a]) for a in evaluator.attributes)


# ---- curves PNG ------------------------------------------------------------------------------------------

_COLORS = [(60, 120, 220), (235, 140, 40), (40, 160, 80), (200, 50, 50), (140, 90, 190), (120, 120, 120),
           (30, 170, 170), (190, 150, 30)]
_TOP, _HEIGHT, _GAP = 24, 166, 40


def _panel(draw: Any, box: tuple[int, int, int, int], series: dict[str, list[tuple[float, float]]],
           title: str, y_range: tuple[float, float] | None = None) -> None:
    x0, y0, x1, y1 = box
    draw.rectangle(box, outline=(180, 180, 180))
    draw.text((x0 + 4, y0 - 14), title, fill="black")
    points = [p for pts in series.values() for p in pts if math.isfinite(p[1])]
    if not points:
        draw.text((x0 + 10, y0 + 10), "no data yet", fill="black")
        return
    xs = [p[0] for p in points]
    lo, hi = y_range or (min(p[1] for p in points), max(p[1] for p in points))
    if hi - lo < 1e-9:
        lo, hi = lo - 0.5, hi + 0.5
    xmin, xmax = min(xs), max(max(xs), min(xs) + 1)

    def at(x: float, y: float) -> tuple[float, float]:
        return (x0 + (x - xmin) / (xmax - xmin) * (x1 - x0), y1 - (y - lo) / (hi - lo) * (y1 - y0))

    for frac in (0.0, 0.5, 1.0):
        y = lo + frac * (hi - lo)
        draw.text((4, at(xmin, y)[1] - 6), f"{y:.2f}", fill="black")
    draw.text((x0, y1 + 4), f"step {int(xmin)}", fill="black")
    draw.text((x1 - 70, y1 + 4), f"step {int(xmax)}", fill="black")
    for k, (name, pts) in enumerate(series.items()):
        color = _COLORS[k % len(_COLORS)]
        good = [at(x, y) for x, y in pts if math.isfinite(y)]
        if len(good) > 1:
            draw.line(good, fill=color, width=2)
        elif good:
            draw.ellipse([good[0][0] - 2, good[0][1] - 2, good[0][0] + 2, good[0][1] + 2], fill=color)
        draw.text((x1 + 8, y0 + 14 * k), name, fill=color)


def curves_png(rows: list[dict[str, Any]], panels: Sequence[Panel] = (LOSSES,)) -> bytes:
    """One panel per Panel, stacked: each plots its keys from the metrics rows against the step."""
    from PIL import Image, ImageDraw

    from llmgan.io.images import png_bytes

    names = {k for r in rows for k in r}
    img = Image.new("RGB", (640, _TOP + len(panels) * (_HEIGHT + _GAP)), "white")
    draw = ImageDraw.Draw(img)
    for i, panel in enumerate(panels):
        series = {k: [(float(r["step"]), float(r[k])) for r in rows if k in r] for k in panel.select(names)}
        y0 = _TOP + i * (_HEIGHT + _GAP)
        _panel(draw, (50, y0, 520, y0 + _HEIGHT), series, panel.title, panel.y_range)
    return png_bytes(img)
