"""Distributed GAN training on real Ray Train: 2 workers with checkpoints in a moto S3 bucket, a killed worker,
sample/eval intervals, rerun of a finished run, step-by-step equivalence with --local (contrastive pool on), and
two workers on two nodes of a multi-node cluster."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import load_file
from typer.testing import CliRunner

from llmgan.cli.app import app
from llmgan.distributed.train import DistTrainOptions, run_train
from llmgan.gan.config import GanConfig
from llmgan.gan.inference import GanModel
from llmgan.io.storage import Storage, join

TINY = GanConfig(batch_size=8, g_width=4, d_width=4, z_dim=8, cond_dim=8, contrastive_dim=8)
QUIET = dict(classifier=None, progress=False)


@pytest.fixture(scope="module")
def shapes_data(tmp_path_factory: pytest.TempPathFactory) -> str:
    """48 captioned shapes with their embedding table already in the cache folder (as a user's second run has)."""
    from llmgan.data.tables import write_dataset
    from llmgan.domains.shapes.render import generate_shapes
    from llmgan.text.encoder import TextEncoder, embed_dataset_captions, embedding_cache_url

    url = str(tmp_path_factory.mktemp("data") / "shapes.parquet")
    table = generate_shapes(48, seed=5)
    write_dataset(table, url)
    encoder = TextEncoder()
    embed_dataset_captions(table["caption"].to_pylist(), encoder, embedding_cache_url(url, encoder.identity))
    return url


def _jsonl(storage: Storage, url: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in storage.read_text(url).splitlines() if line.strip()]


def _train_in_thread(*args: Any, **kwargs: Any) -> tuple[threading.Thread, dict[str, Any]]:
    result: dict[str, Any] = {}

    def train() -> None:
        try:
            result["summary"] = run_train(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - surfaced by the test's assertions
            result["error"] = exc

    thread = threading.Thread(target=train)
    thread.start()
    return thread, result


def test_two_workers_on_s3_survive_a_killed_worker_sample_and_rerun_does_nothing(
    ray_local: Any, shapes_data: str, s3_server: str, s3_url: str
) -> None:
    storage = Storage(s3_server)
    # with the shipped shapes classifier: per-attribute accuracy of the EMA generator at each checkpoint
    options = DistTrainOptions(steps=30, workers=2, checkpoint_every=5, log_every=5, sample_every=10, eval_every=15,
                               max_failures=2, progress=False)
    thread, result = _train_in_thread(shapes_data, s3_url, TINY, options, storage=storage)
    snapshot, events = join(s3_url, "checkpoint_manager_snapshot.json"), join(s3_url, "events.jsonl")
    victim, deadline = None, time.time() + 400
    while time.time() < deadline and thread.is_alive():
        # kill only once Ray Train has registered a checkpoint (its snapshot names it)
        if storage.exists(snapshot) and "00000005" in storage.read_text(snapshot) and storage.exists(events):
            victim = _jsonl(storage, events)[0]["workers"][1]["pid"]
            os.kill(victim, signal.SIGKILL)  # a training worker process dies mid-run
            break
        time.sleep(0.1)
    thread.join(timeout=500)
    assert victim is not None, "the run ended before a worker could be killed"
    assert "error" not in result, result.get("error")
    summary = result["summary"]
    assert summary["steps"] == 30 and summary["starts"] == 2 and not summary["already_complete"]

    starts = [e for e in _jsonl(storage, events) if e["event"] == "start"]
    assert starts[0]["resumed_from"] is None and [w["rank"] for w in starts[0]["workers"]] == [0, 1]
    resumed = starts[1]["resumed_from"]
    assert resumed is not None and resumed >= 5 and resumed % 5 == 0  # the last checkpoint's step, not 0
    assert summary["resumed_from"] == [resumed]
    assert victim not in {w["pid"] for w in starts[1]["workers"]}
    rows = _jsonl(storage, join(s3_url, "metrics.jsonl"))
    assert [r["step"] for r in rows] == list(range(5, 35, 5))  # rows past the checkpoint were dropped, redone once
    assert all(r["workers"] == 2 and r["imgs_per_s"] > 0 and np.isfinite(r["loss_d"]) and r["lr_d"] == TINY.lr_d
               for r in rows)
    evaluated = [r["step"] for r in rows if any(k.startswith("acc_") for k in r)]
    assert evaluated == [15, 30]  # --eval-every 15, not at every checkpoint
    assert all(0 <= r[f"acc_{a}"] <= 1 for r in rows if r["step"] in evaluated
               for a in ("shape", "color", "size", "position", "background"))
    assert [r["step"] for r in rows if "consistency_mean" in r] == evaluated
    assert all(np.isfinite(r["matcher_loss"]) for r in rows)  # the matcher trains on both ranks (averaged grads)

    names = storage.list(s3_url)
    for name in ("checkpoints/00000030/config.json", "checkpoints/00000030/training_state.pt",
                 "checkpoints/00000030/matcher_state.pt", "final/matcher.json", "final/matcher.safetensors",
                 "checkpoints/00000025/generator.safetensors", "final/config.json", "final/generator.safetensors",
                 "samples/00000030.png", "samples/captions.txt", "metrics.png", "run.json", "summary.json"):
        assert name in names, name
    assert not any(n.startswith("checkpoints/00000005/") for n in names)  # only the newest two are kept
    assert sorted(n for n in names if n.startswith("samples/")) == [  # --sample-every 10
        "samples/00000010.png", "samples/00000020.png", "samples/00000030.png", "samples/captions.txt"]
    assert not any(n.startswith("final/training_state") for n in names)  # inference checkpoint only

    # the run URL itself loads for inference (final/), and so does a single checkpoint
    model = GanModel.load(s3_url, storage=storage, discriminator=True)
    assert model.meta["step"] == 30 and model.meta["dataset"] == shapes_data
    emb = np.random.default_rng(0).standard_normal((4, model.config.text_dim)).astype(np.float32)
    images, scores = model.sample(emb, seeds=[1, 2, 3, 4], best_of=2)
    assert images.shape == (4, 32, 32, 3) and images.dtype == np.uint8 and np.isfinite(scores).all()
    assert images.std() > 0
    assert GanModel.load(join(s3_url, "checkpoints", "00000025"), storage=storage).meta["step"] == 25

    n_events = len(_jsonl(storage, events))
    again = run_train(shapes_data, s3_url, TINY, options, storage=storage)
    assert again["already_complete"] and again["steps_this_run"] == 0 and again["steps"] == 30
    assert len(_jsonl(storage, events)) == n_events  # no worker started


def test_one_worker_matches_local_training(ray_local: Any, shapes_data: str, tmp_path: Path) -> None:
    """Same seed and data, contrastive pool and matcher on: `llmgan train --local` and a 1-worker Ray Train run are
    the same training loop, so every step's losses (the matcher's too), the evaluations (accuracy, consistency),
    the sample grids and the weights (G, D, matcher) agree; the sample and eval intervals are honoured under Ray
    Train."""
    runner = CliRunner()
    common = ["--data", shapes_data, "--steps", "6", "--batch-size", "8", "--g-width", "4", "--d-width", "4",
              "--contrastive-pool", "16", "--log-every", "1", "--checkpoint-every", "3", "--sample-every", "2",
              "--eval-every", "3", "--seed", "11", "--health-warmup", "2"]
    local = runner.invoke(app, ["train", "--local", *common, "--out", str(tmp_path / "local"), "--threads", "1"])
    assert local.exit_code == 0, local.output
    dist = runner.invoke(app, ["train", *common, "--out", str(tmp_path / "dist"), "--workers", "1",
                               "--cpus-per-worker", "1"])
    assert dist.exit_code == 0, dist.output
    summary = json.loads(dist.stdout.strip().splitlines()[-1])
    assert summary["steps"] == 6 and summary["steps_this_run"] == 6
    local_summary = json.loads(local.stdout.strip().splitlines()[-1])
    found = {name: [(f["check"], f["first_step"], f["active"]) for f in s["health"]]
             for name, s in (("local", local_summary), ("dist", summary))}
    assert found["local"] == found["dist"] and found["dist"]  # a fresh tiny G draws one image: found alike

    rows = {name: [json.loads(ln) for ln in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
            for name in ("local", "dist")}
    assert [r["step"] for r in rows["local"]] == [r["step"] for r in rows["dist"]] == [1, 2, 3, 4, 5, 6]
    for a, b in zip(rows["local"], rows["dist"]):
        for key in ("loss_d", "loss_g", "loss_d_cond", "d_real", "d_fake", "d_contrastive", "g_contrastive",
                    "matcher_loss", "d_acc", "d_real_score", "d_fake_score"):
            assert b[key] == pytest.approx(a[key], abs=2e-4), (a["step"], key)
        # the training-health checks from --health-warmup on: the same keys and figures on both runtimes
        health = sorted(k for k in a if k.startswith(("health_", "matcher_fit", "matcher_heldout")))
        assert health == sorted(k for k in b if k.startswith(("health_", "matcher_fit", "matcher_heldout")))
        assert bool(health) == (a["step"] >= 2) and all(b[k] == pytest.approx(a[k], abs=2e-4) for k in health)
        assert ("r1" in a) == ("r1" in b) and b.get("r1", 0) == pytest.approx(a.get("r1", 0), abs=2e-4)
        # the shipped shapes classifier scores the EMA generator every --eval-every steps, on both runtimes
        accs = sorted(k for k in a if k.startswith("acc_"))
        assert accs == sorted(k for k in b if k.startswith("acc_"))
        assert bool(accs) == (a["step"] % 3 == 0), a
        assert all(b[k] == pytest.approx(a[k], abs=1e-6) for k in accs)
        # shapes captions: consistency under the shipped classifier's scorer at the same steps, same figures
        cons = sorted(k for k in a if k.startswith("consistency_"))
        assert cons == sorted(k for k in b if k.startswith("consistency_"))
        assert cons == (["consistency_below_0.5", "consistency_mean"] if a["step"] % 3 == 0 else []), a
        assert all(b[k] == pytest.approx(a[k], abs=1e-6) for k in cons)
    for name in ("local", "dist"):
        samples = sorted(p.name for p in (tmp_path / name / "samples").iterdir())
        assert samples == ["00000002.png", "00000004.png", "00000006.png", "captions.txt"], (name, samples)
        assert (tmp_path / name / "metrics.png").exists()
    assert (tmp_path / "local" / "samples" / "00000004.png").read_bytes() == \
        (tmp_path / "dist" / "samples" / "00000004.png").read_bytes()
    for name in ("local", "dist"):  # the matcher trained alongside (--matcher is the default), calibrated
        meta = json.loads((tmp_path / name / "final" / "matcher.json").read_text())
        assert meta["info"]["trained_with_gan"] and meta["info"]["steps"] == 6
        assert json.loads((tmp_path / name / "final" / "config.json").read_text())["domain"] == "shapes"
    assert json.loads((tmp_path / "local" / "final" / "matcher.json").read_text())["calibration"] == pytest.approx(
        json.loads((tmp_path / "dist" / "final" / "matcher.json").read_text())["calibration"], abs=1e-4)
    for weights in ("generator.safetensors", "discriminator.safetensors", "matcher.safetensors"):
        a = load_file(str(tmp_path / "local" / "final" / weights))
        b = load_file(str(tmp_path / "dist" / "final" / weights))
        assert a.keys() == b.keys()
        assert max(float(np.abs(a[k] - b[k]).max()) for k in a) < 1e-5, weights


MULTI_NODE = """
import json, sys
import ray
from ray.cluster_utils import Cluster
from typer.testing import CliRunner
from llmgan.cli.app import app

cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
nodes = [cluster.add_node(num_cpus=1) for _ in range(2)]
# the user's way: the CLI joins the running cluster with --address
res = CliRunner().invoke(app, ["train", "--address", cluster.address, "--data", sys.argv[1], "--out", sys.argv[2],
                               "--workers", "2", "--steps", "4", "--checkpoint-every", "2", "--log-every", "2",
                               "--batch-size", "8", "--g-width", "4", "--d-width", "4", "--no-eval"])
assert res.exit_code == 0, res.output
summary = json.loads(res.stdout.strip().splitlines()[-1])
print(json.dumps({"steps": summary["steps"], "nodes": [n.node_id for n in nodes]}))
ray.shutdown()  # the CLI's connection, before the cluster goes
cluster.shutdown()
"""


@pytest.mark.slow  # a cluster of its own in a subprocess; two workers (one node) are trained by default above
def test_two_workers_on_two_nodes(shapes_data: str, tmp_path: Path) -> None:
    out = tmp_path / "run"
    res = subprocess.run([sys.executable, "-c", MULTI_NODE, shapes_data, str(out)], capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    report = json.loads(res.stdout.strip().splitlines()[-1])
    assert report["steps"] == 4
    start = json.loads((out / "events.jsonl").read_text().splitlines()[0])
    # one CPU per worker node and none on the head: rank 0 and rank 1 must sit on the two different nodes
    assert sorted(w["node"] for w in start["workers"]) == sorted(report["nodes"])
    assert (out / "final" / "generator.safetensors").exists()


def test_bad_options_are_one_line_errors_before_ray_starts(shapes_data: str, tmp_path: Path) -> None:
    runner = CliRunner()
    base = ["train", "--data", shapes_data, "--out", str(tmp_path / "r")]
    for extra, words in ((["--batch-size", "7", "--workers", "2"], "multiple of workers"),
                         (["--steps", "5", "--epochs", "1"], "either --steps or --epochs"),
                         (["--workers", "0"], "--workers"),
                         (["--max-failures", "-1"], "--max-failures"),
                         (["--sample-every", "0"], "--sample-every"),
                         (["--eval-every", "0"], "--eval-every")):
        res = runner.invoke(app, [*base, *extra])
        assert res.exit_code == 2 and words in res.output and "Traceback" not in res.output, (extra, res.output)
    res = runner.invoke(app, ["train", "--data", shapes_data, "--out", "s3://just-a-bucket"])
    assert res.exit_code == 2 and "folder inside the bucket" in res.output
    assert not (tmp_path / "r").exists()  # nothing written
    assert DistTrainOptions(epochs=2.5).total_steps(images=48, batch_size=8) == 15
    assert DistTrainOptions().total_steps(images=48, batch_size=8) == 10_000


@pytest.mark.slow
def test_ray_job_submit_the_users_way(shapes_data: str, tmp_path: Path) -> None:
    """`ray job submit -- python jobs/train.py ...` against a `ray start --head` (run with --run-slow)."""
    import shutil
    import socket
    import tempfile

    def free_port() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    ray_cli = str(Path(sys.executable).with_name("ray"))
    repo = Path(__file__).resolve().parents[1]
    out = tmp_path / "run"
    port, dash = free_port(), free_port()
    temp_dir = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # Ray's socket paths must stay short
    env = dict(os.environ, RAY_AUTH_MODE="token", PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    head = subprocess.Popen(
        [ray_cli, "start", "--head", "--block", f"--port={port}", f"--dashboard-port={dash}", "--num-cpus=2",
         "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--temp-dir={temp_dir}"],
        env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    address = f"http://127.0.0.1:{dash}"
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            if subprocess.run([ray_cli, "job", "list", "--address", address], env=env, capture_output=True).returncode == 0:
                break
            time.sleep(1)
        submit = [ray_cli, "job", "submit", "--address", address, "--working-dir", str(repo), "--",
                  "python", "jobs/train.py", "--data", shapes_data, "--out", str(out), "--workers", "2",
                  "--steps", "4", "--checkpoint-every", "2", "--log-every", "2", "--batch-size", "8",
                  "--g-width", "4", "--d-width", "4", "--no-eval"]
        for _ in range(30):  # the head's job agent registers a few seconds after the dashboard answers
            result = subprocess.run(submit, env=env, capture_output=True, text=True, timeout=600)
            if "No available agent" not in result.stderr:
                break
            time.sleep(2)
        assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
        assert '"steps": 4' in result.stdout
        assert json.loads((out / "final" / "config.json").read_text())["step"] == 4
    finally:
        os.killpg(head.pid, signal.SIGTERM)  # only this head, not the session's local Ray
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
        shutil.rmtree(temp_dir, ignore_errors=True)
