"""Core of the generation job without Ray: shard plan, seeds, shard files, `_job.json` compatibility."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from llmgan.errors import UserError
from llmgan.io.prompts import open_prompts
from llmgan.io.storage import Storage
from llmgan.job.config import GenerateConfig, StageResources, default_out, size_pools
from llmgan.job.manifest import JOB_FILE, build_manifest, prepare_output, redact_url
from llmgan.job.plan import image_seed, make_plan, prompt_seed
from llmgan.job.shards import ImageRecord, ShardResult, committed_shards, write_shard


def test_plan_cuts_rows_by_image_count(tmp_path: Path) -> None:
    path = tmp_path / "p.parquet"
    pq.write_table(pa.table({"prompt": [f"p{i}" for i in range(10)],
                             "n": pa.array([3, None, 5, 0, 1, 1, 1, 1, 1, 1], pa.int64())}), path)
    plan = make_plan(open_prompts(str(path)), n_per_prompt=2, shard_size=4)
    assert [(s.row_start, s.row_stop, s.planned_images) for s in plan] == [
        (0, 2, 5), (2, 3, 5), (3, 8, 4), (8, 10, 2)]  # a row with invalid n plans no image
    assert make_plan(open_prompts(str(path)), 2, 4) == plan  # deterministic


def test_seeds_depend_on_identity_only() -> None:
    a = prompt_seed(0, "id-1", None)
    assert a == prompt_seed(0, "id-1", None) != prompt_seed(1, "id-1", None) != prompt_seed(0, "id-2", None)
    assert prompt_seed(0, "x", 5) == prompt_seed(9, "y", 5)  # a row seed wins over job seed and id
    seeds = {image_seed(a, v, j) for v in range(3) for j in range(50)}
    assert len(seeds) == 150 and all(0 <= s < 2**63 for s in seeds)


def test_seeds_and_png_bytes_are_pinned() -> None:
    """Shard bytes depend on these: derive_seed replaced plan.py's own hash and png_bytes the job's PNG code
    with no change of value (figures from the code they replaced)."""
    import hashlib

    import numpy as np

    from llmgan.io.images import png_bytes
    from llmgan.job.plan import caption_seed

    a = prompt_seed(0, "id-1", None)
    assert (a, prompt_seed(7, "x", 5), image_seed(a, 1, 3), caption_seed(42)) == (
        5263746622120309405, 819878903268225393, 3436734375421998701, 5098137530060109476)
    png = png_bytes(np.arange(8 * 8 * 3, dtype=np.uint8).reshape(8, 8, 3))
    assert hashlib.sha256(png).hexdigest() == "16278d98f176caa9079bad8ede83f69838a29b7d394271bd5192fda77a9fa89c"


@pytest.mark.parametrize("bad, message", [
    ({"n_per_prompt": 0}, "--n-per-prompt must be >= 1, got 0"),
    ({"format": "zip"}, "--format must be one of webdataset, parquet, got 'zip'"),
    ({"best_of": 0}, "--best-of must be 1..64, got 0"),
    ({"truncation": 1.5}, r"--truncation must be in \(0, 1\], got 1.5"),
    ({"executor": "dask"}, "--executor must be one of ray, local, got 'dask'"),
    ({"expander": StageResources(2, 1)}, r"--expander-max-actors \(1\) must be >= --expander-min-actors \(2\)"),
    ({"generator": StageResources(resources={"GPU": 1})}, "--generator-resources: 'GPU' is not a custom resource"),
])
def test_config_validation_names_option(bad: dict, message: str) -> None:
    with pytest.raises(UserError, match=message):
        GenerateConfig(prompts="p.parquet", **bad)


def test_truncation_bound_is_the_gans() -> None:
    from llmgan.gan.config import MAX_TRUNCATION

    GenerateConfig(prompts="p.parquet", truncation=MAX_TRUNCATION)
    with pytest.raises(UserError, match="--truncation"):
        GenerateConfig(prompts="p.parquet", truncation=MAX_TRUNCATION * 1.01)


def test_pool_sizing_fills_the_cluster_only_where_left_to_the_job() -> None:
    def sized(cpus: float = 2, layout: str = "split", **kw) -> tuple:
        cfg = size_pools(GenerateConfig(prompts="p.parquet", stage_layout=layout, **kw), cluster_cpus=cpus,
                         cluster_gpus=4)
        e, g = cfg.expander, cfg.generator
        return e.num_cpus, e.max_actors, g.num_cpus, g.max_actors

    assert sized() == (0.25, 1, 0.875, 2)  # the LM takes a quarter core, two generators share the rest
    assert sized(cpus=16) == (0.25, 1, 15.75 / 16, 16)
    assert sized(expand=False) == (0.0, 1, 1.0, 2)  # a prompt reader holds no core: two whole-core generators
    assert sized(expand=False, generator=StageResources(max_actors=None, num_cpus=0.5)) == (0.0, 1, 0.5, 4)
    assert sized(generator=StageResources(max_actors=None, num_gpus=1.0)) == (0.25, 1, 1.0, 4)  # one per GPU
    assert sized(generator=StageResources(max_actors=3)) == (0.25, 1, 1.0, 3)  # explicit settings are kept
    assert sized(cpus=0.2) == (0.25, 1, 1.0, 1)  # nothing left: one whole-core generator waits for room
    assert sized(expander=StageResources(min_actors=2, max_actors=2, num_cpus=1.0), cpus=8) == (1.0, 2, 1.0, 6)
    # fused: no LM pool; one whole-shard actor per core, each with both models on the generator's GPU share
    assert sized(layout="fused") == (0.0, 1, 1.0, 2)
    assert sized(layout="fused", cpus=16) == (0.0, 1, 1.0, 16)
    assert sized(layout="fused", generator=StageResources(max_actors=None, num_gpus=1.0)) == (0.0, 1, 1.0, 4)


@pytest.mark.parametrize(("kw", "layout"), [
    ({}, "fused"),  # CPUs only: the stages share the same cores, so one process per shard
    ({"expand": False}, "fused"),
    ({"generator": StageResources(max_actors=None, num_gpus=1.0)}, "split"),
    ({"expander": StageResources(num_gpus=0.5)}, "split"),
    ({"generator": StageResources(max_actors=None, resources={"gan_node": 1})}, "split"),
    ({"expander": StageResources(num_cpus=1.0)}, "split"),  # the user sized the LM pool
    ({"stage_layout": "split"}, "split"),
    ({"stage_layout": "fused", "generator": StageResources(max_actors=None, num_gpus=1.0)}, "fused"),
])
def test_stage_layout_auto_splits_only_for_gpus_resources_or_a_set_lm_pool(kw: dict, layout: str) -> None:
    from llmgan.job.config import resolve_layout

    cfg = GenerateConfig(prompts="p.parquet", **kw)
    assert resolve_layout(cfg) == layout
    assert size_pools(cfg, 2, 4).stage_layout == layout  # the executor runs the resolved layout


def test_default_out_from_stem() -> None:
    assert default_out("data/my prompts.parquet") == str(Path("outputs/my prompts"))
    assert default_out("s3://b/x/batch7.parquet") == str(Path("outputs/batch7"))
    assert GenerateConfig(prompts="a/b.parquet").out == str(Path("outputs/b"))


def _result(index: int) -> ShardResult:
    import numpy as np

    from llmgan.io.images import png_bytes

    recs = [ImageRecord(f"{index:05d}_{i:06d}", png_bytes(np.full((8, 8, 3), i * 20, np.uint8)), f"cap {i}",
                        {"prompt": "p", "prompt_id": f"id{i}", "seed": i, "variant": 0, "score": None})
            for i in range(3)]
    return ShardResult(index, 0, 3, recs, rejected=[{"row": 9, "id": "9", "reason": "empty prompt"}],
                       seconds={"generate": 0.5})


@pytest.mark.parametrize("fmt", ["webdataset", "parquet"])
def test_shard_files_deterministic_and_stats_last(tmp_path: Path, fmt: str) -> None:
    st = Storage()
    out = str(tmp_path / "out")
    stats = write_shard(st, out, _result(4), fmt, job_id="j1")
    first = {n: (Path(out) / "shards" / n).read_bytes() for n in st.list(str(Path(out) / "shards"))}
    assert committed_shards(st, out) == {4: str(Path(out) / "shards" / "00004.stats.json")}
    assert stats["images"] == 3 and stats["rejected_counts"] == {"empty prompt": 1} and stats["job_id"] == "j1"
    write_shard(st, out, _result(4), fmt, job_id="j1")
    again = {n: (Path(out) / "shards" / n).read_bytes() for n in st.list(str(Path(out) / "shards"))}
    assert {k: v for k, v in first.items() if not k.endswith(".stats.json")} == \
           {k: v for k, v in again.items() if not k.endswith(".stats.json")}
    assert set(first) == {f"00004{'.tar' if fmt == 'webdataset' else '.parquet'}", "00004.stats.json"}  # no index
    index = pq.read_table(Path(out) / "index" / "00004.parquet")
    assert index.column("key").to_pylist() == [f"00004_{i:06d}" for i in range(3)]
    if fmt == "webdataset":
        with tarfile.open(fileobj=io.BytesIO(first["00004.tar"])) as tar:
            names = tar.getnames()
        assert names[:3] == ["00004_000000.png", "00004_000000.json", "00004_000000.txt"]


def test_job_json_refuses_incompatible_rerun(tmp_path: Path) -> None:
    st = Storage()
    out = str(tmp_path / "job")
    m1 = build_manifest({"seed": 0}, {}, {"gan": "a"}, {"rows": 3}, {"shards": 1})
    assert prepare_output(st, out, m1, overwrite=False) is False
    assert json.loads((Path(out) / JOB_FILE).read_text())["job_id"] == m1["job_id"]
    assert prepare_output(st, out, m1, overwrite=False) is True  # same job: resume
    m2 = build_manifest({"seed": 1}, {}, {"gan": "a"}, {"rows": 3}, {"shards": 1})
    with pytest.raises(UserError, match=r"different job \(settings.seed: 0 -> 1\).*--overwrite"):
        prepare_output(st, out, m2, overwrite=False)
    write_shard(st, out, _result(0), "webdataset", m1["job_id"])
    assert prepare_output(st, out, m2, overwrite=True) is False
    assert committed_shards(st, out) == {}  # the old job's shards are gone


def test_redact_url_drops_credentials_and_signatures() -> None:
    assert redact_url("https://user:secret@host:9000/b?X-Amz-Signature=abc") == "https://host:9000/b"
    assert redact_url("s3://bucket/prefix") == "s3://bucket/prefix"
    assert redact_url("local/path") == "local/path"


# ---- the driver (llmgan.job.run) with the local executor: no Ray anywhere in these tests -----------------------

def _prompts(path: Path, rows: int = 9) -> str:
    names = ["red star", "blue circle", None, "green cross", "   "]
    pq.write_table(pa.table({"id": [f"r{i}" for i in range(rows)], "prompt": [names[i % 5] for i in range(rows)],
                             "n": pa.array([2] * rows, pa.int32())}), path)
    return str(path)


def _local(tiny_ckpt: str, prompts: str, out: Path, **kw) -> dict:
    from llmgan.job.local_executor import LocalExecutor
    from llmgan.job.run import run_job

    cfg = GenerateConfig(prompts=prompts, out=str(out), ckpt=tiny_ckpt, expand=False, shard_size=4, batch_size=3,
                         executor="local", **kw)
    return run_job(cfg, LocalExecutor(), progress=False)


def _data_files(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((out / "shards").iterdir()) if not p.name.endswith(".stats.json")}


def test_local_executor_records_rejects_and_resumes_one_shard(tmp_path: Path, tiny_ckpt: str) -> None:
    prompts = _prompts(tmp_path / "p.parquet")
    out = tmp_path / "out"
    summary = _local(tiny_ckpt, prompts, out)
    assert summary["executor"] == "local" and summary["images"] == 12 and summary["shards"] == 4
    assert summary["rejected_reasons"] == {"null prompt": 2, "empty prompt": 1}
    startup = summary["startup_seconds"]  # the fixed cost, in seconds since the job started, in order
    assert set(startup) == {"checks", "executor_ready", "first_shard"}
    assert 0 < startup["checks"] <= startup["executor_ready"] <= startup["first_shard"] <= summary["wall_seconds"]
    stats = json.loads((out / "shards" / "00001.stats.json").read_text())
    assert [(r["id"], r["reason"]) for r in stats["rejected"]] == [("r2", "null prompt"), ("r4", "empty prompt")]
    first = _data_files(out)
    data = next(p for p in (out / "shards").iterdir() if p.name.startswith("00001.") and p.suffix != ".json")
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])  # a crash mid-shard: half the data file ...
    (out / "shards" / "00001.stats.json").unlink()  # ... and no commit marker: only shard 1 is redone
    (out / "_SUCCESS.json").unlink()
    again = _local(tiny_ckpt, prompts, out)
    assert again["images_this_run"] == json.loads((out / "shards" / "00001.stats.json").read_text())["images"] == 2
    assert again["images"] == 12 and _data_files(out) == first
    nothing = _local(tiny_ckpt, prompts, out)
    assert nothing["images_this_run"] == 0 and set(nothing["startup_seconds"]) == {"checks"}  # all committed: no run


def _fail_shard(monkeypatch: pytest.MonkeyPatch, shard: int, times: int) -> list[int]:
    """The generator stage raises for `shard` on its first `times` attempts (a real stage exception)."""
    from llmgan.job.stages import ShardGenerator

    generate = ShardGenerator.__call__
    calls: list[int] = []

    def flaky(self, work):  # type: ignore[no-untyped-def]
        if work.spec.index == shard:
            calls.append(shard)
            if len(calls) <= times:
                raise RuntimeError(f"injected fault {len(calls)}")
        return generate(self, work)

    monkeypatch.setattr(ShardGenerator, "__call__", flaky)
    return calls


def test_failed_shard_is_retried_then_job_fails_naming_it(tmp_path: Path, tiny_ckpt: str,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from llmgan.job.outcomes import JobFailed, ShardFailed

    prompts = _prompts(tmp_path / "p.parquet")
    out = tmp_path / "out"
    calls = _fail_shard(monkeypatch, 1, times=99)
    with pytest.raises(JobFailed) as info:
        _local(tiny_ckpt, prompts, out, max_retries=2)
    assert len(calls) == 3  # the first attempt and two retries
    message = str(info.value)
    assert "1 shard(s) failed after 2 retries (shards 00001: RuntimeError: injected fault 3)" in message
    assert "rerun the same command" in message
    assert info.value.failures == [ShardFailed(1, "RuntimeError: injected fault 3")]
    assert sorted(committed_shards(Storage(), str(out))) == [0, 2, 3] and not (out / "_SUCCESS.json").exists()
    monkeypatch.undo()
    summary = _local(tiny_ckpt, prompts, out, max_retries=2)  # resume: only the failed shard runs
    redone = json.loads((out / "shards" / "00001.stats.json").read_text())["images"]
    assert summary["images_this_run"] == redone == 2 and summary["images"] == 12


def test_flaky_shard_succeeds_on_retry(tmp_path: Path, tiny_ckpt: str, monkeypatch: pytest.MonkeyPatch) -> None:
    prompts = _prompts(tmp_path / "p.parquet")
    calls = _fail_shard(monkeypatch, 2, times=1)
    summary = _local(tiny_ckpt, prompts, tmp_path / "out", max_retries=1)
    assert len(calls) == 2 and summary["images"] == 12 and summary["shards"] == 4


class _Reporting:
    """An executor that reports what it is given instead of running shards."""

    name = "fake"

    def __init__(self, report) -> None:  # type: ignore[no-untyped-def]
        self.report, self.passes = report, 0

    def prepare(self, cfg: GenerateConfig) -> GenerateConfig:
        return cfg

    def run(self, cfg, todo, job_id, on_outcome) -> None:  # type: ignore[no-untyped-def]
        self.passes += 1
        for item in self.report(todo):
            on_outcome(item)


def test_outcomes_are_typed(tmp_path: Path, tiny_ckpt: str) -> None:
    from llmgan.job.outcomes import JobFailed, ShardCommitted, ShardFailed
    from llmgan.job.run import run_job

    assert ShardFailed.of(3, ValueError("bad " * 200)) == ShardFailed(3, ("ValueError: " + "bad " * 200)[:500])
    assert ShardCommitted({"shard": 2, "images": 5}).shard == 2
    cfg = GenerateConfig(prompts=_prompts(tmp_path / "p.parquet"), out=str(tmp_path / "out"), ckpt=tiny_ckpt,
                         expand=False, shard_size=4, max_retries=1)
    # an error dict is not an outcome: it can never pass for a committed shard's stats
    with pytest.raises(TypeError, match="reported dict, not a shard outcome"):
        run_job(cfg, _Reporting(lambda todo: [{"shard": s.index, "error": "x"} for s in todo]), progress=False)
    silent = _Reporting(lambda todo: [])  # a shard without an outcome counts as failed, and is retried
    with pytest.raises(JobFailed, match=r"4 shard\(s\) failed after 1 retries \(shards 00000, 00001, 00002, 00003: "
                                        r"no outcome reported\)"):
        run_job(cfg, silent, progress=False)
    assert silent.passes == 2


def test_binding_stage_is_the_largest_share_and_overlapped_write_binds_only_past_the_rest() -> None:
    from llmgan.job.manifest import binding_stage

    assert binding_stage({}) is None and binding_stage({"read": 0.0}) is None
    bind = binding_stage({"read": 1.0, "expand": 2.0, "generate": 5.0, "write": 2.0})
    assert bind == {"stage": "generate", "seconds": 5.0, "share": 0.5}
    # png_wait (the generator's wait for its PNG thread) and encode are one stage, whichever name a shard used
    assert binding_stage({"generate": 3.0, "png_wait": 2.0, "encode": 2.0})["stage"] == "encode"
    # encode and write run beside the compute: they bind only when together they take longer than the rest
    assert binding_stage({"generate": 3.0, "read": 1.0, "write": 3.5})["stage"] == "generate"
    assert binding_stage({"generate": 3.0, "read": 1.0, "encode": 2.5, "write": 1.0})["stage"] == "generate"
    assert binding_stage({"generate": 3.0, "read": 1.0, "encode": 3.5, "write": 1.0})["stage"] == "encode"
    assert binding_stage({"generate": 3.0, "read": 1.0, "write": 4.5}) == {"stage": "write", "seconds": 4.5,
                                                                         "share": 0.529}


def test_generate_summary_names_the_binding_stage(tmp_path: Path, tiny_ckpt: str) -> None:
    """A real local job through the CLI: `_SUCCESS.json` and the printed summary name the stage that bound it."""
    from typer.testing import CliRunner

    from llmgan.cli.app import app
    from llmgan.job.manifest import STAGE_ALIASES

    prompts = _prompts(tmp_path / "p.parquet")
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["generate", prompts, "--out", str(out), "--ckpt", tiny_ckpt, "--no-expand",
                                      "--executor", "local", "--shard-size", "4", "--quiet"])
    assert result.exit_code == 0, (result.exception, result.stderr)
    summary = json.loads((out / "_SUCCESS.json").read_text())
    bind, seconds = summary["binding_stage"], summary["stage_seconds"]
    stages = {STAGE_ALIASES.get(k, k) for k in seconds}
    assert bind["stage"] in stages
    assert abs(bind["seconds"] - sum(v for k, v in seconds.items() if STAGE_ALIASES.get(k, k) == bind["stage"])) < 0.05
    assert 0 < bind["share"] <= 1
    assert f"binding stage: {bind['stage']} ({bind['share']:.0%} of stage seconds)" in result.stdout
