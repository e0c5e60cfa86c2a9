"""The one GAN training loop, rank-aware (nanoGPT style): `train_loop` runs in a single process
(`llmgan train --local`, `train_local` here) and inside every Ray Train worker (llmgan.distributed.train_worker)
through a small RunContext; rank 0 alone writes the run folder.

Run folder (local or s3://):
  checkpoints/{step:08d}/   full checkpoints (the last `keep_checkpoints` are kept); resume picks the newest
  final/                    inference checkpoint (config.json + safetensors) written when the run ends
  samples/{step:08d}.png    8x8 grids: one caption per row (listed in samples/captions.txt), 8 seeds per row
  metrics.jsonl, metrics.png  one row per log/eval interval (losses, imgs/s, evaluator figures); the curves

Training health (llmgan.gan.health): from options.health_warmup on, rank 0 checks every metrics row (sample grid,
D's margin, the matcher's held-out loss), adds health_* keys to it, logs each new finding once as a WARNING, and the
summary lists the run's findings.

Every rank runs the same steps, reductions and checkpoint calls (a Ray Train report is a barrier), so
collectives line up; evaluation and sample grids are rank-0-only work with no collectives. With one rank the
loop is the same computation wherever it runs: same initialisation, RNG seeding, batch order and pool draws.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from llmgan.domains import Domain, detect_domain
from llmgan.errors import UserError
from llmgan.gan.checkpoint import (
    CONFIG,
    TRAINING_STATE,
    load_training_state,
    read_meta,
    resolve_checkpoint,
    save_checkpoint,
    warm_start,
)
from llmgan.gan.config import GanConfig
from llmgan.gan.health import HealthMonitor, HealthThresholds, findings, real_reference
from llmgan.gan.step import TrainState, make_train_state, train_step
from llmgan.gan.train_options import LocalTrainOptions, LoopOptions
from llmgan.gan.train_report import (
    GRID_ROWS,
    LOSSES,
    ConsistencyEvaluator,
    Evaluator,
    Probes,
    curves_png,
    ema_images,
    evaluator_fits,
    make_probes,
)
from llmgan.io.images import grid, png_bytes, to_float
from llmgan.io.seeds import derive_seed
from llmgan.io.storage import Storage, is_s3, join

log = logging.getLogger(__name__)

METRICS = "metrics.jsonl"
CURVES = "metrics.png"


__all__ = ["LocalTrainOptions", "LoopOptions", "RunContext", "StepComponent", "train_local", "train_loop"]


class StepComponent(Protocol):
    """A model trained alongside G and D on the same batches (e.g. llmgan.gan.matcher_component): its metrics join
    the step's, and it saves into / loads from each checkpoint directory (before config.json marks it done).
    `rows` are the batch's row indices in this rank's data, `pool` the GAN's contrastive pool (None: none drawn);
    `training_state` is False for the inference copy (final/)."""

    def step(self, images: torch.Tensor, emb: torch.Tensor, step: int, rows: np.ndarray,
             pool: torch.Tensor | None) -> dict[str, float]: ...

    def save(self, url: str, storage: Storage, training_state: bool) -> None: ...

    def load(self, url: str, storage: Storage) -> None: ...


class RunContext:
    """Where the loop runs. This base class is the single-process runtime (rank 0 of 1, checkpoints written
    straight into the run folder and pruned here); llmgan.distributed.train_worker subclasses it for Ray Train."""

    rank: int = 0
    world: int = 1

    def __init__(self, out: str, storage: Storage, device: str | torch.device = "cpu", keep: int = 2,
                 progress: bool = True) -> None:
        self.out, self.storage, self.device = out, storage, torch.device(device)
        self.keep, self.progress = keep, progress
        self._bar: Any = None

    @property
    def is_leader(self) -> bool:
        return self.rank == 0

    def prepare(self, state: TrainState) -> None:
        """Wrap G and D for this runtime (DDP under Ray Train); nothing to do in one process."""

    def mean_over_workers(self, values: dict[str, float]) -> dict[str, float]:
        return values

    def restore(self, load: Callable[[str], None]) -> str | None:
        """Call `load(dir)` with the newest complete checkpoint, if any; returns its name."""
        latest = latest_checkpoint(self.out, self.storage)
        if latest is not None:
            load(latest)
        return latest

    def save_checkpoint(self, step: int, write: Callable[[str], None]) -> None:
        """Every rank calls this; `write(dir)` (rank 0 only) fills a checkpoint directory."""
        write(join(self.out, "checkpoints", f"{step:08d}"))
        steps = sorted({p.split("/")[0] for p in self.storage.list(join(self.out, "checkpoints"))})
        for old in steps[: -self.keep]:
            for name in self.storage.list(join(self.out, "checkpoints", old)):
                self.storage.delete(join(self.out, "checkpoints", old, name))
            if not is_s3(self.out):  # S3 has no folders; a local one would stay behind, empty
                with contextlib.suppress(OSError):
                    os.rmdir(join(self.out, "checkpoints", old))

    # progress hooks: start/step_done/finish run on every rank, row on rank 0
    def start(self, step: int, target: int, resumed_from: str | None) -> None:
        from tqdm import tqdm

        self._bar = tqdm(total=target, initial=min(step, target), desc="train", unit="step", file=sys.stderr,
                         disable=not self.progress, mininterval=1.0 if sys.stderr.isatty() else 30.0,
                         dynamic_ncols=True)

    def step_done(self, step: int) -> None:
        if self._bar is not None:
            self._bar.update(1)

    def row(self, row: dict[str, Any]) -> None:
        # every row is in metrics.jsonl; the bar shows the latest losses without rows between its updates
        if self._bar is not None and "loss_d" in row:
            self._bar.set_postfix(d=f"{row['loss_d']:.2f}", g=f"{row['loss_g']:.2f}", ips=row["imgs_per_s"])

    def finish(self, step: int) -> None:
        if self._bar is not None:
            self._bar.close()


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
    out: list[int] = []
    while len(out) < batch:
        epoch, offset = divmod(start + len(out), n)
        perm = np.random.default_rng([seed, epoch]).permutation(n)
        out.extend(perm[offset : offset + batch - len(out)].tolist())
    return np.asarray(out)


def rank_seed(seed: int, rank: int) -> int:
    """Batch-order and pool seed of a rank: rank 0 uses the run seed itself, so one rank is one process."""
    return seed if rank == 0 else derive_seed("train-rank", seed, rank)


def train_loop(ctx: RunContext, config: GanConfig, images: np.ndarray, emb: np.ndarray | torch.Tensor,
               options: LoopOptions, *, probes: Probes | None = None, evaluators: Sequence[Evaluator] = (),
               meta: dict[str, Any] | None = None, components: Sequence[StepComponent] = ()) -> dict[str, Any]:
    """Train (or resume) to options.steps on this rank's rows (`images` uint8 (n, S, S, 3), `emb` (n, E));
    config.batch_size is global. Rank 0 needs `probes` and runs the `evaluators`; `meta` goes into each
    checkpoint's config.json (text_encoder, dataset, extra). Returns a summary (rank 0's is the run's)."""
    seed, out, storage, leader = options.seed, ctx.out, ctx.storage, ctx.is_leader
    meta = meta or {}
    state = make_train_state(config, device=ctx.device, seed=seed)

    def load(url: str) -> None:
        load_training_state(url, state, storage)  # also restores the saved CPU RNG state
        for c in components:
            c.load(url, storage)

    resumed_from = ctx.restore(load)
    if resumed_from is None and options.init_from:
        state.step = warm_start(options.init_from, state, storage)
        for c in components:  # a matcher exported beside the GAN continues too
            c.load(resolve_checkpoint(options.init_from, storage), storage)
        log.info("warm start from %s at step %d (fresh optimisers)", options.init_from, state.step)
    if resumed_from is None:
        torch.manual_seed(derive_seed("train-noise", seed, *([state.step] if state.step else [])))
    if ctx.rank > 0:
        torch.manual_seed(derive_seed("train-noise", seed, ctx.rank, state.step))  # distinct per rank and attempt
        state.G_ema = nn.Module()  # EMA lives on rank 0 only: with no parameters update_ema does nothing
    ctx.prepare(state)

    emb_t = torch.as_tensor(np.array(emb, dtype=np.float32))  # a copy: object-store arrays are read-only
    n, per_rank = len(emb_t), config.batch_size // ctx.world
    order_seed = rank_seed(seed, ctx.rank)
    rows: list[str] = []
    monitor: HealthMonitor | None = None
    panels = [LOSSES, *(p for c in components for p in getattr(c, "panels", ())),
              *(p for ev in evaluators for p in ev.panels)]
    if leader:
        if probes is None:
            raise ValueError("rank 0 needs the probes")
        if resumed_from is not None and storage.exists(join(out, METRICS)):
            rows = [ln for ln in storage.read_text(join(out, METRICS)).splitlines()
                    if ln.strip() and json.loads(ln).get("step", 0) <= state.step]
        # the real images' own spread: what the sample grid's is compared with (rank 0's rows)
        monitor = HealthMonitor(real_reference(images, seed), HealthThresholds(warmup=options.health_warmup))
        monitor.prime(json.loads(ln) for ln in rows)
        storage.write_text(join(out, "samples", "captions.txt"), "\n".join(probes.grid_captions) + "\n")
        log.info("%s at step %d", f"resuming from {resumed_from}" if resumed_from else "starting", state.step)
    ctx.start(state.step, options.steps, resumed_from)

    def write_run_files() -> None:
        storage.write_text(join(out, METRICS), "".join(ln + "\n" for ln in rows))
        storage.write_bytes(join(out, CURVES), curves_png([json.loads(ln) for ln in rows], panels))

    def write_checkpoint(url: str, training_state: bool = True) -> None:
        for c in components:  # before config.json, which marks the directory complete
            c.save(url, storage, training_state)
        save_checkpoint(url, state, storage=storage, training_state=training_state, **meta)

    start_step, started = state.step, time.perf_counter()
    acc: dict[str, list[float]] = {}
    t_log, since = time.perf_counter(), 0
    while state.step < options.steps:
        idx = batch_indices(n, per_rank, state.step, order_seed)
        pool = None
        if config.contrastive_pool > 0:
            pick = np.random.default_rng([order_seed, 11, state.step]).choice(
                n, min(config.contrastive_pool, n), replace=False)
            pool = emb_t[pick].to(ctx.device)
        x, e = to_float(images[idx]).to(ctx.device), emb_t[idx].to(ctx.device)
        m = train_step(state, x, e, state.step, pool)
        for c in components:
            m.update(c.step(x, e, state.step, idx, pool))
        state.step += 1
        since += 1
        for k, v in m.items():
            acc.setdefault(k, []).append(v)
        ctx.step_done(state.step)

        step, last = state.step, state.step == options.steps
        ckpt_now = step % options.checkpoint_every == 0 or last
        eval_now = bool(evaluators) and (step % options.eval_every == 0 or last)
        sample_now = leader and (step % options.sample_every == 0 or last)
        row_now = ckpt_now or eval_now or step % options.log_every == 0
        if not (row_now or sample_now):
            continue
        t_report = time.perf_counter()
        grid_imgs = None
        if sample_now:  # rank-0-only work, no collectives
            grid_imgs = ema_images(state.G_ema, config.z_dim, probes.grid_emb, probes.grid_seeds)
            storage.write_bytes(join(out, "samples", f"{step:08d}.png"), png_bytes(grid(grid_imgs, GRID_ROWS)))
        if row_now:  # every rank reaches this at the same steps, so the reduction lines up
            means = ctx.mean_over_workers({k: float(np.nanmean(v)) for k, v in acc.items()})
            row: dict[str, Any] = {"step": step, "time": round(time.time(), 1)}
            row.update({k: round(v, 4) for k, v in means.items()})
            row.update(imgs_per_s=round(since * config.batch_size / max(t_report - t_log, 1e-9), 1),
                       lr_g=state.opt_g.param_groups[0]["lr"], lr_d=state.opt_d.param_groups[0]["lr"],
                       workers=ctx.world)
            acc.clear()
            if leader:
                if eval_now:
                    imgs = ema_images(state.G_ema, config.z_dim, probes.eval_emb, probes.eval_seeds)
                    for ev in evaluators:
                        row.update(ev.evaluate(imgs, probes.eval_captions, probes.eval_labels, probes.eval_emb))
                if monitor is not None and monitor.due(step):  # rank-0-only work: no RNG, no collectives
                    if grid_imgs is None:
                        grid_imgs = ema_images(state.G_ema, config.z_dim, probes.grid_emb, probes.grid_seeds)
                    for c in components:
                        row.update(c.health() if hasattr(c, "health") else {})
                    monitor.warn(monitor.check(row, grid_imgs), row)
                rows.append(json.dumps(row))
                ctx.row(row)
        if ckpt_now:
            if leader:
                write_run_files()
            ctx.save_checkpoint(step, write_checkpoint)
        # reporting time is not training time
        t_log, since = (time.perf_counter(), 0) if row_now else (t_log + time.perf_counter() - t_report, since)

    if leader:  # the last step wrote metrics and a full checkpoint; final/ is the inference copy
        write_checkpoint(join(out, "final"), training_state=False)
    ctx.finish(state.step)
    elapsed = time.perf_counter() - started
    last_row = json.loads(rows[-1]) if rows else {}
    done = state.step - start_step
    return {
        "start_step": start_step, "steps": state.step, "steps_this_run": done, "seconds": round(elapsed, 1),
        "imgs_per_s": round(done * config.batch_size / max(elapsed, 1e-9), 1), "final": join(out, "final"),
        "accuracy": {k[4:]: v for k, v in last_row.items() if k.startswith("acc_")},
        "consistency": {k[12:]: v for k, v in last_row.items() if k.startswith("consistency_")},
        "health": findings(json.loads(ln) for ln in rows),
    }


def check_resumable(out: str, config: GanConfig, storage: Storage) -> None:
    """Refuse to continue a run folder whose newest checkpoint holds another configuration."""
    latest = latest_checkpoint(out, storage)
    if latest is None:
        return
    saved = GanConfig.from_dict(read_meta(latest, storage)["model"])
    if saved != config:
        diff = [k for k, v in config.to_dict().items() if saved.to_dict().get(k) != v]
        raise UserError(f"{out} holds a run with a different configuration ({', '.join(diff)}); resume with the "
                        f"same options or choose a new --out")


def train_local(data: str, out: str, config: GanConfig, options: LocalTrainOptions, storage: Storage | None = None,
                evaluators: Sequence[Evaluator] = (), consistency: Callable[[Domain], Evaluator | None] | None = None,
                components: Sequence[StepComponent] = ()) -> dict[str, Any]:
    """`llmgan train --local`: load the data (cached embeddings), then run train_loop in this process.

    `evaluators` run when the data carries the labels they need; `consistency(domain)` (built by the caller from
    llmgan.eval: the domain's classifier scorer) runs when it gives one for the data's domain, else the matcher trained
    alongside (options.matcher) scores consistency.
    """
    from llmgan.gan.train_data import load_training_data

    storage = storage or Storage()
    torch.set_num_threads(options.threads or len(os.sched_getaffinity(0)))
    dataset, emb, config = load_training_data(data, config, options.text_encoder, storage, cache_dir=options.cache_dir,
                                              image_column=options.image_column,
                                              caption_column=options.caption_column)
    check_resumable(out, config, storage)
    domain = detect_domain(dataset.captions)
    components = list(components)
    if options.matcher:
        from llmgan.gan.matcher_component import MatcherComponent, row_keys

        components.append(MatcherComponent(config, dataset.images, emb, seed=options.seed,
                                           keys=row_keys(dataset.captions, dataset.labels), device=options.device,
                                           text_encoder=options.text_encoder))
    chosen = pick_evaluators(evaluators, dataset.labels, data)
    cons = consistency_evaluator(consistency(domain) if consistency is not None else None, components)
    chosen += [cons] if cons is not None else []
    probes = make_probes(emb, dataset.captions, dataset.labels, options.seed,
                         sorted({a for ev in chosen for a in ev.attributes}))
    ctx = RunContext(out, storage, options.device, keep=options.keep_checkpoints, progress=options.progress)
    meta = {"text_encoder": options.text_encoder, "dataset": data, "extra": domain.meta()}
    summary = train_loop(ctx, config, dataset.images, emb, options, probes=probes, evaluators=chosen, meta=meta,
                         components=components)
    return {"out": out, "images": len(dataset.captions), **summary}


def pick_evaluators(evaluators: Sequence[Evaluator], labels: dict[str, list[str]], data: str) -> list[Evaluator]:
    """The evaluators whose labels the data carries (the others are dropped, with a log line)."""
    chosen = []
    for ev in evaluators:
        if evaluator_fits(ev, labels):
            chosen.append(ev)
        else:
            log.info("the evaluator needs labels %s that %s lacks; not evaluating it", list(ev.attributes), data)
    return chosen


def consistency_evaluator(consistency: Evaluator | None,
                          components: Sequence[StepComponent]) -> Evaluator | None:
    """The consistency evaluator of a run: the caller's (its domain's classifier scorer) when the domain has one,
    else one scoring with the matcher trained alongside, else None."""
    if consistency is not None:
        return consistency
    matcher = next((c for c in components if hasattr(c, "scorer")), None)
    return ConsistencyEvaluator(matcher.scorer()) if matcher is not None else None
