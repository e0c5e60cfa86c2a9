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


@pytest.mark.parametrize("bad, message", [
    ({"n_per_prompt": 0}, "n-per-prompt must be >= 1"),
    ({"format": "zip"}, "format must be one of"),
    ({"best_of": 0}, "best-of must be 1..64"),
])
def test_config_validation_names_field(bad: dict, message: str) -> None:
    with pytest.raises(UserError, match=message):
        GenerateConfig(prompts="p.parquet", **bad)
    with pytest.raises(UserError, match=r"max actors \(1\) must be >= min actors \(2\)"):
        StageResources(2, 1)


def test_pool_sizing_fills_the_cluster_only_where_left_to_the_job() -> None:
    def sized(cpus: float = 2, **kw) -> tuple:
        cfg = size_pools(GenerateConfig(prompts="p.parquet", **kw), cluster_cpus=cpus, cluster_gpus=4)
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


def test_default_out_from_stem() -> None:
    assert default_out("data/my prompts.parquet") == str(Path("outputs/my prompts"))
    assert default_out("s3://b/x/batch7.parquet") == str(Path("outputs/batch7"))
    assert GenerateConfig(prompts="a/b.parquet").out == str(Path("outputs/b"))


def _result(index: int) -> ShardResult:
    import numpy as np

    from llmgan.job.stages import encode_png

    recs = [ImageRecord(f"{index:05d}_{i:06d}", encode_png(np.full((8, 8, 3), i * 20, np.uint8)), f"cap {i}",
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
    index = pq.read_table(Path(out) / "shards" / "00004.index.parquet")
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
