"""Soak test (slow, not run by default): 200,000 prompts at tiny size through the fault-injecting S3 proxy;
memory stays flat and every image is present exactly once.

Run: `pytest --run-slow -s tests/test_soak.py` (LLMGAN_SOAK_PROMPTS=20000 for a shorter soak).
"""

from __future__ import annotations

import io
import os
import threading
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from llmgan.io.storage import Storage, join
from llmgan.job.config import GenerateConfig, StageResources
from tests.fault_proxy import FaultProxy, uniform_rates


def tree_rss_mb(root: int) -> float:
    """Resident memory of `root` and all its descendants (the driver plus the local Ray it started)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
                parents[int(entry)] = int(fields[1])
            except (OSError, IndexError, ValueError):
                continue
    family, frontier = {root}, [root]
    while frontier:
        pid = frontier.pop()
        kids = [p for p, pp in parents.items() if pp == pid and p not in family]
        family.update(kids)
        frontier += kids
    total = 0
    for pid in family:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


@pytest.mark.slow
def test_soak_200k_prompts_through_faulty_s3(ray_local, tiny_ckpt: str, s3_server: str, s3_url: str,
                                             tmp_path: Path) -> None:
    from llmgan.distributed.generate import RayExecutor
    from llmgan.job.run import run_job

    rows = int(os.environ.get("LLMGAN_SOAK_PROMPTS", "200000"))
    words = ["red", "blue", "green", "white", "star", "circle", "cross", "small", "large"]
    table = pa.table({"id": [f"s{i}" for i in range(rows)],
                      "prompt": [f"{words[i % 4]} {words[4 + i % 3]} {words[7 + i % 2]}" for i in range(rows)]})
    buf = io.BytesIO()
    pq.write_table(table, buf, row_group_size=20_000)
    direct = Storage(s3_server)
    prompts = join(s3_url, "soak.parquet")
    direct.write_bytes(prompts, buf.getvalue())
    out = join(s3_url, "out")
    samples: list[tuple[float, float]] = []
    stop = threading.Event()

    def sample_memory() -> None:
        t0 = time.time()
        while not stop.wait(2.0):
            samples.append((time.time() - t0, tree_rss_mb(os.getpid())))

    # a lower rate than the 20% test: 2,000 requests at 20% would spend most of the soak in SlowDown backoff
    rates = uniform_rates(0.05, ("503", "500", "reset", "reset_after", "truncate"))
    with FaultProxy(s3_server, rates=rates, seed=3) as proxy:
        sampler = threading.Thread(target=sample_memory, daemon=True)
        sampler.start()
        try:
            summary = run_job(GenerateConfig(
                prompts=prompts, out=out, ckpt=tiny_ckpt, expand=False, shard_size=5000, batch_size=256,
                s3_endpoint=proxy.url, generator=StageResources(num_cpus=1), contact_sheet_size=16,
            ), RayExecutor(), progress=True)
        finally:
            stop.set()
            sampler.join()
    assert summary["images"] == rows
    keys: list[str] = []
    ids: list[str] = []
    for name in direct.list(join(out, "index")):
        if name.endswith(".parquet"):
            index = pq.read_table(io.BytesIO(direct.read_bytes(join(out, "index", name))))
            keys += index.column("key").to_pylist()
            ids += index.column("prompt_id").to_pylist()
    assert len(keys) == len(set(keys)) == rows
    assert sorted(ids) == sorted(table.column("id").to_pylist())  # every prompt once, none twice
    # flat memory: the second half of the run peaks no higher than the first half's peak plus a margin
    half = len(samples) // 2
    first, second = max(m for _, m in samples[:half]), max(m for _, m in samples[half:])
    print(f"soak: {rows} images in {summary['wall_seconds']:.0f}s ({summary['images_per_second']} img/s), "
          f"{proxy.faults()} faults injected over {proxy.counts['requests']} requests; "
          f"RSS peak first half {first:.0f} MB, second half {second:.0f} MB")
    assert second <= first * 1.25 + 200
