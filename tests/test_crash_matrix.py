"""Crash/resume matrix: kill the driver, an expander actor, a generator actor or a whole worker node at several
points; each run, completed by reruns where needed, yields exactly the sha256 set of an uninterrupted run.

The default run covers the driver killed right after `_job.json` (the generator actor killed mid-job is in
test_generate.py); the full matrix is `pytest --run-slow tests/test_crash_matrix.py` (`make test-slow`).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from llmgan.io.storage import Storage
from llmgan.job.config import GenerateConfig
from llmgan.job.shards import committed_shards
from tests.test_generate import sha_set, write_prompts

REPO = Path(__file__).resolve().parents[1]
SHARD_SIZE = 5


def generate(**kw) -> dict:
    """One Ray job; consistency scoring off: its redraws are compute, not a different path through a crash."""
    from llmgan.distributed.generate import RayExecutor
    from llmgan.job.run import run_job

    return run_job(GenerateConfig(**kw, consistency="none"), RayExecutor(), progress=False)


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory, ray_local, tiny_ckpt: str) -> dict:
    root = tmp_path_factory.mktemp("matrix")
    prompts = write_prompts(root / "prompts.parquet", 30)
    out = str(root / "base")
    summary = generate(prompts=prompts, out=out, ckpt=tiny_ckpt, expand=False, shard_size=SHARD_SIZE)
    return {"prompts": prompts, "shas": sha_set(Storage(), out), "shards": summary["shards"]}


@pytest.fixture(scope="module")
def base_expanded(base: dict, tiny_ckpt: str, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The same prompts through the shipped caption LM, so that the expander has real work when it is killed."""
    out = str(tmp_path_factory.mktemp("matrix") / "base_expanded")
    summary = generate(prompts=base["prompts"], out=out, ckpt=tiny_ckpt, expand=True, shard_size=SHARD_SIZE)
    return {"prompts": base["prompts"], "shas": sha_set(Storage(), out), "shards": summary["shards"]}


def wait_for_commits(out: str, count: int, timeout: float = 300) -> dict[int, str]:
    deadline = time.time() + timeout
    while time.time() < deadline:
        done = committed_shards(Storage(), out)
        if len(done) >= count:
            return done
        time.sleep(0.05)
    raise AssertionError(f"fewer than {count} shards committed in {timeout}s")


def actor_pids(title: str) -> list[int]:
    """Pids of this test process's own Ray actors whose process title contains `title` (e.g. ExpandActor)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                parents[int(entry)] = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    mine, frontier = set(), [os.getpid()]
    while frontier:
        kids = [p for p, pp in parents.items() if pp == frontier[-1]]
        frontier.pop()
        mine.update(kids)
        frontier += kids
    found = []
    for pid in mine:
        try:
            if title in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"):
                found.append(pid)
        except OSError:
            pass
    return found


ACTOR_CASES = [
    # an actor restarted by Ray Data: test_generate.py kills the default (fused) layout's actor once a shard is
    # committed; these are the other points. Expand/GenerateActor exist in the split layout, ShardActor in fused.
    pytest.param("ShardActor", 0, False, id="fused-at-start", marks=pytest.mark.slow),
    pytest.param("ExpandActor", 0, False, id="expander-at-start", marks=pytest.mark.slow),
    # with caption expansion on, the expander dies while its LM is expanding the first shards
    pytest.param("ExpandActor", 0, True, id="expander-while-expanding", marks=pytest.mark.slow),
    pytest.param("GenerateActor", 0, False, id="generator-at-start", marks=pytest.mark.slow),
    pytest.param("GenerateActor", 4, False, id="generator-later", marks=pytest.mark.slow),  # 1: test_generate.py
]  # without caption expansion the expander finishes all shards before the first commit


@pytest.mark.parametrize("actor, commits, expand", ACTOR_CASES)
def test_killed_actor(request: pytest.FixtureRequest, tiny_ckpt: str, tmp_path: Path, actor: str, commits: int,
                      expand: bool) -> None:
    """Kill the stage's actor process once `commits` shards are committed (0: as soon as it is up)."""
    base = request.getfixturevalue("base_expanded" if expand else "base")
    out = str(tmp_path / "out")
    killed: list[int] = []

    def killer() -> None:
        deadline = time.time() + 300
        while time.time() < deadline and not killed:
            pids = actor_pids(actor)
            if pids and len(committed_shards(Storage(), out)) >= commits:
                for pid in pids:
                    try:
                        os.kill(pid, signal.SIGKILL)
                        killed.append(pid)
                    except ProcessLookupError:
                        pass
            time.sleep(0.05)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    summary = generate(prompts=base["prompts"], out=out, ckpt=tiny_ckpt, expand=expand, shard_size=SHARD_SIZE,
                       stage_layout="fused" if actor == "ShardActor" else "split")
    thread.join(timeout=60)
    if not killed and commits:
        pytest.skip(f"the {actor} had finished its work before {commits} shard(s) were committed")
    assert killed, f"the {actor} was never killed"
    assert summary["shards"] == base["shards"]
    assert sha_set(Storage(), out) == base["shas"]


DRIVER_POINTS = [
    pytest.param("job_file", id="driver-after-job-file"),
    pytest.param("half", id="driver-half", marks=pytest.mark.slow),
    pytest.param("all_but_one", id="driver-all-but-one", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("point", DRIVER_POINTS)
def test_killed_driver(base: dict, ray_local, tiny_ckpt: str, tmp_path: Path, point: str) -> None:
    out = tmp_path / "out"
    cmd = [sys.executable, str(REPO / "jobs/generate.py"), base["prompts"], "--out", str(out), "--ckpt", tiny_ckpt,
           "--no-expand", "--consistency", "none", "--shard-size", str(SHARD_SIZE), "--quiet"]
    env = dict(os.environ, RAY_ADDRESS=ray_local.get_runtime_context().gcs_address)
    proc = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    want = {"job_file": 0, "half": base["shards"] // 2, "all_but_one": base["shards"] - 1}[point]
    while time.time() < deadline and proc.poll() is None:
        if (out / "_job.json").exists() and len(committed_shards(Storage(), str(out))) >= want:
            break
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "_SUCCESS.json").exists()
    result = subprocess.run(cmd[:-1], env=env, capture_output=True, text=True, timeout=600)  # not --quiet
    assert result.returncode == 0, result.stderr[-2000:]
    # a normal run's stderr holds our log and progress lines only: no Ray core_worker, Ray Data or auth chatter
    foreign = [line for line in result.stderr.splitlines()
               if not (line.startswith("[llmgan] ") or " INFO llmgan." in line or " WARNING llmgan." in line)]
    assert not foreign, foreign
    assert sha_set(Storage(), str(out)) == base["shas"]
    assert json.loads((out / "_SUCCESS.json").read_text())["images"] == len(base["shas"])


NODE_LOSS = """
import json, sys, threading, time
import ray
from ray.cluster_utils import Cluster
from llmgan.distributed.generate import RayExecutor
from llmgan.job.run import run_job
from llmgan.job.outcomes import JobFailed
from llmgan.io.storage import Storage
from llmgan.job.config import GenerateConfig, StageResources
from llmgan.job.shards import committed_shards

prompts, out, ckpt, shard_size, after = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
nodes = [cluster.add_node(num_cpus=1) for _ in range(2)]
ray.init(address=cluster.address, log_to_driver=False)
half = StageResources(num_cpus=0.5)  # both stages fit on the node that survives
cfg = GenerateConfig(prompts=prompts, out=out, ckpt=ckpt, expand=False, consistency="none", shard_size=shard_size,
                     expander=half, generator=half)
removed = []

def remove_busy_node():
    while True:
        done = committed_shards(Storage(), out)
        if len(done) >= after:
            stats = json.loads(open(next(iter(done.values()))).read())
            busy = stats["workers"]["generate"]["node"]
            node = next(n for n in nodes if n.node_id == busy)
            cluster.remove_node(node, allow_graceful=False)
            removed.append(busy)
            return
        time.sleep(0.05)

threading.Thread(target=remove_busy_node, daemon=True).start()
runs = 0
while True:
    runs += 1
    try:
        summary = run_job(cfg, RayExecutor(), progress=False)
        break
    except JobFailed as exc:
        print("run failed:", exc, file=sys.stderr)
        if runs >= 3:
            raise
print(json.dumps({"runs": runs, "removed": removed, "images": summary["images"]}))
ray.shutdown()
cluster.shutdown()
"""


@pytest.mark.slow
@pytest.mark.parametrize("after", [1, 4], ids=["node-first", "node-later"])
def test_worker_node_removed(base: dict, tiny_ckpt: str, tmp_path: Path, after: int) -> None:
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-c", NODE_LOSS, base["prompts"], str(out), tiny_ckpt, str(SHARD_SIZE),
                             str(after)], capture_output=True, text=True, timeout=900, cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads([line for line in result.stdout.splitlines() if line.startswith("{")][-1])
    assert report["removed"], "no node was removed"
    print(f"node removed after {after} commit(s): completed in {report['runs']} run(s)")
    assert sha_set(Storage(), str(out)) == base["shas"]
    assert (out / "_SUCCESS.json").exists()
