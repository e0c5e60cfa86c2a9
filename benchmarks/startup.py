"""The job's fixed cost as a user meets it: `jobs/generate.py` run as a fresh process per executor (the Ray
one starts its own local Ray), Ray images/s ÷ local images/s at an everyday size, with each run's
`startup_seconds` from `_SUCCESS.json`. Several checkouts' Ray runs can be compared back to back in one run
against one local run (a checkout's `jobs/generate.py` imports that checkout's llmgan):

    python -m benchmarks.startup --images 6000 --checkout /path/to/main --checkout .

This module orchestrates processes; it never imports ray itself.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.pipeline import make_prompts

REPO = Path(__file__).resolve().parents[1]


def run_cli(checkout: Path, prompts: str, out: Path, executor: str, shard_size: int) -> dict[str, Any]:
    """One job as a user runs it; wall time is the whole process (imports, Ray start, shutdown)."""
    cmd = [sys.executable, str(checkout / "jobs/generate.py"), prompts, "--out", str(out), "--executor", executor,
           "--shard-size", str(shard_size), "--overwrite", "--quiet"]
    t0 = time.perf_counter()
    # run from the checkout: Ray's workers put the driver's working directory first on their path
    subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=checkout)
    wall = time.perf_counter() - t0
    summary = json.loads((out / "_SUCCESS.json").read_text())
    images = summary["images_this_run"]
    return {"executor": executor, "images": images, "process_seconds": round(wall, 2),
            "images_per_s": round(images / wall, 1), "job_images_per_s": summary["images_per_second"],
            "startup_seconds": summary.get("startup_seconds")}


def compare(checkouts: list[Path], images: int, work: Path, n_per_prompt: int = 4) -> dict[str, Any]:
    """One local run beside each checkout's Ray run, in the order ray(first), local, ray(second), ... so that every
    Ray run is next to the baseline on a machine whose load drifts. The local run uses the last checkout (the
    local executor's path is the driver and stage code, not Ray's start-up); each ratio is that checkout's Ray
    images/s over the one local figure."""
    prompts = make_prompts(work / f"prompts-{images}.parquet", images // n_per_prompt, n_per_prompt)
    shard_size = max(100, images // 20)  # as benchmarks.pipeline sizes shards
    ray_runs: dict[str, dict[str, Any]] = {}
    local: dict[str, Any] | None = None
    for i, checkout in enumerate(checkouts):
        ray_runs[str(checkout)] = run_cli(checkout, prompts, work / f"out-{i}-ray", "ray", shard_size)
        print(json.dumps({"checkout": str(checkout), **ray_runs[str(checkout)]}), flush=True)
        if i == 0:
            local = run_cli(checkouts[-1], prompts, work / "out-local", "local", shard_size)
            print(json.dumps({"checkout": str(checkouts[-1]), **local}), flush=True)
    assert local is not None
    result = {"images": images, "expand": True, "local": local, "ray": ray_runs, "target": ">= 0.85",
              "ratio": {c: round(r["images_per_s"] / local["images_per_s"], 3) for c, r in ray_runs.items()}}
    print(json.dumps({"ratio": result["ratio"]}), flush=True)
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=6000)
    parser.add_argument("--checkout", action="append", type=Path, help="a checkout's root (default: this one)")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one)")
    args = parser.parse_args(argv)
    checkouts = [c.resolve() for c in (args.checkout or [REPO])]
    if args.work is not None:
        args.work.mkdir(parents=True, exist_ok=True)
        compare(checkouts, args.images, args.work)
        return
    with tempfile.TemporaryDirectory() as tmp:
        compare(checkouts, args.images, Path(tmp))


if __name__ == "__main__":
    main()
