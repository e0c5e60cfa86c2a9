"""The generation job end to end on a real local Ray: outputs, readers, S3, resume, faults, bad input."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from llmgan.errors import UserError
from llmgan.io.storage import Storage, join
from llmgan.job.config import GenerateConfig
from llmgan.job.shards import committed_shards

REPO = Path(__file__).resolve().parents[1]


def write_prompts(path: Path, n_rows: int, bad_rows: bool = False, open_vocab: bool = False) -> str:
    prompts = [f"{c} {s}" for c in ("red", "blue", "green", "white") for s in ("star", "circle", "cross")]
    rows = {"id": [f"p/{i}" for i in range(n_rows)], "prompt": [prompts[i % len(prompts)] for i in range(n_rows)],
            "n": pa.array([1 + i % 3 for i in range(n_rows)], pa.int32()), "style": ["flat"] * n_rows}
    if bad_rows:
        rows["prompt"][1], rows["prompt"][2], rows["n"] = None, "   ", pa.array([1, 1, 1] + [2] * (n_rows - 3), pa.int32())
    if open_vocab:  # words outside the domain's tables: one it grounds, one it cannot draw
        rows["prompt"][3], rows["prompt"][5] = "a Sapphire-colored square icon", "red dragon"
    pq.write_table(pa.table(rows), path)
    return str(path)


def expected_images(path: str) -> int:
    t = pq.read_table(path)
    return sum(n for p, n in zip(t.column("prompt").to_pylist(), t.column("n").to_pylist()) if p and p.strip())


def sha_set(storage: Storage, out: str) -> set[str]:
    shas: set[str] = set()
    for name in storage.list(join(out, "index")):
        if name.endswith(".parquet"):
            table = pq.read_table(io.BytesIO(storage.read_bytes(join(out, "index", name))))
            shas.update(table.column("sha256").to_pylist())
    return shas


def run(ray_local, **kw) -> dict:
    from llmgan.distributed.generate import RayExecutor
    from llmgan.job.run import run_job

    return run_job(GenerateConfig(**kw), RayExecutor(), progress=False)


def test_end_to_end_webdataset(ray_local, tiny_ckpt: str, tmp_path: Path) -> None:
    import webdataset as wds

    prompts = write_prompts(tmp_path / "prompts.parquet", 12, bad_rows=True)
    out = str(tmp_path / "out")
    summary = run(ray_local, prompts=prompts, out=out, ckpt=tiny_ckpt, expand=False, shard_size=7, batch_size=4)
    total = expected_images(prompts)
    assert summary["images"] == total == summary["images_this_run"]
    assert summary["rejected"] == 2 and summary["rejected_reasons"] == {"null prompt": 1, "empty prompt": 1}
    files = sorted(os.listdir(out))
    assert files == ["_SUCCESS.json", "_job.json", "contact_sheet.png", "index", "shards"]
    assert json.loads(Path(out, "_SUCCESS.json").read_text())["images"] == total
    startup = summary["startup_seconds"]  # the fixed cost, in order, and Ray's share of getting ready
    assert set(startup) == {"checks", "executor_ready", "first_shard", "ray_connect"}
    assert 0 < startup["checks"] <= startup["executor_ready"] <= startup["first_shard"] <= summary["wall_seconds"]
    assert 0 <= startup["ray_connect"] <= startup["executor_ready"] - startup["checks"] + 0.02
    tars = sorted(str(p) for p in Path(out, "shards").glob("*.tar"))
    samples = list(wds.WebDataset(tars, shardshuffle=False).decode("pil"))
    assert len(samples) == total
    assert len({s["__key__"] for s in samples}) == total
    for s in samples:
        assert s["png"].size == (32, 32)
        meta = s["json"]
        assert meta["style"] == "flat" and meta["caption"] == s["txt"] == meta["prompt"]
        assert meta["prompt_id"].startswith("p/")
    assert Image.open(Path(out, "contact_sheet.png")).size[0] > 32


# test_image_formats runs the documented `datasets` line on every format (local executor, whose bytes are Ray's:
# test_local_executor_writes_the_ray_executors_bytes_without_ray)
@pytest.mark.slow
def test_parquet_format_loads_with_hf_datasets(ray_local, tiny_ckpt: str, tmp_path: Path) -> None:
    import datasets

    prompts = write_prompts(tmp_path / "prompts.parquet", 6)
    out = str(tmp_path / "out")
    summary = run(ray_local, prompts=prompts, out=out, ckpt=tiny_ckpt, expand=False, shard_size=5, format="parquet")
    ds = datasets.load_dataset("parquet", data_files=str(Path(out, "shards", "*.parquet")), split="train",
                               cache_dir=str(tmp_path / "hf"))  # the data glob catches no index file
    assert len(ds) == summary["images"] == expected_images(prompts)
    assert ds[0]["image"].size == (32, 32) and ds[0]["caption"] and ds[0]["prompt_id"].startswith("p/")


def test_s3_output_and_prompts(ray_local, tiny_ckpt: str, tmp_path: Path, s3_server: str, s3_url: str) -> None:
    storage = Storage(endpoint=s3_server)
    local = write_prompts(tmp_path / "prompts.parquet", 8)
    prompts_url = join(s3_url, "in/prompts.parquet")
    storage.write_bytes(prompts_url, Path(local).read_bytes())
    out = join(s3_url, "out")
    summary = run(ray_local, prompts=prompts_url, out=out, ckpt=tiny_ckpt, expand=False, shard_size=6,
                  s3_endpoint=s3_server)
    names = storage.list(out)
    assert {"_job.json", "_SUCCESS.json", "contact_sheet.png"} <= set(names)
    assert summary["images"] == expected_images(local) == len(sha_set(storage, out))
    assert all(storage.exists(join(out, "shards", f"{i:05d}.stats.json")) for i in committed_shards(storage, out))


@pytest.mark.slow  # the driver's rule, executor-agnostic: test_job_core reruns and refuses with the local executor
def test_rerun_is_noop_and_incompatible_rerun_refused(ray_local, tiny_ckpt: str, tmp_path: Path) -> None:
    prompts = write_prompts(tmp_path / "prompts.parquet", 6)
    out = str(tmp_path / "out")
    kw = dict(prompts=prompts, out=out, ckpt=tiny_ckpt, expand=False, shard_size=4)
    run(ray_local, **kw)
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in Path(out, "shards").iterdir()}
    again = run(ray_local, **kw)
    assert again["images_this_run"] == 0 and again["images"] == expected_images(prompts)
    assert {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in Path(out, "shards").iterdir()} == before
    with pytest.raises(UserError, match=r"different job \(settings.seed: 0 -> 5\)"):
        run(ray_local, **dict(kw, seed=5))


@pytest.mark.slow  # the driver's rule, executor-agnostic: test_job_core redoes a cut shard with the local executor
def test_partial_shard_is_redone_identically(ray_local, tiny_ckpt: str, tmp_path: Path) -> None:
    prompts = write_prompts(tmp_path / "prompts.parquet", 8)
    out = str(tmp_path / "out")
    kw = dict(prompts=prompts, out=out, ckpt=tiny_ckpt, expand=False, shard_size=4)
    run(ray_local, **kw)
    tar = Path(out, "shards", "00001.tar")
    original = tar.read_bytes()
    tar.write_bytes(original[: len(original) // 2])  # a crash mid-shard: data without its commit marker
    Path(out, "shards", "00001.stats.json").unlink()
    Path(out, "_SUCCESS.json").unlink()
    summary = run(ray_local, **kw)
    assert summary["images_this_run"] > 0
    assert tar.read_bytes() == original


def test_killed_generator_actor_loses_nothing(ray_local, tiny_ckpt: str, tmp_path: Path) -> None:
    from llmgan.job.local_executor import LocalExecutor
    from llmgan.job.run import run_job

    prompts = write_prompts(tmp_path / "prompts.parquet", 40)
    kw = dict(prompts=prompts, ckpt=tiny_ckpt, expand=False, shard_size=6, consistency="none")
    # the reference bytes from the one-process executor (same bytes as Ray's: test_local_executor_writes_...)
    base = run_job(GenerateConfig(**kw, out=str(tmp_path / "base"), executor="local"), LocalExecutor(), progress=False)
    out = str(tmp_path / "faulty")
    killed: list[int] = []
    finished = threading.Event()

    def kill_generator_once() -> None:  # at the first commit, however long the cluster takes to get there
        while not finished.is_set() and not killed:
            done = committed_shards(Storage(), out)
            if done:
                stats = json.loads(Path(next(iter(done.values()))).read_text())
                pid = stats["workers"]["generate"]["pid"]
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_generator_once)
    killer.start()
    try:
        summary = run(ray_local, **kw, out=out)
    finally:
        finished.set()
        killer.join()
    assert killed, "the generator actor was never killed"
    assert summary["images"] == base["images"]
    assert sha_set(Storage(), out) == sha_set(Storage(), str(tmp_path / "base"))


def test_fused_actors_serve_every_retry_pass_and_stop_with_the_job(ray_local, tiny_ckpt: str, tmp_path: Path) -> None:
    """The fused layout's actors are made once per job: a retry pass reuses them (models stay loaded) and the
    job's end stops them, so the next job finds the cluster's CPUs free. The first pass here hands Ray only half
    of the shards, so the driver retries the rest as it would failed ones."""
    import ray

    from llmgan.distributed.generate import RayExecutor
    from llmgan.job.run import run_job

    class HalfFirstPass(RayExecutor):
        def __init__(self) -> None:
            super().__init__()
            self.passes: list[list[int]] = []

        def run(self, cfg, todo, job_id, on_outcome):  # type: ignore[no-untyped-def]
            self.passes.append([s.index for s in todo])
            super().run(cfg, todo[: len(todo) // 2] if len(self.passes) == 1 else todo, job_id, on_outcome)
            self.pool = self._fused

    prompts = write_prompts(tmp_path / "prompts.parquet", 16)
    out = tmp_path / "out"
    executor = HalfFirstPass()
    summary = run_job(GenerateConfig(prompts=prompts, out=str(out), ckpt=tiny_ckpt, expand=False, shard_size=4,
                                     consistency="none"), executor, progress=False)
    assert summary["images"] == expected_images(prompts) and len(executor.passes) == 2
    first, second = executor.passes
    assert set(second) == set(first[len(first) // 2:])  # the shards the first pass left
    pids = {i: json.loads((out / "shards" / f"{i:05d}.stats.json").read_text())["workers"]["generate"]["pid"]
            for i in first}
    assert {pids[i] for i in second} <= {pids[i] for i in first[: len(first) // 2]}  # the same processes
    assert executor._fused is None  # closed by the job
    alive = [a for a in executor.pool.actors if _alive(ray, a)]
    assert not alive, "the job's actors outlived it"


def _alive(ray, actor) -> bool:  # type: ignore[no-untyped-def]
    try:
        ray.get(actor.__ray_ready__.remote(), timeout=30)
    except ray.exceptions.RayActorError:
        return False
    return True


@pytest.mark.slow  # test_crash_matrix kills the driver after _job.json by default (this is its driver-half point)
def test_killed_driver_then_rerun_gives_same_images(ray_local, tiny_ckpt: str, tmp_path: Path) -> None:
    prompts = write_prompts(tmp_path / "prompts.parquet", 30)
    run(ray_local, prompts=prompts, out=str(tmp_path / "base"), ckpt=tiny_ckpt, expand=False, shard_size=5)
    out = str(tmp_path / "killed")
    cmd = [sys.executable, str(REPO / "jobs/generate.py"), prompts, "--out", out, "--ckpt", tiny_ckpt,
           "--no-expand", "--shard-size", "5", "--quiet"]
    env = dict(os.environ, RAY_ADDRESS=ray_local.get_runtime_context().gcs_address)
    proc = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 180
    while time.time() < deadline and len(committed_shards(Storage(), out)) < 2 and proc.poll() is None:
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = len(committed_shards(Storage(), out))
    assert partial >= 2 and not Path(out, "_SUCCESS.json").exists()
    result = subprocess.run(cmd[:-1], env=env, capture_output=True, text=True, timeout=300)  # not --quiet
    assert result.returncode == 0, result.stderr[-2000:]
    # a normal run's stderr is our log and progress lines only: no Ray core_worker, Ray Data or auth chatter
    foreign = [line for line in result.stderr.splitlines()
               if not (line.startswith("[llmgan] ") or " INFO llmgan." in line or " WARNING llmgan." in line)]
    assert not foreign, foreign
    assert sha_set(Storage(), out) == sha_set(Storage(), str(tmp_path / "base"))
    assert Path(out, "_SUCCESS.json").exists()


BAD_INPUTS = [
    ("missing.parquet", None, "prompts file not found"),
    ("text.parquet", b"definitely not parquet", "not a readable Parquet file"),
    ("nocol.parquet", pa.table({"text": ["a"]}), "no column 'prompt' (columns found: text)"),
    ("dups.parquet", pa.table({"prompt": ["a", "b"], "id": ["x", "x"]}), "duplicate id 'x'"),
    ("types.parquet", pa.table({"prompt": [1.5]}), "column 'prompt' must be string"),
]


@pytest.mark.parametrize("name, content, message", BAD_INPUTS)
def test_bad_input_one_line_error_nothing_written(tmp_path: Path, tiny_ckpt: str, name: str, content, message: str) -> None:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        pq.write_table(content, path)
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, str(REPO / "jobs/generate.py"), str(path), "--out", str(out), "--ckpt", tiny_ckpt, "--no-expand"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: ")
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not out.exists()


def test_bad_option_is_one_line(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "llmgan", "generate", "x.parquet", "--shard-size", "0"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and result.stderr.strip() == "error: --shard-size must be 1..1000000, got 0"


def shard_file_shas(out: str) -> dict[str, str]:
    """sha256 of every shard data and index file (stats hold timings and worker ids, so they differ)."""
    import hashlib

    files = [*Path(out, "shards").iterdir(), *Path(out, "index").iterdir()]
    return {f"{p.parent.name}/{p.name}": hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(files)
            if not p.name.endswith(".stats.json")}


def test_local_executor_writes_the_ray_executors_bytes_without_ray(ray_local, tiny_ckpt: str, tmp_path: Path) -> None:
    """Same job, both executors: identical shard files. The local run is the CLI in a process where `ray`
    cannot be imported, with caption expansion on (LM and GAN both run on different thread counts) and
    consistency feedback redrawing the random GAN's images."""
    prompts = write_prompts(tmp_path / "prompts.parquet", 8, bad_rows=True, open_vocab=True)
    kw = dict(ckpt=tiny_ckpt, variants=2, shard_size=5, batch_size=4, consistency="classifier", max_attempts=3)
    ray_summary = run(ray_local, prompts=prompts, out=str(tmp_path / "ray"), **kw)
    local = str(tmp_path / "local")
    argv = ["llmgan", "generate", prompts, "--out", local, "--ckpt", tiny_ckpt, "--variants", "2", "--shard-size", "5",
            "--batch-size", "4", "--executor", "local", "--quiet", "--consistency", "classifier", "--max-attempts", "3"]
    code = f"import runpy, sys; sys.modules['ray'] = None; sys.argv = {argv!r}; runpy.run_module('llmgan', run_name='__main__')"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"{ray_summary['images']} images in {ray_summary['shards']} shards" in result.stdout
    assert result.stderr == ""  # --quiet: the summary on stdout, nothing else
    local_summary = json.loads(Path(local, "_SUCCESS.json").read_text())
    assert local_summary["executor"] == "local" and ray_summary["executor"] == "ray"
    assert local_summary["rejected_reasons"] == ray_summary["rejected_reasons"] == {"null prompt": 1, "empty prompt": 1}
    assert local_summary["consistency"] == ray_summary["consistency"] and ray_summary["consistency"]["redrawn"] > 0
    assert local_summary["understanding"] == ray_summary["understanding"]
    assert ray_summary["understanding"]["words"] == {"dragon": 2} and ray_summary["consistency"]["unverified"] == 2
    shas = shard_file_shas(local)
    assert len(shas) == 2 * ray_summary["shards"] >= 4
    assert shas == shard_file_shas(str(tmp_path / "ray"))


def test_expansion_with_the_bundled_caption_lm(ray_local, tiny_ckpt: str, tmp_path: Path) -> None:
    """The default path users take: short prompts expanded by the shipped caption LM, K variants each."""
    from llmgan.domains.shapes import parse_attributes

    path = tmp_path / "prompts.parquet"
    pq.write_table(pa.table({"id": ["a", "b", "c"], "prompt": ["red star", "blue circle", "green cross"],
                             "n": pa.array([4, 4, 4], pa.int32())}), path)
    out = str(tmp_path / "out")
    summary = run(ray_local, prompts=str(path), out=out, ckpt=tiny_ckpt, variants=2, shard_size=100)
    assert summary["images"] == 12
    guard = summary["expansion"]
    assert guard["faithful"] + guard["fallback"] == 6  # 3 prompts x 2 variants, every one checked
    index = pq.read_table(Path(out, "index", "00000.parquet")).to_pylist()
    for row in index:
        stated = parse_attributes(row["prompt"])
        assert all(parse_attributes(row["caption"]).get(k) == v for k, v in stated.items())
    by_prompt: dict[str, set[str]] = {}
    for row in index:
        by_prompt.setdefault(row["prompt_id"], set()).add(row["caption"])
    assert all(len(caps) <= 2 for caps in by_prompt.values())
    assert any(row["caption"] != row["prompt"] for row in index)  # expanded, not just copied
