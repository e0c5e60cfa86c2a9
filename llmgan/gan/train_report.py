"""Training-run reporting shared by the distributed trainer: fixed probes (sample-grid captions, an
evaluation set with labels), EMA images on any device, the optional attribute classifier, and a PNG of
the loss and accuracy curves from metrics rows.
"""

from __future__ import annotations

import io
import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from llmgan.gan.inference import derive_seed

log = logging.getLogger(__name__)

GRID_ROWS = 8
EVAL_IMAGES = 500


@dataclass
class Probes:
    """Fixed inputs for sample grids and accuracy checks: the same captions and seeds at every checkpoint."""

    grid_emb: np.ndarray  # (GRID_ROWS * GRID_ROWS, E): each grid caption repeated once per column
    grid_seeds: list[int]
    grid_captions: list[str]
    eval_emb: np.ndarray  # (M, E)
    eval_seeds: list[int]
    eval_labels: dict[str, list[str]]  # attribute -> M labels; empty when accuracy is not tracked


def make_probes(emb: np.ndarray, captions: list[str], labels: dict[str, list[str]], seed: int,
                attributes: list[str] | None) -> Probes:
    """Probe rows and seeds drawn exactly as the --local loop draws them, so both report comparable figures."""
    n = len(captions)
    rng = np.random.default_rng([seed, 7])
    grid_rows = rng.choice(n, size=min(GRID_ROWS, n), replace=False)
    grid_emb = emb[np.repeat(grid_rows, GRID_ROWS)]
    eval_rows = rng.choice(n, size=min(EVAL_IMAGES, n), replace=False)
    return Probes(
        grid_emb=np.ascontiguousarray(grid_emb, np.float32),
        grid_seeds=[derive_seed(seed, 2, i) for i in range(len(grid_emb))],
        grid_captions=[captions[i] for i in grid_rows],
        eval_emb=np.ascontiguousarray(emb[eval_rows], np.float32),
        eval_seeds=[derive_seed(seed, 3, i) for i in range(len(eval_rows))],
        eval_labels={a: [labels[a][i] for i in eval_rows] for a in (attributes or [])},
    )


@torch.no_grad()
def ema_images(G_ema: nn.Module, z_dim: int, emb: np.ndarray | torch.Tensor, seeds: list[int]) -> np.ndarray:
    """uint8 (N, S, S, 3) from the EMA generator; noise row i depends only on seeds[i] (CPU generator)."""
    device = next(G_ema.parameters()).device
    e = torch.as_tensor(np.array(emb, dtype=np.float32))  # a copy: object-store arrays are read-only
    z = torch.stack([torch.randn(z_dim, generator=torch.Generator().manual_seed(s)) for s in seeds])
    out = [G_ema(z[i : i + 256].to(device), e[i : i + 256].to(device)) for i in range(0, len(seeds), 256)]
    x = torch.cat(out).float().cpu()
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def load_eval_classifier(name: str | None, labels: dict[str, list[str]]) -> Any:
    """The attribute classifier (None: not wanted, not installed, or the data lacks its labels)."""
    if name is None:
        return None
    try:
        from llmgan.eval.classifier import load_classifier
    except ImportError:
        return None
    try:
        clf = load_classifier(None if name == "default" else name)
    except Exception as exc:  # noqa: BLE001 - accuracy tracking is optional
        log.info("no evaluation classifier (%s); per-attribute accuracy is not tracked", exc)
        return None
    if not all(a in labels and all(labels[a]) for a in clf.attributes):
        log.info("evaluation classifier does not fit this data; per-attribute accuracy is not tracked")
        return None
    return clf


# ---- curves PNG ------------------------------------------------------------------------------------------

_COLORS = [(60, 120, 220), (235, 140, 40), (40, 160, 80), (200, 50, 50), (140, 90, 190), (120, 120, 120),
           (30, 170, 170), (190, 150, 30)]
LOSS_KEYS = ("loss_d", "loss_g", "d_contrastive", "g_contrastive")


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


def curves_png(rows: list[dict[str, Any]]) -> bytes:
    """Two panels from metrics rows: losses (top) and per-attribute accuracy in [0, 1] (bottom)."""
    from PIL import Image, ImageDraw

    def series(keys: list[str]) -> dict[str, list[tuple[float, float]]]:
        return {k: [(float(r["step"]), float(r[k])) for r in rows if k in r] for k in keys}

    acc_keys = sorted({k for r in rows for k in r if k.startswith("acc_")})
    img = Image.new("RGB", (640, 420), "white")
    draw = ImageDraw.Draw(img)
    _panel(draw, (50, 24, 520, 190), series([k for k in LOSS_KEYS if any(k in r for r in rows)]), "losses")
    _panel(draw, (50, 230, 520, 396), series(acc_keys), "per-attribute accuracy of the EMA generator", (0.0, 1.0))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()
