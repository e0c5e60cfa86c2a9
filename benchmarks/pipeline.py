"""Generation benchmarks, each a ratio measured side by side in one run:

- pipeline efficiency: the Ray job's images/s / the local executor's images/s (`--executor local`: one
  process, the same driver and stage code: read + expand, encode text, GAN, PNG, write shards);
- text-embedding cache: generator stage with repeated captions vs all-unique captions;
- driver memory at scale: the job driver's peak RSS for a small vs a large prompts file.

This module orchestrates the distributed layer (it runs the Ray job); it never imports ray itself.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from llmgan.job.config import GenerateConfig

REPO = Path(__file__).resolve().parents[1]


def make_prompts(path: Path, n_prompts: int, n_per_prompt: int = 1, seed: int = 0, distinct: int | None = None) -> str:
    """Short prompts from the shapes vocabulary (as users would type them)."""
    from llmgan.domains.shapes.render import generate_shapes

    k = distinct or n_prompts
    pool = generate_shapes(min(k, 5000), size=8, seed=seed, split="all").column("short_prompt").to_pylist()
    prompts = [pool[i % len(pool)] for i in range(n_prompts)]
    pq.write_table(pa.table({"prompt": prompts, "n": pa.array([n_per_prompt] * n_prompts, pa.int32())}), path,
                   row_group_size=10_000)
    return str(path)


def tiny_checkpoint(path: Path, width: int = 8) -> str:
    """A randomly initialised small GAN (speed and memory do not depend on the weights' values)."""
    from llmgan.gan.checkpoint import save_checkpoint
    from llmgan.gan.config import GanConfig
    from llmgan.gan.step import make_train_state

    save_checkpoint(str(path), make_train_state(GanConfig(image_size=32, g_width=width, d_width=width)),
                    training_state=False)
    return str(path)


def local_job(cfg: GenerateConfig) -> dict[str, float]:
    """The same job with the local executor: one process, one shard after another, no Ray."""
    from llmgan.job.local_executor import LocalExecutor
    from llmgan.job.run import run_job

    t0 = time.perf_counter()
    summary = run_job(cfg, LocalExecutor(), progress=False)
    wall = time.perf_counter() - t0
    return {"images": summary["images_this_run"], "seconds": wall, "images_per_s": summary["images_this_run"] / wall}


def ray_job(cfg: GenerateConfig) -> dict[str, float]:
    from llmgan.distributed.cluster import connect_ray
    from llmgan.distributed.generate import RayExecutor
    from llmgan.job.run import run_job

    connect_ray()  # a running cluster is the production situation: its start-up is not the job's cost
    t0 = time.perf_counter()
    summary = run_job(cfg, RayExecutor(), progress=False)
    wall = time.perf_counter() - t0
    return {"images": summary["images_this_run"], "seconds": wall, "images_per_s": summary["images_this_run"] / wall}


def pipeline_efficiency(work: Path, images: int, expand: bool, repeats: int, ckpt: str | None,
                        n_per_prompt: int = 4) -> dict[str, Any]:
    prompts = make_prompts(work / f"prompts-{images}.parquet", images // n_per_prompt, n_per_prompt)
    runs: dict[str, list[dict[str, float]]] = {"ray": [], "local": []}
    for r in range(repeats):
        for name, fn in (("local", local_job), ("ray", ray_job)):
            cfg = GenerateConfig(prompts=prompts, out=str(work / f"{name}-{expand}-{r}"), expand=expand, ckpt=ckpt,
                                 executor=name,
                                 shard_size=max(100, images // 20), overwrite=True)
            runs[name].append(fn(cfg))
    ray_ips = statistics.median(x["images_per_s"] for x in runs["ray"])
    local_ips = statistics.median(x["images_per_s"] for x in runs["local"])
    return {"images": images, "expand": expand, "repeats": repeats, "ray_images_per_s": round(ray_ips, 1),
            "local_images_per_s": round(local_ips, 1), "ratio": round(ray_ips / local_ips, 3), "target": ">= 0.75"}


def embedding_cache(n: int, distinct: int, ckpt: str | None, repeats: int) -> dict[str, Any]:
    """Generator-stage images/s with `distinct` repeated captions vs all-unique captions."""
    from llmgan.job.plan import ShardSpec
    from llmgan.job.stages import ShardGenerator, ShardWork, WorkItem

    # consistency feedback off: this measures the caption-embedding cache alone
    cfg = GenerateConfig(prompts="unused.parquet", ckpt=ckpt, expand=False, consistency="none")
    generator = ShardGenerator(cfg)

    def work(captions: list[str]) -> ShardWork:
        return ShardWork(ShardSpec(0, 0, n, n), [WorkItem(f"k{i}", c, i, {"prompt": c}) for i, c in enumerate(captions)])

    times: dict[str, list[float]] = {"repeated": [], "unique": []}
    for r in range(repeats):
        for name in ("unique", "repeated"):
            caps = [f"a shape number {i} run {r}" for i in range(n)] if name == "unique" else \
                [f"a repeated shape {i % distinct} run {r}" for i in range(n)]
            t0 = time.perf_counter()
            generator(work(caps))
            times[name].append(time.perf_counter() - t0)
    rep, uni = (statistics.median(times[k]) for k in ("repeated", "unique"))
    return {"images": n, "distinct_repeated": distinct, "repeated_images_per_s": round(n / rep, 1),
            "unique_images_per_s": round(n / uni, 1), "ratio": round(uni / rep, 2)}


def driver_memory(work: Path, small: int, large: int, ckpt: str) -> dict[str, Any]:
    """Peak RSS of the job's driver process (as users run it) for `small` vs `large` prompts."""
    peaks = {}
    for n in (small, large):
        prompts = make_prompts(work / f"mem-{n}.parquet", n, 1, distinct=2000)
        out = work / f"mem-out-{n}"
        cmd = [sys.executable, str(REPO / "jobs/generate.py"), prompts, "--out", str(out), "--ckpt", ckpt,
               "--no-expand", "--shard-size", str(max(1000, n // 50)), "--batch-size", "256", "--quiet",
               "--overwrite"]
        subprocess.run(cmd, check=True, capture_output=True, text=True)
        peaks[n] = json.loads((out / "_SUCCESS.json").read_text())["driver_peak_rss_mb"]
    return {"small_prompts": small, "large_prompts": large, "small_peak_rss_mb": peaks[small],
            "large_peak_rss_mb": peaks[large], "ratio": round(peaks[large] / peaks[small], 3), "target": "<= 1.3"}
