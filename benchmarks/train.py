"""Training-speed benchmark: images/s of `llmgan train --local` vs Ray Train with 1 worker, and 2 workers vs 1,
measured in one run on the same data and model (`python -m benchmarks.train`); with --matcher-cost instead, the
cost of the matcher trained alongside (--local with and without it) and the consistency figures at each evaluation.

Speeds are steady-state training figures from each run's metrics rows (the first interval, which holds
start-up and warm-up, is left out; checkpoints only at the end); wall times including start-up are shown
beside them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from typing import Any

import numpy as np

from llmgan.gan.config import GanConfig


def _steady(rows: list[dict[str, Any]]) -> float:
    speeds = [r["imgs_per_s"] for r in rows[1:]] or [r["imgs_per_s"] for r in rows]
    return float(np.median(speeds))


def _rows(path: str) -> list[dict[str, Any]]:
    with open(os.path.join(path, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]


def _shapes_data(tmp: str, images: int) -> str:
    """A shapes training file in `tmp` with its caption embeddings already cached (not part of what is timed)."""
    from llmgan.data.tables import write_dataset
    from llmgan.domains.shapes.render import generate_shapes
    from llmgan.text.encoder import TextEncoder, embed_dataset_captions, embedding_cache_url

    data = os.path.join(tmp, "shapes.parquet")
    table = generate_shapes(images, seed=0)
    write_dataset(table, data)
    encoder = TextEncoder()
    embed_dataset_captions(table["caption"].to_pylist(), encoder, embedding_cache_url(data, encoder.identity))
    return data


def run(images: int = 1024, steps: int = 60, batch_size: int = 32, g_width: int = 32, d_width: int = 32,
        cpus: int | None = None, out: Any = sys.stdout) -> dict[str, Any]:
    """Local, Ray Train x1 and Ray Train x2 (then local again, to show machine noise); returns the figures."""
    from llmgan.distributed.cluster import connect_ray
    from llmgan.distributed.train import DistTrainOptions, run_train, shutdown_ray
    from llmgan.gan.train_options import LocalTrainOptions
    from llmgan.gan.trainer import train_local

    cpus = cpus or len(os.sched_getaffinity(0))
    log_every = max(1, steps // 6)
    config = GanConfig(batch_size=batch_size, g_width=g_width, d_width=d_width)
    figures: dict[str, Any] = {"images": images, "steps": steps, "batch_size": batch_size, "g_width": g_width,
                               "d_width": d_width, "cpus": cpus}
    with tempfile.TemporaryDirectory(prefix="llmgan-bench-train-") as tmp:
        data = _shapes_data(tmp, images)

        def local(name: str) -> None:
            t0 = time.perf_counter()
            train_local(data, os.path.join(tmp, name), config, LocalTrainOptions(
                steps=steps, log_every=log_every, checkpoint_every=steps, sample_every=steps, eval_every=steps,
                threads=cpus, progress=False))
            figures[name] = {"imgs_per_s": _steady(_rows(os.path.join(tmp, name))),
                             "wall_s": round(time.perf_counter() - t0, 1)}

        def distributed(name: str, workers: int) -> None:
            t0 = time.perf_counter()
            run_train(data, os.path.join(tmp, name), config, DistTrainOptions(
                steps=steps, workers=workers, cpus_per_worker=max(1, cpus // workers), checkpoint_every=steps,
                sample_every=steps, eval_every=steps, log_every=log_every, classifier=None, progress=False))
            figures[name] = {"imgs_per_s": _steady(_rows(os.path.join(tmp, name))),
                             "wall_s": round(time.perf_counter() - t0, 1)}

        connect_ray(None, num_cpus=cpus, normal_priority=True)  # the local Ray `llmgan train` starts (workers at normal priority)
        try:
            local("local")
            distributed("ray_1_worker", 1)
            distributed("ray_2_workers", 2)
            local("local_again")
        finally:
            shutdown_ray()
    local_mean = (figures["local"]["imgs_per_s"] + figures["local_again"]["imgs_per_s"]) / 2
    figures["ray1_over_local"] = round(figures["ray_1_worker"]["imgs_per_s"] / local_mean, 3)
    figures["ray2_over_ray1"] = round(figures["ray_2_workers"]["imgs_per_s"] / figures["ray_1_worker"]["imgs_per_s"], 3)
    print(f"training speed, {images} shapes images, 32 px, batch {batch_size}, G/D width {g_width}/{d_width}, "
          f"{steps} steps, {cpus} CPUs", file=out)
    for name in ("local", "ray_1_worker", "ray_2_workers", "local_again"):
        f = figures[name]
        print(f"  {name:<14} {f['imgs_per_s']:8.1f} img/s (steady)   {f['wall_s']:7.1f} s wall incl. start-up", file=out)
    print(f"  Ray Train 1 worker / --local: {figures['ray1_over_local']:.3f}   (target >= 0.9)", file=out)
    print(f"  Ray Train 2 workers / 1 worker: {figures['ray2_over_ray1']:.3f}", file=out)
    return figures


def matcher_step_cost(g_width: int, d_width: int, batch_size: int = 32, threads: int = 1,
                      blocks: int = 12, per_block: int = 5) -> dict[str, float]:
    """ms per GAN step and per matcher step, timed in alternating blocks in one process (on a shared machine the
    load moves between whole runs; alternating blocks see the same load), on random 32 px batches."""
    import torch

    from llmgan.gan.matcher_component import MatcherComponent
    from llmgan.gan.step import make_train_state, train_step
    from llmgan.io.images import to_float

    torch.set_num_threads(threads)
    config = GanConfig(batch_size=batch_size, g_width=g_width, d_width=d_width)
    state = make_train_state(config, seed=0)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (512, 32, 32, 3), dtype=np.uint8)
    emb = rng.standard_normal((512, config.text_dim)).astype(np.float32)
    matcher = MatcherComponent(config, images, emb, seed=0)
    x, e, rows = to_float(images[:batch_size]), torch.from_numpy(emb[:batch_size]), np.arange(batch_size) + 256
    gan_ms, matcher_ms = [], []
    for _ in range(blocks):
        t = time.perf_counter()
        for s in range(per_block):
            train_step(state, x, e, s)
        gan_ms.append((time.perf_counter() - t) / per_block * 1000)
        t = time.perf_counter()
        for s in range(per_block):
            matcher.step(x, e, s, rows, None)
        matcher_ms.append((time.perf_counter() - t) / per_block * 1000)
    g, m = float(np.median(gan_ms[2:])), float(np.median(matcher_ms[2:]))  # the first blocks warm up
    return {"gan_ms": round(g, 1), "matcher_ms": round(m, 1), "with_over_without": round(g / (g + m), 3)}


def matcher_cost(images: int = 2048, steps: int = 300, batch_size: int = 32, g_width: int = 16, d_width: int = 16,
                 threads: int = 1, eval_every: int = 100, out: Any = sys.stdout) -> dict[str, Any]:
    """`--local` without, then with, the matcher (then without again, to show machine noise): steady images/s
    and the consistency rows (the shapes classifier's scorer) and matcher losses at each evaluation."""
    from llmgan.eval.classifier import load_classifier
    from llmgan.eval.consistency import ClassifierScorer
    from llmgan.gan.train_options import LocalTrainOptions
    from llmgan.gan.train_report import ConsistencyEvaluator
    from llmgan.gan.trainer import train_local

    config = GanConfig(batch_size=batch_size, g_width=g_width, d_width=d_width)
    consistency = ConsistencyEvaluator(ClassifierScorer(load_classifier()))
    figures: dict[str, Any] = {"images": images, "steps": steps, "batch_size": batch_size, "g_width": g_width,
                               "d_width": d_width, "threads": threads}
    with tempfile.TemporaryDirectory(prefix="llmgan-bench-matcher-") as tmp:
        data = _shapes_data(tmp, images)
        for name, matcher in (("without", False), ("with", True), ("without_again", False)):
            t0 = time.perf_counter()
            train_local(data, os.path.join(tmp, name), config, LocalTrainOptions(
                steps=steps, log_every=max(1, steps // 6), checkpoint_every=steps, sample_every=steps,
                eval_every=eval_every, threads=threads, progress=False, matcher=matcher), consistency=consistency)
            rows = _rows(os.path.join(tmp, name))
            figures[name] = {
                "imgs_per_s": _steady([r for r in rows if "consistency_mean" not in r] or rows),
                "wall_s": round(time.perf_counter() - t0, 1),
                "evals": [{k: r[k] for k in ("step", "consistency_mean", "consistency_below_0.5", "matcher_loss")
                           if k in r} for r in rows if "consistency_mean" in r]}
    base = (figures["without"]["imgs_per_s"] + figures["without_again"]["imgs_per_s"]) / 2
    figures["with_over_without"] = round(figures["with"]["imgs_per_s"] / base, 3)
    print(f"matcher cost, {images} shapes images, 32 px, batch {batch_size}, G/D width {g_width}/{d_width}, "
          f"{steps} steps, {threads} thread(s)", file=out)
    for name in ("without", "with", "without_again"):
        f = figures[name]
        print(f"  {name:<14} {f['imgs_per_s']:8.1f} img/s (steady)   {f['wall_s']:7.1f} s wall", file=out)
        for e in f["evals"]:
            print(f"      step {e['step']:>5}: consistency mean {e['consistency_mean']:.3f}, below 0.5 "
                  f"{e['consistency_below_0.5']:.3f}" + (f", matcher loss {e['matcher_loss']:.3f}"
                                                           if "matcher_loss" in e else ""), file=out)
    print(f"  with / without matcher (whole runs): {figures['with_over_without']:.3f}", file=out)
    for width in sorted({g_width, 32}):
        cost = figures[f"step_cost_width_{width}"] = matcher_step_cost(width, width, batch_size, threads)
        print(f"  alternating blocks, G/D width {width}: GAN step {cost['gan_ms']:.1f} ms, matcher step "
              f"{cost['matcher_ms']:.1f} ms -> images/s with / without {cost['with_over_without']:.3f}", file=out)
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--g-width", type=int, default=32)
    parser.add_argument("--d-width", type=int, default=32)
    parser.add_argument("--cpus", type=int, default=0, help="CPUs to use (0 = all this process may use)")
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    parser.add_argument("--matcher-cost", action="store_true",
                        help="--local with vs without the matcher (--threads 1, eval every steps/3) instead")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if args.matcher_cost:
        figures = matcher_cost(args.images, args.steps, args.batch_size, args.g_width, args.d_width,
                               threads=args.cpus or 1, eval_every=max(1, args.steps // 3))
    else:
        figures = run(args.images, args.steps, args.batch_size, args.g_width, args.d_width, args.cpus or None)
    if args.json:
        print(json.dumps(figures))


if __name__ == "__main__":
    main()
