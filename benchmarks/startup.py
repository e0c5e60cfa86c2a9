"""The job's fixed cost as a user meets it: `jobs/generate.py` run as a fresh process per executor (the Ray
one starts its own local Ray), Ray images/s ÷ local images/s at an everyday size, with each run's
`startup_seconds` from `_SUCCESS.json`. Several checkouts can be compared back to back in one run (a checkout's
`jobs/generate.py` imports that checkout's llmgan):

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


def compare(checkouts: list[Path], images: int, work: Path, n_per_prompt: int = 4) -> list[dict[str, Any]]:
    """Per checkout: local, then Ray, back to back; the ratio is Ray's images/s over local's."""
    prompts = make_prompts(work / f"prompts-{images}.parquet", images // n_per_prompt, n_per_prompt)
    shard_size = max(100, images // 20)  # as benchmarks.pipeline sizes shards
    rows = []
    for i, checkout in enumerate(checkouts):
        runs = {ex: run_cli(checkout, prompts, work / f"out-{i}-{ex}", ex, shard_size) for ex in ("local", "ray")}
        rows.append({"checkout": str(checkout), "images": images, "expand": True, **{
            f"{ex}_{k}": v for ex, r in runs.items() for k, v in r.items() if k not in ("executor", "images")},
            "ratio": round(runs["ray"]["images_per_s"] / runs["local"]["images_per_s"], 3), "target": ">= 0.85"})
        print(json.dumps(rows[-1]), flush=True)
    return rows


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
