"""Stage budget: each stage's throughput on this machine, and what a node of G GPUs and C cores should do end to end.

    python -m benchmarks --only budget [--quick] [--gpus N --cores N]
    python -m benchmarks.budget [--quick] [--gpus N --cores N] [--no-validate] [--ray] [--json FILE]

Measured (through the job's own stage classes, llmgan.job.stages, on a realistic shapes job: short prompts, the
shipped caption LM, GAN and consistency scorer), per device (cpu; cuda when present) and per CPU core (torch
threads = 1) beside all cores (threads = C):

    read         prompt rows/s        ShardExpander's read: Parquet rows, validation, grounding
    expand       captions/s           ShardExpander's caption LM at the job's batch
    text         captions/s           ShardGenerator's text encoder, on captions not yet in its cache
    generate     images/s             ShardGenerator's GAN (first draws, at the job's batch)
    consistency  images/s             ShardGenerator's feedback: scoring every draw and the redraws it asks for
    encode       images/s per core    llmgan.io.images.ImageEncoding per format and size, bytes/image beside
    write        images/s             llmgan.job.shards.write_shard to a temporary folder

The model (predict): every stage s needs d_s units per image (rows: 1/n_per_prompt; captions: variants/n_per_prompt
with expansion, so captions are reused by the images of a prompt; draws: 1, redraws being in consistency) and does
r_s units/s per core (threads = 1) or per GPU. Its cost is c_s = d_s / r_s core-seconds (GPU-seconds) per image.
A node of C cores whose stage pools are sized to the work runs C / sum(c_s over CPU stages) images/s; stages on the
GPU share the G devices the same way, and the slower of the two resources sets the rate. The binding stage is the
largest cost on the binding resource (speeding it up raises the rate most); each stage's balanced allotment is
C * c_s / sum(c). The local executor runs read..consistency one after another in one process at C threads while
encoding and writing run on threads beside them; its rate is 1 / (sum of those stages' seconds at C threads + the
encode and write core-seconds spread over the C cores). A job of N images adds the fixed cost (driver, model
checks and loads, first batches, contact sheet: measured as the wall time of a one-shard job): N / (fixed + N / rate).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from llmgan.errors import UserError
from llmgan.io.images import ImageEncoding
from llmgan.job.config import GenerateConfig, StageResources, usable_cores

ENCODINGS: dict[str, ImageEncoding] = {
    "png level 1": ImageEncoding("png", png_level=1),
    "png level 6": ImageEncoding("png", png_level=6),
    "webp lossless": ImageEncoding("webp"),
    "webp q90": ImageEncoding("webp", quality=90),
    "jpeg q95": ImageEncoding("jpeg", quality=95),
}
ENCODE_SIZES = (64, 128, 256)
SERIAL_STAGES = ("read", "expand", "text", "generate", "consistency")  # in line in the local executor
GPU_CAPABLE = ("expand", "text", "generate", "consistency")  # stages whose model can sit on a GPU
POOLS = {"expander": ("read", "expand"), "generator": ("text", "generate", "consistency"), "encoder": ("encode", "write")}
UNITS = {"read": "rows", "expand": "captions", "text": "captions", "generate": "images", "consistency": "images",
         "encode": "images", "write": "images"}


@dataclass(frozen=True)
class JobShape:
    """What the job asks of each stage per image (the validation job's settings by default)."""

    n_per_prompt: int = 4
    variants: int = 1
    expand: bool = True
    shard_size: int = 300
    batch_size: int = 64

    def config(self, prompts: str, out: str, gpus: float = 0.0) -> GenerateConfig:
        """With GPUs, the caption LM's actor takes a quarter of one and each generator the rest of one, so both
        fit a single-GPU node (the local executor only reads "> 0": both models on the GPU)."""
        lm_gpus = 0.25 if gpus and self.expand else 0.0
        return GenerateConfig(prompts=prompts, out=out, n_per_prompt=self.n_per_prompt, variants=self.variants,
                              expand=self.expand, shard_size=self.shard_size, batch_size=self.batch_size,
                              executor="local", overwrite=True, contact_sheet_size=64,
                              expander=StageResources(num_gpus=lm_gpus),
                              generator=StageResources(max_actors=None, num_gpus=1.0 - lm_gpus if gpus else 0.0))

    def demand(self) -> dict[str, float]:
        """Units per image: a prompt row feeds n_per_prompt images and its captions are shared by them."""
        captions = self.variants / self.n_per_prompt if self.expand else 1.0 / self.n_per_prompt
        return {"read": 1.0 / self.n_per_prompt, "expand": captions if self.expand else 0.0, "text": captions,
                "generate": 1.0, "consistency": 1.0, "encode": 1.0, "write": 1.0}


def make_prompts(path: Path, rows: int, shape: JobShape, seed: int = 0) -> str:
    """Short shapes prompts as users type them, every row distinct by id (so no caption comes from a cache)."""
    from benchmarks.pipeline import make_prompts as pipeline_prompts

    return pipeline_prompts(path, rows, shape.n_per_prompt, seed=seed)


def _set_threads(n: int) -> None:
    import torch

    torch.set_num_threads(max(1, n))


def this_node() -> tuple[int, int]:
    """(cores, GPUs) of this machine."""
    import torch

    return usable_cores(), torch.cuda.device_count() if torch.cuda.is_available() else 0


def check_node(gpus: int | None, cores: int | None) -> tuple[int, int]:
    """The node to predict for, (gpus, cores), this machine's where not given; UserError before anything runs."""
    here_cores, here_gpus = this_node()
    cores = here_cores if cores is None else cores
    gpus = here_gpus if gpus is None else gpus
    if cores < 1 or gpus < 0:
        raise UserError(f"--cores must be >= 1 and --gpus >= 0, got {cores} and {gpus}")
    if gpus > 0 and not here_gpus:
        raise UserError(f"--gpus {gpus}: this machine has no GPU to measure per-GPU rates on; run the budget on a "
                        f"GPU machine (or predict with --gpus 0)")
    return gpus, cores


def clock_for(threads: int) -> Callable[[], float]:
    """One thread: this thread's CPU seconds, a core's work whatever else the (shared) machine runs, which is what the
    node model prices; more threads: wall seconds, what one process with that many threads gets here."""
    return time.thread_time if threads == 1 else time.perf_counter


@contextmanager
def stage_clock(clock: Callable[[], float]) -> Iterator[None]:
    """The job's stage classes time themselves with time.perf_counter; let them read `clock` instead."""
    from types import SimpleNamespace

    from llmgan.job import stages

    real = stages.time
    stages.time = SimpleNamespace(perf_counter=clock)  # type: ignore[assignment]
    try:
        yield
    finally:
        stages.time = real


# ---- measurements ------------------------------------------------------------------------------------------------
def measure_job_stages(prompts: str, shape: JobShape, work: Path, device: str, threads: list[int], shards: int,
                       rows_per_shard: int, row0: int, min_s: float,
                       log: Callable[[str], None]) -> tuple[dict[int, dict], list]:
    """Stage rates through ShardExpander -> ShardGenerator on fresh prompt rows, per thread count.

    Returns ({threads: {stage: rate, ...}}, the shard results of the last setting (for the write figures)) ."""
    from llmgan.job.plan import ShardSpec
    from llmgan.job.stages import ShardExpander, ShardGenerator

    cfg = shape.config(prompts, str(work / "unused"), gpus=1.0 if device == "cuda" else 0.0)
    t0 = time.perf_counter()
    expander, generator = ShardExpander(cfg), ShardGenerator(cfg)
    load_s = time.perf_counter() - t0
    index = 0

    def shard(rows: int) -> tuple[Any, Any, int]:
        nonlocal index, row0
        spec = ShardSpec(index, row0, row0 + rows, rows * shape.n_per_prompt)
        index, row0 = index + 1, row0 + rows
        work_ = expander(spec)
        fresh = len({it.caption for it in work_.items} - set(generator.encoder._cache))
        return work_, generator(work_), fresh

    out: dict[int, dict] = {}
    results: list = []
    for t in threads:
        _set_threads(t)
        shard(max(2, rows_per_shard // 8))  # warm-up: first-call allocations, lazy tables, the new thread pool
        clock = clock_for(t)
        sec = dict.fromkeys(SERIAL_STAGES, 0.0)
        units = dict.fromkeys(SERIAL_STAGES, 0.0)
        draws = images = 0
        results = []
        for _ in range(shards):
            with stage_clock(clock):
                w, r, fresh = shard(rows_per_shard)
            for k in SERIAL_STAGES:
                sec[k] += r.seconds.get(k, 0.0)
            rows = r.row_stop - r.row_start
            units["read"] += rows
            units["expand"] += rows * shape.variants if shape.expand else 0
            units["text"] += fresh
            units["generate"] += len(r.records)
            units["consistency"] += len(r.records)
            images += len(r.records)
            draws += (r.consistency or {}).get("draws", len(r.records))
            results.append(r)
        rates = {k: units[k] / sec[k] for k in SERIAL_STAGES if sec[k] > 0 and units[k] > 0}
        out[t] = {"rates": rates, "extra_draws_per_image": (draws - images) / images if images else 0.0,
                  "images": images, "scorer_images_per_s": _scorer_rate(generator, results, min_s, clock),
                  "clock": "thread CPU" if clock is time.thread_time else "wall"}
        log(f"  {device} threads={t}: " + ", ".join(f"{k} {v:,.1f} {UNITS[k]}/s" for k, v in rates.items()))
    out_load = {"load_s": load_s, "scorer": getattr(generator.feedback, "scorer", None) and generator.feedback.scorer.name}
    for t in out:
        out[t].update(out_load)
    return out, results


def _scorer_rate(generator: Any, results: list, min_s: float, clock: Callable[[], float]) -> float | None:
    """images/s of the job's consistency scorer alone (first draws only, no redraws), on the stage's own images."""
    if generator.feedback is None:
        return None
    records = [rec for r in results for rec in r.records][:generator.cfg.batch_size]
    images = np.stack([rec.pixels for rec in records])  # the generator stage's own pixels, not yet encoded
    captions, prompts = [rec.caption for rec in records], [rec.meta["prompt"] for rec in records]
    emb = generator.encoder.encode(captions)
    scorer = generator.feedback.scorer
    return _rate(lambda: scorer.score(images, captions, prompts, emb), len(records), min_s, clock)


def _rate(fn: Callable[[], Any], items: int, min_s: float, clock: Callable[[], float], max_iters: int = 50) -> float:
    """items/s of fn by `clock` (median of calls after a warm-up; calls until min_s of wall time has passed)."""
    fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < 3 or (time.perf_counter() - start < min_s and len(times) < max_iters):
        t0 = clock()
        fn()
        times.append(max(clock() - t0, 1e-9))
    return items / statistics.median(times)


def emoji_samples(n: int, device: str, batch: int, min_s: float, threads: list[int]) -> tuple[np.ndarray, dict]:
    """n images of the shipped 64 px emoji GAN from real emoji captions (realistic pictures for the encoders), and
    its generator images/s per thread count at the job's batch."""
    from llmgan.gan.inference import GanModel
    from llmgan.job.models import bundle
    from llmgan.text.encoder import TextEncoder

    gan_dir, _ = bundle("emoji")
    gan = GanModel.load(gan_dir, device=device)
    words = ["smiling face", "red heart", "green plant", "cat face", "yellow star", "blue car", "pizza slice",
             "sun with rays", "flag of a country", "hand pointing right", "clock", "book"]
    emb = TextEncoder(gan.text_encoder, device=device).encode([words[i % len(words)] for i in range(max(n, batch))])
    images = gan.sample(emb[:n], list(range(n)))[0]
    if images.shape[-1] == 4:  # on white, as a viewer shows them: every format (jpeg too) encodes the same pixels
        alpha = images[..., 3:].astype(np.float32) / 255.0
        images = (images[..., :3] * alpha + 255.0 * (1.0 - alpha)).round().astype(np.uint8)
    rates = {}
    for t in threads:
        _set_threads(t)
        rates[t] = _rate(lambda: gan.sample(emb[:batch], list(range(batch))), batch, min_s, clock_for(t))
    return images, {"image_size": gan.image_size, "images_per_s": rates}


def measure_encoders(images: np.ndarray, min_s: float, job_images: np.ndarray | None) -> list[dict[str, Any]]:
    """images/s on one core and bytes/image of every encoding at each size (the emoji GAN's 64 px samples, resized
    with bicubic filtering: smooth edges and gradients, like a GAN's output at that size); the job's own encoding
    (png level 6 of its images at their size) first."""
    from PIL import Image

    rows = []
    sets: list[tuple[str, int, np.ndarray, dict[str, ImageEncoding]]] = []
    if job_images is not None:
        sets.append(("job (shapes GAN)", job_images.shape[1], job_images, {"png level 6": ENCODINGS["png level 6"]}))
    for size in ENCODE_SIZES:
        arr = images if images.shape[1] == size else np.stack(
            [np.asarray(Image.fromarray(im).resize((size, size), Image.BICUBIC)) for im in images])
        sets.append(("emoji GAN", size, arr, ENCODINGS))
    for source, size, arr, encodings in sets:
        for name, enc in encodings.items():
            out = [enc.encode(im) for im in arr]
            rate = _rate(lambda enc=enc, arr=arr: [enc.encode(im) for im in arr], len(arr), min_s, time.thread_time,
                         max_iters=20)
            rows.append({"source": source, "size": size, "encoding": name, "images_per_s_per_core": round(rate, 1),
                         "bytes_per_image": round(sum(map(len, out)) / len(out))})
    return rows


def measure_write(results: list, work: Path) -> float:
    """images/s of write_shard (WebDataset tar + index + stats) for the shards the stages produced."""
    from llmgan.io.storage import Storage
    from llmgan.job.shards import write_shard

    storage = Storage()
    total_s, images = 0.0, 0
    encode = ImageEncoding().encode  # the job's default; the encoding stage is measured on its own
    for i, r in enumerate(results):
        r = replace(r, records=[replace(rec, image=encode(rec.pixels), pixels=None) if rec.pixels is not None
                                else rec for rec in r.records])
        out = work / f"write-{i}"
        t0 = time.thread_time()  # a core's work: the writes are local files, nothing waits on a network
        write_shard(storage, str(out), r, "webdataset", "budget")
        total_s += time.thread_time() - t0
        images += len(r.records)
        shutil.rmtree(out, ignore_errors=True)
    return images / total_s


def fixed_cost(shape: JobShape, work: Path, executor: str, rate: float, gpus: int = 0) -> tuple[float, float, int]:
    """Seconds a job costs whatever its size (the driver's plan and model checks, model loads, first batches, the
    contact sheet): the wall time of a one-prompt job less its few images at the steady `rate`; beside it the CPU
    seconds that job used and its images."""
    from llmgan.job.run import run_job

    small = work / "fixed-prompts.parquet"
    make_prompts(small, 1, shape, seed=99)
    cfg = replace(shape.config(str(small), str(work / f"fixed-{executor}"), gpus), executor=executor)
    meter = CpuMeter()
    t0 = time.perf_counter()
    summary = run_job(cfg, _executor(executor), progress=False)
    wall = time.perf_counter() - t0
    return max(0.0, wall - summary["images_this_run"] / rate), meter.stop(), summary["images_this_run"]


def _executor(name: str) -> Any:
    if name == "local":
        from llmgan.job.local_executor import LocalExecutor

        return LocalExecutor()
    from llmgan.distributed.generate import RayExecutor

    return RayExecutor(quiet=True)


# ---- the model -----------------------------------------------------------------------------------------------------
def predict(rates: dict[str, dict[str, float]], shape: JobShape, cores: int, gpus: int,
            extra_draws: float) -> dict[str, Any]:
    """Predicted images/s of a node with pools sized to the work. rates: {"cpu": {stage: units/s per core}, and
    "cuda": {stage: units/s per GPU} when a GPU was measured}."""
    demand = shape.demand()
    on_gpu = [s for s in GPU_CAPABLE if gpus > 0 and s in rates.get("cuda", {}) and demand[s] > 0]
    cost: dict[str, float] = {}
    for s, d in demand.items():
        if d <= 0:
            continue
        r = rates["cuda" if s in on_gpu else "cpu"].get(s)
        if not r:
            raise UserError(f"no measured rate for stage {s!r}")
        cost[s] = d / r
    # each process driving a GPU holds a host core: one generator per GPU, and one expander per GPU when the LM is there
    feeders = gpus * ((1 if "generate" in on_gpu else 0) + (1 if "expand" in on_gpu else 0))
    cpu_cores = max(cores - feeders, 0.0) if on_gpu else float(cores)
    cpu_cost = sum(c for s, c in cost.items() if s not in on_gpu)
    gpu_cost = sum(c for s, c in cost.items() if s in on_gpu)
    cpu_rate = cpu_cores / cpu_cost if cpu_cost > 0 else math.inf
    gpu_rate = gpus / gpu_cost if gpu_cost > 0 else math.inf
    rate = min(cpu_rate, gpu_rate)
    binding_on = "gpu" if gpu_rate < cpu_rate else "cpu"
    candidates = {s: c for s, c in cost.items() if (s in on_gpu) == (binding_on == "gpu")}
    binding = max(candidates, key=candidates.get)
    stages = {}
    for s, c in cost.items():
        where = "gpu" if s in on_gpu else "cpu"
        allot = (gpus * c / gpu_cost) if where == "gpu" else (cpu_cores * c / cpu_cost)
        stages[s] = {"on": where, "units_per_image": round(demand[s], 4),
                     "rate_per_unit": round(rates["cuda" if where == "gpu" else "cpu"][s], 2),
                     "ms_per_image": round(1000 * c, 3), "allotted": round(allot, 3),
                     "share": round(c / (gpu_cost if where == "gpu" else cpu_cost), 3)}
    pools = {}
    if not on_gpu:  # the Ray executor's fused layout (auto on CPUs): every stage in one single-threaded actor per core
        pools["shard"] = {"actors": cores, "cpus_per_actor": 1.0, "gpus_per_actor": 0.0}
    for pool, members in POOLS.items() if on_gpu else ():
        cpu = sum(stages[s]["allotted"] for s in members if s in stages and stages[s]["on"] == "cpu")
        gpu = sum(stages[s]["allotted"] for s in members if s in stages and stages[s]["on"] == "gpu")
        actors = gpus if gpu > 0 else max(1, round(cpu))
        pools[pool] = {"actors": actors, "cpus_per_actor": round(cpu / actors, 3),
                       "gpus_per_actor": round(gpu / actors, 3)}
    return {"cores": cores, "gpus": gpus, "layout": "split" if on_gpu else "fused",
            "images_per_s": round(rate, 1), "binding_stage": binding,
            "binding_resource": binding_on, "cpu_images_per_s": round(cpu_rate, 1),
            "gpu_images_per_s": None if math.isinf(gpu_rate) else round(gpu_rate, 1),
            "extra_draws_per_image": round(extra_draws, 4), "stages": stages, "pools": pools}


def predict_local(rates_all: dict[str, float], rates_one: dict[str, float], shape: JobShape, cores: int) -> dict:
    """The one-process executor on this machine: the in-line stages at C threads one after another, encoding and
    writing on threads beside them, their core-seconds taken from the same C cores."""
    demand = shape.demand()
    inline = {s: demand[s] / rates_all[s] for s in SERIAL_STAGES if demand[s] > 0}
    beside = {s: demand[s] / rates_one[s] for s in ("encode", "write")}
    per_image = sum(inline.values()) + sum(beside.values()) / cores
    return {"images_per_s": round(1 / per_image, 1), "ms_per_image": {s: round(1000 * c, 3) for s, c in
                                                                     {**inline, **beside}.items()},
            "binding_stage": max(inline, key=inline.get)}


# ---- the run -------------------------------------------------------------------------------------------------------
def run(quick: bool = False, gpus: int | None = None, cores: int | None = None, validate: bool = True,
        ray: bool = False, work: Path | None = None, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    import torch

    log = log or (lambda m: print(m, file=sys.stderr, flush=True))
    here_cores, here_gpus = this_node()
    gpus, cores = check_node(gpus, cores)
    work = Path(work or tempfile.mkdtemp(prefix="llmgan-budget-"))
    work.mkdir(parents=True, exist_ok=True)
    threads_before = torch.get_num_threads()
    shape = JobShape(shard_size=30 if quick else 300)
    # the job's own shards: shard_size images of n_per_prompt each, so the LM and the GAN see the job's batches
    shards, rows_per_shard, min_s = (1, 8, 0.05) if quick else (4, shape.shard_size // shape.n_per_prompt, 1.0)
    threads = sorted({1, here_cores})
    devices = ["cpu"] + (["cuda"] if here_gpus else [])
    n_prompts = 2_000 if quick else 20_000
    prompts = make_prompts(work / "prompts.parquet", n_prompts, shape)
    fig: dict[str, Any] = {"machine": {"cores": here_cores, "gpus": here_gpus, "load_average": os.getloadavg()[0],
                                       "gpu": torch.cuda.get_device_name(0) if here_gpus else None},
                           "job": vars(shape) | {"consistency": "auto", "model": "shipped shapes32 + shapes-captioner"}}
    try:
        stages: dict[str, dict] = {}
        row0 = 0
        results: list = []
        for device in devices:
            log(f"job stages on {device} ...")
            stages[device], res = measure_job_stages(prompts, shape, work, device, threads if device == "cpu"
                                                     else [here_cores], shards, rows_per_shard, row0, min_s, log)
            row0 += (shards * len(threads) + 1) * rows_per_shard
            results = results or res
        log("emoji 64 px generator ...")
        emoji_images, emoji = emoji_samples(4 if quick else 64, "cpu", 8 if quick else 64, min_s, threads)
        if here_gpus:
            emoji["cuda_images_per_s"] = emoji_samples(8, "cuda", 512, min_s, [here_cores])[1]["images_per_s"]
        _set_threads(1)
        log("image encoders (one core) ...")
        job_images = np.stack([rec.pixels[..., :3] for r in results for rec in r.records])
        encoders = measure_encoders(emoji_images, min_s / 2, job_images)
        log("shard writes ...")
        write_rate = measure_write(results, work)
        job_encode = next(r["images_per_s_per_core"] for r in encoders if r["source"].startswith("job"))
        cpu1 = stages["cpu"][1]
        rates = {"cpu": {**cpu1["rates"], "encode": job_encode, "write": write_rate}}
        if "cuda" in stages:
            rates["cuda"] = stages["cuda"][here_cores]["rates"]
        extra = cpu1["extra_draws_per_image"]
        fig.update(stages={d: {str(t): v for t, v in s.items()} for d, s in stages.items()},
                   emoji_generator=emoji, encoders=encoders, write_images_per_s=round(write_rate, 1), rates=rates)
        fig["prediction"] = predict(rates, shape, cores, gpus, extra)
        fig["prediction_here"] = predict(rates, shape, here_cores, here_gpus, extra)
        rates_all = {**stages["cpu"][here_cores]["rates"]}
        fig["prediction_local"] = predict_local(rates_all, rates["cpu"], shape, here_cores)
        _set_threads(threads_before)
        if validate:
            core_ms = sum(v["ms_per_image"] for v in fig["prediction_here"]["stages"].values())
            fig["validation"] = [validate_job("local", fig["prediction_local"]["images_per_s"], shape, work, quick,
                                              log)]
            if ray:
                fig["validation"].append(validate_job("ray", fig["prediction_here"]["images_per_s"], shape, work,
                                                      quick, log))
            for v in fig["validation"]:  # the cost model alone: one-thread core-ms per image over the job's CPU
                v["model_core_ms_per_image"] = round(core_ms, 2)
                v["model_core_ms_over_job_cpu_ms"] = round(core_ms / v["job_cpu_ms_per_image_past_fixed"], 3)
            fig["ratio"] = fig["validation"][0]["predicted_over_measured"]
        else:
            fig["ratio"] = fig["prediction"]["images_per_s"]
        fig["target"] = "predicted / measured within 0.8-1.2"
    finally:
        _set_threads(threads_before)
    return fig


def validate_job(executor: str, rate: float, shape: JobShape, work: Path, quick: bool,
                 log: Callable[[str], None]) -> dict[str, Any]:
    """A real job through run_job: measured end-to-end images/s beside the prediction N / (fixed + N / rate).
    On a GPU machine the job's models go on the GPU (one GPU per generator), as the prediction assumes; GPU
    utilisation is sampled while it runs, and the generator's busy share is its stage seconds over the wall time
    of its processes (goal on a GPU: >= 50 %)."""
    from llmgan.job.run import run_job

    if executor == "ray":
        from llmgan.distributed.cluster import connect_ray

        connect_ray(quiet=True)  # a running cluster is the production situation: its start is not the job's cost
    log(f"fixed cost ({executor}: a one-shard job) ...")
    cores, gpus = this_node()
    fixed, fixed_cpu, fixed_images = fixed_cost(shape, work, executor, rate, gpus)
    # ~30 s of steady work at the predicted rate (the busier the machine, the smaller), 4 to 20 whole shards
    per_shard = shape.shard_size
    images = 48 if quick else int(min(20 * per_shard, max(4 * per_shard, 30 * rate)) // per_shard * per_shard)
    prompts = make_prompts(work / f"validate-{executor}.parquet", images // shape.n_per_prompt, shape, seed=7)
    cfg = replace(shape.config(prompts, str(work / f"validate-{executor}"), gpus), executor=executor)
    log(f"end-to-end job ({executor}, {images} images) ...")
    load0, meter, gpu_meter = os.getloadavg()[0], CpuMeter(), GpuMeter() if gpus else None
    t0 = time.perf_counter()
    summary = run_job(cfg, _executor(executor), progress=False)
    wall = time.perf_counter() - t0
    cpu = meter.stop()
    gpu_use = gpu_meter.stop() if gpu_meter is not None else None
    # generator processes: one per GPU, else the fused actors (one per core) or the local executor's one
    generators = gpus or (cores if executor == "ray" else 1)
    measured = summary["images_this_run"] / wall
    predicted = summary["images_this_run"] / (fixed + summary["images_this_run"] / rate)
    return {"executor": executor, "images": summary["images_this_run"], "wall_s": round(wall, 1),
            "fixed_s": round(fixed, 1), "steady_images_per_s_predicted": rate,
            "predicted_images_per_s": round(predicted, 1), "measured_images_per_s": round(measured, 1),
            "predicted_over_measured": round(predicted / measured, 3),
            "stage_seconds": summary["stage_seconds"], "binding_stage": summary.get("binding_stage"),
            "extra_draws_per_image": (summary.get("consistency") or {}).get("extra_draws_per_image"),
            # what the job got of the node (all its processes), and its CPU per image beside the model's core-seconds
            "job_cpu_s": round(cpu, 1), "job_cpu_share_of_node": round(cpu / (wall * (os.cpu_count() or 1)), 3),
            "job_cpu_ms_per_image": round(1000 * cpu / max(1, summary["images_this_run"]), 2),
            # less the one-prompt job's CPU (start-up, model loads): what each further image cost
            "job_cpu_ms_per_image_past_fixed": round(1000 * (cpu - fixed_cpu) / max(1, summary["images_this_run"]
                                                                                    - fixed_images), 2),
            "load_average_before": round(load0, 2), "load_average_after": round(os.getloadavg()[0], 2),
            "generator_busy_share": round(summary["stage_seconds"].get("generate", 0.0) / (wall * generators), 3),
            "gpu_utilisation": gpu_use}


class CpuMeter:
    """CPU seconds used by this process and every process below it (a local Ray's raylet and workers) while it runs:
    Linux /proc, sampled every half second so that workers which exit before the end still count (their last
    sample); on a shared machine this says how much of the node the job actually got."""

    def __init__(self) -> None:
        import threading

        self._tick = os.sysconf("SC_CLK_TCK")
        self._start = self._children()
        self._last: dict[int, float] = dict(self._start)
        self._self0 = _process_cpu()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _children(self) -> dict[int, float]:
        """{pid: CPU seconds} of every descendant of this process."""
        parent: dict[int, int] = {}
        cpu: dict[int, float] = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parent[int(entry)] = int(fields[1])
            cpu[int(entry)] = (int(fields[11]) + int(fields[12])) / self._tick
        mine, todo = set(), [os.getpid()]
        while todo:
            p = todo.pop()
            kids = [c for c, pp in parent.items() if pp == p and c not in mine]
            mine.update(kids)
            todo += kids
        return {p: cpu[p] for p in mine}

    def _sample(self) -> None:
        while not self._stop.wait(0.5):
            self._last.update(self._children())

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        self._last.update(self._children())
        children = sum(v - self._start.get(p, 0.0) for p, v in self._last.items())
        return _process_cpu() - self._self0 + children


class GpuMeter:
    """Mean GPU utilisation (nvidia-smi's percentage of time a kernel ran, every GPU) sampled every half second
    while a job runs; None where nvidia-smi is missing or fails."""

    def __init__(self) -> None:
        import threading

        self._samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import subprocess

        cmd = ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"]
        while not self._stop.wait(0.5):
            try:
                out = subprocess.run(cmd, capture_output=True, text=True, timeout=5, check=True).stdout
                self._samples += [float(v) for v in out.split()]
            except (OSError, subprocess.SubprocessError, ValueError):
                return

    def stop(self) -> dict[str, float] | None:
        self._stop.set()
        self._thread.join()
        if not self._samples:
            return None
        busy = [v for v in self._samples if v > 0]
        return {"mean_percent": round(statistics.fmean(self._samples), 1),
                "share_of_samples_busy": round(len(busy) / len(self._samples), 3), "samples": len(self._samples)}


def _process_cpu() -> float:
    import resource

    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


# ---- report --------------------------------------------------------------------------------------------------------
def table(fig: dict[str, Any]) -> str:
    m = fig["machine"]
    lines = [f"stage budget on {m['cores']} cores, GPU: {m['gpu'] or 'none'}, load average {m['load_average']:.1f} "
             "at the start (per-core figures are CPU time: the other processes slow them little)", "",
             "| stage | unit | " + " | ".join(f"{d}, {t} thread{'s' if int(t) > 1 else ''} ({s[t]['clock']})"
                                              for d, s in fig["stages"].items() for t in s) + " |",
             "| --- | --- |" + " --- |" * sum(len(s) for s in fig["stages"].values())]
    for stage in SERIAL_STAGES:
        cells = [f"{s[t]['rates'][stage]:,.1f}" if stage in s[t]["rates"] else "-"
                 for s in fig["stages"].values() for t in s]
        lines.append(f"| {stage} | {UNITS[stage]}/s | " + " | ".join(cells) + " |")
    lines.append("| consistency (scorer alone, first draws) | images/s | "
                 + " | ".join(f"{s[t]['scorer_images_per_s']:,.1f}" if s[t].get("scorer_images_per_s") else "-"
                              for s in fig["stages"].values() for t in s) + " |")
    emoji = fig["emoji_generator"]
    lines.append(f"| generate (emoji {emoji['image_size']} px) | images/s | "
                 + " | ".join(f"{emoji['images_per_s'].get(int(t), emoji['images_per_s'].get(t, '-')):,.1f}"
                              if d == "cpu" else "-" for d, s in fig["stages"].items() for t in s) + " |")
    lines.append(f"| write (WebDataset shard) | images/s | {fig['write_images_per_s']:,.1f} (one core) |")
    lines += ["", "| encode | size | bytes/image | images/s/core |", "| --- | --- | --- | --- |"]
    for r in fig["encoders"]:
        lines.append(f"| {r['encoding']} ({r['source']}) | {r['size']} | {r['bytes_per_image']:,} | "
                     f"{r['images_per_s_per_core']:,.1f} |")
    for key in ("prediction", "prediction_here"):
        p = fig[key]
        if key == "prediction_here" and (p["cores"], p["gpus"]) == (fig["prediction"]["cores"], fig["prediction"]["gpus"]):
            continue
        lines += ["", f"node: {p['cores']} cores, {p['gpus']} GPUs -> **{p['images_per_s']:,.1f} images/s**, "
                      f"binding stage: **{p['binding_stage']}** ({p['binding_resource']})",
                  "", "| stage | on | units/image | rate/unit | ms/image | share | allotted |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        for s, v in p["stages"].items():
            lines.append(f"| {s} | {v['on']} | {v['units_per_image']} | {v['rate_per_unit']:,} | {v['ms_per_image']} | "
                         f"{v['share']:.0%} | {v['allotted']} |")
        lines.append(f"{p['layout']} layout, pools: " + "; ".join(f"{k} {v['actors']} x ({v['cpus_per_actor']} CPU"
                                           + (f", {v['gpus_per_actor']} GPU" if v["gpus_per_actor"] else "") + ")"
                                           for k, v in p["pools"].items()))
    for v in fig.get("validation", []):
        lines += ["", f"validation ({v['executor']}, {v['images']} images): predicted {v['predicted_images_per_s']} vs "
                      f"measured {v['measured_images_per_s']} images/s = {v['predicted_over_measured']} "
                      f"(fixed {v['fixed_s']} s, steady {v['steady_images_per_s_predicted']} images/s; the job's "
                      f"binding stage: {(v['binding_stage'] or {}).get('stage')})",
                  f"the job got {v['job_cpu_share_of_node']:.0%} of the node's CPU (load average "
                  f"{v['load_average_before']} -> {v['load_average_after']}), {v['job_cpu_ms_per_image']} CPU-ms per "
                  f"image, {v['job_cpu_ms_per_image_past_fixed']} past the one-prompt job's, against the model's "
                  f"{v['model_core_ms_per_image']} core-ms",
                  f"generator busy {v['generator_busy_share']:.0%} of its processes' wall time; GPU utilisation: "
                  + (f"{v['gpu_utilisation']['mean_percent']} % mean" if v.get("gpu_utilisation") else "no GPU"),
                  "job stage seconds: " + ", ".join(f"{k}={s}" for k, s in v["stage_seconds"].items())]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.budget", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: the code path in a minute or two")
    parser.add_argument("--gpus", type=int, default=None, help="GPUs of the node to predict (default: this machine)")
    parser.add_argument("--cores", type=int, default=None, help="CPU cores of the node (default: this machine)")
    parser.add_argument("--no-validate", action="store_true", help="skip the measured end-to-end job")
    parser.add_argument("--ray", action="store_true", help="validate the Ray executor too")
    parser.add_argument("--json", default=None, help="write every figure to this JSON file")
    args = parser.parse_args(argv)
    try:
        fig = run(args.quick, args.gpus, args.cores, not args.no_validate, args.ray)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        Path(args.json).write_text(json.dumps(fig, indent=1, default=str) + "\n")
    print(table(fig))
    return 0


if __name__ == "__main__":
    sys.exit(main())
