"""The generation job on more than one Ray node, and submitted the user's way with `ray job submit`.

Each test runs its own Ray cluster in child processes, apart from the session's local Ray.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

REPO = Path(__file__).resolve().parents[1]
RAY = str(Path(sys.executable).with_name("ray"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def small_prompts(path: Path, rows: int = 12) -> str:
    pq.write_table(pa.table({"prompt": [f"prompt {i}" for i in range(rows)], "n": pa.array([2] * rows, pa.int32())}),
                   path)
    return str(path)


MULTI_NODE = """
import json, sys
import ray
from ray.cluster_utils import Cluster
from llmgan.distributed.generate import RayExecutor
from llmgan.job.run import run_job
from llmgan.job.config import GenerateConfig, StageResources

cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
ray.init(address=cluster.address, log_to_driver=False)
# the expander asks for a whole CPU here (without expansion it would take none and may sit on the head)
summary = run_job(GenerateConfig(prompts=sys.argv[1], out=sys.argv[2], ckpt=sys.argv[3], expand=False,
                                 shard_size=6, expander=StageResources(num_cpus=1.0)), RayExecutor(), progress=False)
print(json.dumps({"images": summary["images"], "workers": [n.node_id for n in workers]}))
ray.shutdown()
cluster.shutdown()
"""


# test_cluster_config's submit-script test places the two stages on two nodes (by custom resources) by default
@pytest.mark.slow
def test_multi_node_spreads_stages_over_nodes(tmp_path: Path, tiny_ckpt: str) -> None:
    prompts = small_prompts(tmp_path / "p.parquet")
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-c", MULTI_NODE, prompts, str(out), tiny_ckpt],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["images"] == 24
    used = set()
    for stats_file in sorted((out / "shards").glob("*.stats.json")):
        workers = json.loads(stats_file.read_text())["workers"]
        used |= {workers["expand"]["node"], workers["generate"]["node"]}
    # One CPU per worker node and none on the head: the two actors must sit on the two worker nodes.
    assert used == set(report["workers"])


# cluster/submit.py runs this same `ray job submit` (with token auth, two nodes and placement) by default in
# test_cluster_config.py; the bare command from the README is in the slow set (minutes: a cluster of its own)
@pytest.mark.slow
def test_ray_job_submit_the_users_way(tmp_path: Path, tiny_ckpt: str) -> None:
    prompts = small_prompts(tmp_path / "p.parquet", rows=6)
    out = tmp_path / "out"
    port, dash = free_port(), free_port()
    temp_dir = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths must stay < 108 bytes
    # As a user with the project's venv activated; RAY_AUTH_MODE=token: Ray 2.5x token auth (see README).
    env = dict(os.environ, RAY_AUTH_MODE="token", PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    head = subprocess.Popen(
        [RAY, "start", "--head", "--block", f"--port={port}", f"--dashboard-port={dash}", "--num-cpus=2",
         "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--temp-dir={temp_dir}",
         # the session's own local Ray already holds the default agent ports
         f"--dashboard-agent-listen-port={free_port()}", f"--dashboard-agent-grpc-port={free_port()}",
         f"--metrics-export-port={free_port()}", f"--runtime-env-agent-port={free_port()}"],
        env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    address = f"http://127.0.0.1:{dash}"
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            if subprocess.run([RAY, "job", "list", "--address", address], env=env, capture_output=True).returncode == 0:
                break
            time.sleep(1)
        submit = [RAY, "job", "submit", "--address", address, "--working-dir", str(REPO), "--",
                  "python", "jobs/generate.py", prompts, "--out", str(out), "--ckpt", tiny_ckpt, "--no-expand",
                  "--shard-size", "4"]
        deadline = time.time() + 300  # the head's job agent registers a while after the dashboard answers
        while True:
            result = subprocess.run(submit, env=env, capture_output=True, text=True, timeout=600)
            if "No available agent" not in result.stdout + result.stderr or time.time() > deadline:
                break
            time.sleep(2)
        assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
        assert "12 images in 3 shards" in result.stdout
        assert json.loads((out / "_SUCCESS.json").read_text())["images"] == 12
    finally:
        # `ray stop` would also stop the test session's own local Ray; stop just this head instead.
        os.killpg(head.pid, 15)
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, 9)
        shutil.rmtree(temp_dir, ignore_errors=True)
