"""The Ray Train worker loop: DDP over G and D, this worker's data shard, the shared train_step, EMA and all
run-folder writes on rank 0, checkpoints through ray.train.report, resume from ray.train.get_checkpoint.

Every rank runs the same number of steps, log reductions and reports (ray.train.report is a barrier), so
collectives always line up. With one worker the loop reproduces `llmgan train --local` exactly: same
initialisation, same RNG seeding, same batch order.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
import time
from typing import Any

import numpy as np
import ray
import ray.train
import ray.train.torch
import torch
from torch import nn

from llmgan.gan.checkpoint import load_training_state, save_checkpoint
from llmgan.gan.config import GanConfig
from llmgan.gan.inference import derive_seed
from llmgan.gan.local_train import batch_indices, grid_png, to_float
from llmgan.gan.step import TrainState, make_train_state, train_step
from llmgan.gan.train_report import GRID_ROWS, Probes, curves_png, ema_images, load_eval_classifier
from llmgan.io.storage import Storage, join

METRICS = "metrics.jsonl"
EVENTS = "events.jsonl"
CURVES = "metrics.png"


def shard_seed(seed: int, rank: int) -> int:
    """Batch-order seed of a rank: rank 0 uses the run seed itself, so one worker matches --local."""
    return seed if rank == 0 else derive_seed(seed, 4, rank)


def _append_jsonl(storage: Storage, url: str, row: dict[str, Any]) -> None:
    old = storage.read_text(url) if storage.exists(url) else ""
    storage.write_text(url, old + json.dumps(row) + "\n")


def _restore(state: TrainState, seed: int, rank: int) -> int | None:
    """Load the latest reported checkpoint (if any) into `state`; returns the step resumed from."""
    ckpt = ray.train.get_checkpoint()
    if ckpt is None:
        torch.manual_seed(derive_seed(seed, 1))  # as --local does after initialising the networks
        return None
    with ckpt.as_directory() as local_dir:
        load_training_state(local_dir, state)  # also restores rank 0's CPU RNG state
    return state.step


def _wrap_ddp(state: TrainState, device: torch.device) -> None:
    from torch.nn.parallel import DistributedDataParallel as DDP

    ids = [device.index] if device.type == "cuda" else None
    state.G = DDP(state.G, device_ids=ids)
    # without the contrastive loss D's contrastive heads get no gradient: DDP must be told
    state.D = DDP(state.D, device_ids=ids, find_unused_parameters=state.config.contrastive_weight == 0)


def _mean_over_workers(values: dict[str, float], world: int, device: torch.device) -> dict[str, float]:
    if world == 1:
        return values
    import torch.distributed as dist

    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return dict(zip(keys, (t / world).tolist()))


def _worker_info(world: int) -> list[dict[str, Any]]:
    me = {"pid": os.getpid(), "host": socket.gethostname(), "node": ray.get_runtime_context().get_node_id()}
    if world == 1:
        return [dict(me, rank=0)]
    import torch.distributed as dist

    everyone: list[Any] = [None] * world
    dist.all_gather_object(everyone, me)
    return [dict(w, rank=r) for r, w in enumerate(everyone)]


def train_loop(cfg: dict[str, Any]) -> None:
    """Per-worker entry point given to TorchTrainer; `cfg` is built by llmgan.distributed.train.run_train."""
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.set_num_threads(int(cfg["threads"]))
    device = torch.device("cpu")
    if cfg["gpu"]:
        device = ray.train.torch.get_device()
        torch.cuda.set_device(device)  # NCCL collectives (all_gather_object) use the current device
    config = GanConfig.from_dict(cfg["model"])
    seed, steps, out = int(cfg["seed"]), int(cfg["steps"]), cfg["out"]
    storage = Storage(cfg["endpoint"])
    tracker = cfg["tracker"]

    state = make_train_state(config, device=device, seed=seed)
    resumed_from = _restore(state, seed, rank)
    if rank > 0:
        torch.manual_seed(derive_seed(seed, 1, rank, state.step))  # distinct noise per rank and attempt
        state.G_ema = nn.Module()  # EMA lives on rank 0 only: with no parameters update_ema does nothing
    if world > 1:
        _wrap_ddp(state, device)

    shard = ray.get(cfg["shards"][rank])  # only this rank's rows (rows r, r+W, ...) were shipped here
    images, emb = shard["images"], torch.from_numpy(np.array(shard["emb"], np.float32))
    per_worker = config.batch_size // world
    order_seed = shard_seed(seed, rank)

    workers = _worker_info(world)
    leader = rank == 0
    rows: list[str] = []
    clf = probes = None
    if leader:
        probes = ray.get(cfg["probes"])
        clf = load_eval_classifier(cfg["classifier"], probes.eval_labels) if probes.eval_labels else None
        if resumed_from is not None and storage.exists(join(out, METRICS)):
            rows = [ln for ln in storage.read_text(join(out, METRICS)).splitlines()
                    if ln.strip() and json.loads(ln).get("step", 0) <= state.step]
        event = {"event": "start", "step": state.step, "resumed_from": resumed_from, "target_steps": steps,
                 "workers": workers, "time": round(time.time(), 1)}
        _append_jsonl(storage, join(out, EVENTS), event)
        tracker.event.remote(event)

    acc: dict[str, list[float]] = {}
    t_log, since = time.perf_counter(), 0
    while state.step < steps:
        idx = batch_indices(len(emb), per_worker, state.step, order_seed)
        m = train_step(state, to_float(images[idx]).to(device), emb[idx].to(device), state.step)
        state.step += 1
        since += 1
        for k, v in m.items():
            acc.setdefault(k, []).append(v)
        last = state.step == steps
        ckpt_now = state.step % cfg["checkpoint_every"] == 0 or last
        if not (ckpt_now or state.step % cfg["log_every"] == 0):
            continue
        means = _mean_over_workers({k: float(np.nanmean(v)) for k, v in acc.items()}, world, device)
        dt = time.perf_counter() - t_log
        row: dict[str, Any] = {"step": state.step, "time": round(time.time(), 1)}
        row.update({k: round(v, 4) for k, v in means.items()})
        row.update(imgs_per_s=round(since * config.batch_size / max(dt, 1e-9), 1),
                   lr_g=state.opt_g.param_groups[0]["lr"], lr_d=state.opt_d.param_groups[0]["lr"], workers=world)
        acc.clear()
        if leader and ckpt_now:
            row.update(_evaluate(state, probes, clf))
        if leader:
            rows.append(json.dumps(row))
            tracker.row.remote(row)
        if ckpt_now:
            _checkpoint(state, cfg, storage, probes, rows if leader else None)
        t_log, since = time.perf_counter(), 0  # reporting time is not training time

    if leader:
        save_checkpoint(join(out, "final"), state, storage=storage, training_state=False,
                        text_encoder=cfg["text_encoder"], dataset=cfg["data"])
        event = {"event": "finish", "step": state.step, "time": round(time.time(), 1)}
        _append_jsonl(storage, join(out, EVENTS), event)
        tracker.event.remote(event)


def _evaluate(state: TrainState, probes: Probes, clf: Any) -> dict[str, float]:
    if clf is None:
        return {}
    imgs = ema_images(state.G_ema, state.config.z_dim, probes.eval_emb, probes.eval_seeds)
    return {f"acc_{k}": round(float(v), 4) for k, v in clf.accuracy(imgs, probes.eval_labels).items()}


def _checkpoint(state: TrainState, cfg: dict[str, Any], storage: Storage, probes: Probes | None,
                rows: list[str] | None) -> None:
    """Rank 0 writes samples, metrics and the checkpoint files; every rank joins the report barrier."""
    name = f"checkpoints/{state.step:08d}"
    metrics = {"step": state.step}
    if rows is None:
        ray.train.report(metrics, checkpoint=None, checkpoint_dir_name=name)
        return
    out = cfg["out"]
    grid = ema_images(state.G_ema, state.config.z_dim, probes.grid_emb, probes.grid_seeds)
    storage.write_bytes(join(out, "samples", f"{state.step:08d}.png"), grid_png(grid, GRID_ROWS))
    storage.write_text(join(out, "samples", "captions.txt"), "\n".join(probes.grid_captions) + "\n")
    storage.write_text(join(out, METRICS), "".join(ln + "\n" for ln in rows))
    storage.write_bytes(join(out, CURVES), curves_png([json.loads(ln) for ln in rows]))
    with tempfile.TemporaryDirectory(prefix="llmgan-ckpt-") as tmp:
        save_checkpoint(tmp, state, storage=Storage(), text_encoder=cfg["text_encoder"], dataset=cfg["data"])
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp), checkpoint_dir_name=name)
