"""Single-process GAN training (`llmgan train --local`): data + cached embeddings, the shared train_step,
metrics.jsonl, sample grids, per-attribute accuracy, periodic checkpoints, resume, final inference checkpoint.

Run directory (local or s3://):
  checkpoints/{step:08d}/   full checkpoints (the last two are kept); resume picks the newest complete one
  final/                    inference checkpoint (config.json + safetensors) written when the run ends
  samples/{step:08d}.png    8x8 grids: one caption per row (listed in samples/captions.txt), 8 seeds per row
  metrics.jsonl             one JSON object per log interval (losses, imgs/s, accuracy per attribute)
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import os
import sys
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from llmgan.errors import UserError
from llmgan.gan.checkpoint import (
    CONFIG,
    TRAINING_STATE,
    load_training_state,
    read_meta,
    save_checkpoint,
)
from llmgan.gan.config import GanConfig
from llmgan.gan.inference import derive_seed
from llmgan.gan.step import make_train_state, train_step
from llmgan.gan.train_data import load_training_data
from llmgan.gan.train_report import ema_images, load_eval_classifier
from llmgan.io.storage import Storage, is_s3, join

log = logging.getLogger(__name__)

KEEP_CHECKPOINTS = 2
GRID_ROWS = 8
EVAL_IMAGES = 500


@dataclass(frozen=True)
class LocalTrainOptions:
    """Loop settings (the model and recipe live in GanConfig)."""

    steps: int = 10_000
    seed: int = 0
    checkpoint_every: int = 500
    sample_every: int = 500
    eval_every: int = 500
    log_every: int = 50
    threads: int | None = None  # None: every core this process may use
    text_encoder: str | None = None  # None: the packaged MiniLM
    classifier: str | None = "default"  # "default": the shipped shapes classifier (if any); None: no accuracy
    progress: bool = True

    def __post_init__(self) -> None:
        for name in ("steps", "checkpoint_every", "sample_every", "eval_every", "log_every"):
            if getattr(self, name) < 1:
                raise UserError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.seed < 0:
            raise UserError(f"seed must be non-negative, got {self.seed}")


def latest_checkpoint(out: str, storage: Storage) -> str | None:
    """The newest complete checkpoint directory of a run (config.json and training state present)."""
    names = storage.list(join(out, "checkpoints"))
    done = sorted({n.split("/")[0] for n in names if n.endswith("/" + CONFIG)})
    for step in reversed(done):
        if f"{step}/{TRAINING_STATE}" in names:
            return join(out, "checkpoints", step)
    return None


def batch_indices(n: int, batch: int, step: int, seed: int) -> np.ndarray:
    """Rows of the batch for `step`: consecutive slices of per-epoch permutations; a pure function of step."""
    start = step * batch
    out = []
    while len(out) < batch:
        epoch, offset = divmod(start + len(out), n)
        perm = np.random.default_rng([seed, epoch]).permutation(n)
        out.extend(perm[offset : offset + batch - len(out)].tolist())
    return np.asarray(out)


def to_float(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float (N, 3, H, W) in [-1, 1]."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def grid_png(images: np.ndarray, cols: int) -> bytes:
    """uint8 (N, H, W, 3) -> PNG bytes of a grid with `cols` columns and 1 px gaps."""
    from PIL import Image

    n, h, w, _ = images.shape
    rows = math.ceil(n / cols)
    canvas = np.full((rows * (h + 1) + 1, cols * (w + 1) + 1, 3), 255, np.uint8)
    for i, img in enumerate(images):
        r, c = divmod(i, cols)
        canvas[1 + r * (h + 1) : 1 + r * (h + 1) + h, 1 + c * (w + 1) : 1 + c * (w + 1) + w] = img
    buf = io.BytesIO()
    Image.fromarray(canvas).save(buf, format="PNG")
    return buf.getvalue()


def train_local(data: str, out: str, config: GanConfig, options: LocalTrainOptions, storage: Storage | None = None) -> dict:
    """Train (or resume) a GAN on a captioned dataset; returns a summary dict. See the module docstring."""
    storage = storage or Storage()
    threads = options.threads or len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)

    dataset, emb, config = load_training_data(data, config, options.text_encoder, storage)
    n = len(dataset.captions)
    emb_all = torch.from_numpy(emb)
    resume = latest_checkpoint(out, storage)
    if resume is not None:
        saved = GanConfig.from_dict(read_meta(resume, storage)["model"])
        if saved != config:
            diff = [k for k, v in config.to_dict().items() if saved.to_dict().get(k) != v]
            raise UserError(
                f"{out} holds a run with a different configuration ({', '.join(diff)}); resume with the same "
                f"options or choose a new --out"
            )
    images_all = dataset.images  # uint8, converted per batch to keep memory small

    state = make_train_state(config, seed=options.seed)
    metrics_lines: list[str] = []
    if resume is not None:
        load_training_state(resume, state, storage)
        if storage.exists(join(out, "metrics.jsonl")):
            metrics_lines = [
                ln for ln in storage.read_text(join(out, "metrics.jsonl")).splitlines()
                if ln.strip() and json.loads(ln).get("step", 0) <= state.step
            ]
        log.info("resuming from %s (step %d)", resume, state.step)
    else:
        torch.manual_seed(derive_seed(options.seed, 1))

    # fixed probes: sample-grid captions, and an evaluation set with labels for per-attribute accuracy
    probe_rng = np.random.default_rng([options.seed, 7])
    grid_rows = probe_rng.choice(n, size=min(GRID_ROWS, n), replace=False)
    grid_emb = emb_all[np.repeat(grid_rows, GRID_ROWS)]
    grid_seeds = [derive_seed(options.seed, 2, i) for i in range(len(grid_emb))]
    storage.write_text(join(out, "samples", "captions.txt"), "\n".join(dataset.captions[i] for i in grid_rows) + "\n")
    eval_rows = probe_rng.choice(n, size=min(EVAL_IMAGES, n), replace=False)
    clf = load_eval_classifier(options.classifier, dataset.labels)
    eval_labels = {a: [dataset.labels[a][i] for i in eval_rows] for a in clf.attributes} if clf else {}
    eval_seeds = [derive_seed(options.seed, 3, i) for i in range(len(eval_rows))]

    meta = {"text_encoder": options.text_encoder, "dataset": data}
    summary: dict[str, Any] = {"out": out, "start_step": state.step, "images": n}

    def checkpoint(final: bool = False) -> None:
        target = join(out, "final") if final else join(out, "checkpoints", f"{state.step:08d}")
        save_checkpoint(target, state, storage=storage, training_state=not final, **meta)
        storage.write_text(join(out, "metrics.jsonl"), "".join(ln + "\n" for ln in metrics_lines))
        if not final:  # keep the newest few
            steps = sorted({p.split("/")[0] for p in storage.list(join(out, "checkpoints"))})
            for old in steps[:-KEEP_CHECKPOINTS]:
                for name in storage.list(join(out, "checkpoints", old)):
                    storage.delete(join(out, "checkpoints", old, name))
                if not is_s3(out):  # S3 has no folders; a local one would stay behind, empty
                    with contextlib.suppress(OSError):
                        os.rmdir(join(out, "checkpoints", old))

    def evaluate() -> dict[str, float]:
        if clf is None:
            return {}
        imgs = ema_images(state.G_ema, state.config.z_dim, emb_all[eval_rows], eval_seeds)
        return {f"acc_{k}": round(float(v), 4) for k, v in clf.accuracy(imgs, eval_labels).items()}

    from tqdm import tqdm

    bar = tqdm(
        total=options.steps, initial=min(state.step, options.steps), desc="train", unit="step", file=sys.stderr,
        disable=not options.progress, mininterval=1.0 if sys.stderr.isatty() else 30.0, dynamic_ncols=True,
    )
    acc: dict[str, list[float]] = {}
    t_log = time.perf_counter()
    steps_since = 0
    started = time.perf_counter()
    steps_done = 0
    while state.step < options.steps:
        idx = batch_indices(n, config.batch_size, state.step, options.seed)
        pool = None
        if config.contrastive_pool > 0:
            pool_idx = np.random.default_rng([options.seed, 11, state.step]).choice(n, min(config.contrastive_pool, n), replace=False)
            pool = emb_all[pool_idx]
        m = train_step(state, to_float(images_all[idx]), emb_all[idx], state.step, pool)
        state.step += 1
        steps_done += 1
        steps_since += 1
        for k, v in m.items():
            acc.setdefault(k, []).append(v)
        bar.update(1)
        last = state.step == options.steps
        if state.step % options.log_every == 0 or last:
            dt = time.perf_counter() - t_log
            row: dict[str, Any] = {"step": state.step, "time": round(time.time(), 1)}
            row.update({k: round(float(np.nanmean(v)), 4) for k, v in acc.items()})
            row["imgs_per_s"] = round(steps_since * config.batch_size / max(dt, 1e-9), 1)
            if state.step % options.eval_every == 0 or last:
                row.update(evaluate())
            metrics_lines.append(json.dumps(row))
            bar.set_postfix(d=f"{row['loss_d']:.2f}", g=f"{row['loss_g']:.2f}", ips=row["imgs_per_s"])
            if not sys.stderr.isatty() and options.progress:
                print(json.dumps(row), file=sys.stderr, flush=True)
            acc.clear()
            t_log, steps_since = time.perf_counter(), 0
        if state.step % options.sample_every == 0 or last:
            grid = grid_png(ema_images(state.G_ema, state.config.z_dim, grid_emb, grid_seeds), GRID_ROWS)
            storage.write_bytes(join(out, "samples", f"{state.step:08d}.png"), grid)
        if state.step % options.checkpoint_every == 0 or last:
            checkpoint()
    bar.close()
    checkpoint(final=True)
    elapsed = time.perf_counter() - started
    final_row = json.loads(metrics_lines[-1]) if metrics_lines else {}
    summary.update(
        steps=state.step,
        steps_this_run=steps_done,
        seconds=round(elapsed, 1),
        imgs_per_s=round(steps_done * config.batch_size / max(elapsed, 1e-9), 1),
        final=join(out, "final"),
        accuracy={k[4:]: v for k, v in final_row.items() if k.startswith("acc_")},
    )
    return summary
