"""The Ray Train worker: a RunContext for llmgan.gan.trainer.train_loop (ranks, DDP over G and D, all-reduce,
checkpoints through ray.train.report, resume from ray.train.get_checkpoint, start/finish events) and the
loading of this worker's data shard. The training loop itself is the one `llmgan train --local` runs.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
import time
from collections.abc import Callable
from typing import Any

import ray
import ray.train
import ray.train.torch
import torch

from llmgan.gan.config import GanConfig
from llmgan.gan.matcher_component import MatcherComponent
from llmgan.gan.step import TrainState
from llmgan.gan.train_options import LoopOptions
from llmgan.gan.trainer import RunContext, consistency_evaluator, train_loop
from llmgan.io.storage import Storage, join

EVENTS = "events.jsonl"


def _append_jsonl(storage: Storage, url: str, row: dict[str, Any]) -> None:
    old = storage.read_text(url) if storage.exists(url) else ""
    storage.write_text(url, old + json.dumps(row) + "\n")


class RayTrainContext(RunContext):
    """One Ray Train worker: rank and world from Ray, DDP when world > 1, Ray Train's checkpoints (it keeps
    the newest few itself: CheckpointConfig(num_to_keep) on the driver)."""

    def __init__(self, out: str, storage: Storage, device: torch.device, tracker: Any) -> None:
        super().__init__(out, storage, device, progress=False)  # the driver prints progress from the tracker
        ctx = ray.train.get_context()
        self.rank, self.world = ctx.get_world_rank(), ctx.get_world_size()
        self.tracker = tracker

    def prepare(self, state: TrainState) -> None:
        if self.world == 1:
            return
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [self.device.index] if self.device.type == "cuda" else None
        state.G = DDP(state.G, device_ids=ids)
        # without the contrastive loss D's contrastive heads get no gradient: DDP must be told
        state.D = DDP(state.D, device_ids=ids, find_unused_parameters=state.config.contrastive_weight == 0)

    def mean_over_workers(self, values: dict[str, float]) -> dict[str, float]:
        if self.world == 1:
            return values
        import torch.distributed as dist

        keys = sorted(values)
        t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return dict(zip(keys, (t / self.world).tolist()))

    def restore(self, load: Callable[[str], None]) -> str | None:
        ckpt = ray.train.get_checkpoint()
        if ckpt is None:
            return None
        with ckpt.as_directory() as local_dir:
            load(local_dir)
        return ckpt.path

    def save_checkpoint(self, step: int, write: Callable[[str], None]) -> None:
        name, metrics = f"checkpoints/{step:08d}", {"step": step}
        if not self.is_leader:  # every rank joins the report barrier; rank 0 carries the files
            ray.train.report(metrics, checkpoint=None, checkpoint_dir_name=name)
            return
        with tempfile.TemporaryDirectory(prefix="llmgan-ckpt-") as tmp:
            write(tmp)
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp), checkpoint_dir_name=name)

    def _event(self, event: dict[str, Any]) -> None:
        _append_jsonl(self.storage, join(self.out, EVENTS), event)
        self.tracker.event.remote(event)

    def start(self, step: int, target: int, resumed_from: str | None) -> None:
        workers = self._worker_info()  # a collective: every rank calls start
        if self.is_leader:
            self._event({"event": "start", "step": step, "resumed_from": step if resumed_from else None,
                         "target_steps": target, "workers": workers, "time": round(time.time(), 1)})

    def row(self, row: dict[str, Any]) -> None:
        self.tracker.row.remote(row)

    def finish(self, step: int) -> None:
        if self.is_leader:
            self._event({"event": "finish", "step": step, "time": round(time.time(), 1)})

    def _worker_info(self) -> list[dict[str, Any]]:
        me = {"pid": os.getpid(), "host": socket.gethostname(), "node": ray.get_runtime_context().get_node_id()}
        if self.world == 1:
            return [dict(me, rank=0)]
        import torch.distributed as dist

        everyone: list[Any] = [None] * self.world
        dist.all_gather_object(everyone, me)
        return [dict(w, rank=r) for r, w in enumerate(everyone)]


def train_loop_per_worker(cfg: dict[str, Any]) -> None:
    """Per-worker entry point given to TorchTrainer; `cfg` is built by llmgan.distributed.train.run_train."""
    torch.set_num_threads(int(cfg["threads"]))
    device = torch.device("cpu")
    if cfg["gpu"]:
        device = ray.train.torch.get_device()
        torch.cuda.set_device(device)  # NCCL collectives (all_gather_object) use the current device
    ctx = RayTrainContext(cfg["out"], Storage(cfg["endpoint"]), device, cfg["tracker"])
    shard = ray.get(cfg["shards"][ctx.rank])  # only this rank's rows (rows r, r+W, ...) were shipped here
    leader = ctx.is_leader
    config, loop = GanConfig.from_dict(cfg["model"]), LoopOptions(**cfg["loop"])
    components = []
    if loop.matcher:  # every rank trains a copy; their gradients are averaged, rank 0 saves and scores
        components.append(MatcherComponent(config, shard["images"], shard["emb"], seed=loop.seed,
                                           keys=shard.get("keys"), rank=ctx.rank, world=ctx.world, device=device,
                                           text_encoder=cfg["text_encoder"]))
    evaluators = []
    if leader:
        evaluators = list(ray.get(cfg["evaluators"]))
        cons = consistency_evaluator(ray.get(cfg["consistency"]) if cfg["consistency"] is not None else None,
                                     components)
        evaluators += [cons] if cons is not None else []
    meta = {"text_encoder": cfg["text_encoder"], "dataset": cfg["data"],
            "extra": cfg["domain"]}
    train_loop(ctx, config, shard["images"], shard["emb"], loop, probes=ray.get(cfg["probes"]) if leader else None,
               evaluators=evaluators, meta=meta, components=components)
