"""Generation against flaky S3: exact outputs under a 20% transient fault rate; a permanent outage stops the
job with a message naming the endpoint and the shard, no _SUCCESS.json, and a rerun completes it."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from llmgan.errors import StorageError
from llmgan.io.storage import Storage, join
from llmgan.job.config import GenerateConfig
from llmgan.job.shards import committed_shards
from tests.conftest import FAKE_KEY_ID, FAKE_SECRET
from tests.fault_proxy import KINDS, FaultProxy, uniform_rates
from tests.test_generate import expected_images, sha_set, write_prompts


def generate(executor: str = "ray", **kw) -> dict:
    """One job; consistency scoring off: it adds redraws (compute), not storage traffic, to what is tested here."""
    from llmgan.job.run import run_job

    kw.setdefault("consistency", "none")
    if executor == "ray":
        from llmgan.distributed.generate import RayExecutor

        return run_job(GenerateConfig(**kw), RayExecutor(), progress=False)
    from llmgan.job.local_executor import LocalExecutor

    return run_job(GenerateConfig(**kw, executor="local"), LocalExecutor(), progress=False)


def data_files(storage: Storage, out: str) -> dict[str, bytes]:
    names = storage.list(join(out, "shards"))
    return {n: storage.read_bytes(join(out, "shards", n)) for n in names if n.endswith(".tar")}


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory, ray_local, tiny_ckpt: str) -> dict:
    """An uninterrupted local run: the bytes every faulty run must reproduce."""
    root = tmp_path_factory.mktemp("faults_base")
    prompts = write_prompts(root / "prompts.parquet", 24, bad_rows=True)
    out = str(root / "out")
    generate(prompts=prompts, out=out, ckpt=tiny_ckpt, expand=False, shard_size=8, batch_size=8)
    return {"prompts": prompts, "out": out, "shas": sha_set(Storage(), out), "tars": data_files(Storage(), out)}


def upload(storage: Storage, local: str, url: str) -> str:
    storage.write_bytes(url, Path(local).read_bytes())
    return url


def test_exact_outputs_under_20_percent_transient_faults(baseline: dict, tiny_ckpt: str, s3_server: str,
                                                         s3_url: str) -> None:
    direct = Storage(s3_server)
    prompts = upload(direct, baseline["prompts"], join(s3_url, "in/prompts.parquet"))
    out = join(s3_url, "out")
    rates = uniform_rates(0.2, ("503", "500", "reset", "reset_after", "truncate", "delay"))
    with FaultProxy(s3_server, rates=rates, seed=1, delay_s=0.05) as proxy:
        summary = generate(prompts=prompts, out=out, ckpt=tiny_ckpt, expand=False, shard_size=8, batch_size=8,
                           s3_endpoint=proxy.url)
    print(f"20% faults: {proxy.faults()} faults in {proxy.counts['requests']} requests {proxy.counts}")
    assert proxy.counts["requests"] > 50
    assert all(proxy.counts[k] > 0 for k in KINDS), proxy.counts
    assert summary["images"] == expected_images(baseline["prompts"]) == len(baseline["shas"])
    assert sha_set(direct, out) == baseline["shas"]
    assert data_files(direct, out) == baseline["tars"]  # byte for byte, every shard exactly once
    assert direct.exists(join(out, "_SUCCESS.json"))


# The stop, the message and the resume are the driver's, whatever runs the shards. With Ray every worker process
# spends its own S3 retry budget against the dead endpoint (minutes on 2 cores), so Ray's run is in the slow set;
# Ray under storage faults is covered by default above (20% transient faults).
@pytest.mark.parametrize("executor", ["local", pytest.param("ray", marks=pytest.mark.slow)])
def test_permanent_outage_stops_names_endpoint_and_shard_then_rerun_completes(
        baseline: dict, tiny_ckpt: str, s3_server: str, s3_url: str, executor: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from llmgan.job.outcomes import JobFailed

    if executor == "local":  # the SDK's own setting, read by this process's S3 clients: a dead endpoint fails sooner
        monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    direct = Storage(s3_server)
    prompts = upload(direct, baseline["prompts"], join(s3_url, "in/prompts.parquet"))
    out = join(s3_url, "out")
    # no retries: a second pass against a dead endpoint would only fail the same way, slower
    kw = dict(prompts=prompts, out=out, ckpt=tiny_ckpt, expand=False, shard_size=8, batch_size=8, max_retries=0)
    with FaultProxy(s3_server) as proxy:
        # the outage starts on an event, not a clock: right after the first shard's commit marker is written
        proxy.outage_after("PUT", ".stats.json", "503")
        t0 = time.perf_counter()
        with pytest.raises((JobFailed, StorageError)) as info:
            generate(executor, **kw, s3_endpoint=proxy.url)
        stopped_after = time.perf_counter() - t0
        assert proxy.tripped.is_set()
        message = str(info.value)
        assert proxy.url in message, message
        assert FAKE_SECRET not in message and FAKE_KEY_ID not in message
        assert "SlowDown" in message or "S3 error 503" in message
        if isinstance(info.value, JobFailed):
            assert "shard" in message and "rerun the same command" in message
        assert not direct.exists(join(out, "_SUCCESS.json"))
        assert len(committed_shards(direct, out)) == 1  # the one committed before the outage, no other
        print(f"permanent outage: stopped after {stopped_after:.1f}s, {proxy.counts['503']} requests refused")
        proxy.outage(None)
        summary = generate(executor, **kw, s3_endpoint=proxy.url)
    assert summary["images_this_run"] > 0
    assert sha_set(direct, out) == baseline["shas"]
    assert data_files(direct, out) == baseline["tars"]
    assert direct.exists(join(out, "_SUCCESS.json"))


def test_unreachable_endpoint_fails_fast_with_one_line(tmp_path: Path, tiny_ckpt: str, s3_server: str) -> None:
    with FaultProxy(s3_server) as proxy:
        proxy.outage("reset")
        t0 = time.perf_counter()
        with pytest.raises(StorageError) as info:
            generate(prompts="s3://test-bucket/nowhere/p.parquet", out=str(tmp_path / "out"), ckpt=tiny_ckpt,
                     expand=False, s3_endpoint=proxy.url)
        print(f"dead endpoint: failed after {time.perf_counter() - t0:.1f}s")
    assert proxy.url in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def small_shapes(tmp_path_factory: pytest.TempPathFactory) -> str:
    from llmgan.data.tables import write_dataset
    from llmgan.domains.shapes.render import generate_shapes

    url = str(tmp_path_factory.mktemp("shapes") / "shapes.parquet")
    write_dataset(generate_shapes(32, seed=9), url)
    return url


@pytest.mark.slow
def test_training_exact_under_faults_and_resumes_after_outage(ray_local, small_shapes: str, s3_server: str,
                                                              s3_url: str, tmp_path: Path) -> None:
    """A 1-worker Ray Train run with checkpoints on S3 behind the proxy gives the weights of a clean run; a
    permanent outage stops it with one line naming the endpoint; a rerun resumes and finishes."""
    import numpy as np
    from safetensors.numpy import load

    from llmgan.distributed.train import DistTrainOptions, TrainFailed, run_train
    from llmgan.gan.config import GanConfig

    tiny = GanConfig(batch_size=8, g_width=4, d_width=4, z_dim=8, cond_dim=8, contrastive_dim=8)
    options = DistTrainOptions(steps=8, workers=1, cpus_per_worker=1, checkpoint_every=4, log_every=4,
                               classifier=None, progress=False, seed=3)
    direct = Storage(s3_server)
    clean = str(tmp_path / "clean")
    run_train(small_shapes, clean, tiny, options)
    want = load(Path(clean, "final", "generator.safetensors").read_bytes())

    def weights(run: str) -> dict:
        return load(direct.read_bytes(join(run, "final", "generator.safetensors")))

    faulty = join(s3_url, "faulty")
    with FaultProxy(s3_server, rates=uniform_rates(0.2, ("503", "500", "reset", "reset_after", "truncate")),
                    seed=5) as proxy:
        run_train(small_shapes, faulty, tiny, options, storage=Storage(proxy.url))
        assert proxy.faults() > 0
        got = weights(faulty)
        assert got.keys() == want.keys() and all(np.array_equal(got[k], want[k]) for k in want)

        cut = join(s3_url, "cut")
        # on an event, not a clock: right after the first checkpoint's config.json (written last) is stored
        proxy.outage_after("PUT", "/config.json", "503")
        with pytest.raises((TrainFailed, StorageError)) as info:
            run_train(small_shapes, cut, tiny, dataclasses_replace(options, max_failures=0),
                      storage=Storage(proxy.url))
        assert "\n" not in str(info.value)
        assert not direct.exists(join(cut, "final", "generator.safetensors"))
        proxy.outage(None)
        summary = run_train(small_shapes, cut, tiny, options, storage=Storage(proxy.url))
    assert summary["steps"] == 8
    got = weights(cut)
    assert all(np.allclose(got[k], want[k], atol=1e-5) for k in want)


def dataclasses_replace(obj, **changes):
    import dataclasses

    return dataclasses.replace(obj, **changes)
