"""Damaged output folders, hostile prompts files, the blocklist, and secrets: each is repaired, refused with
one clear line, or recorded as a rejection; keys never escape the output prefix; no credential is ever written."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from llmgan.errors import UserError
from llmgan.io.prompts import open_prompts
from llmgan.io.storage import Storage, join
from llmgan.job.config import GenerateConfig
from llmgan.job.plan import make_plan
from tests.conftest import FAKE_KEY_ID, FAKE_SECRET
from tests.test_generate import write_prompts

REPO = Path(__file__).resolve().parents[1]
KEY = re.compile(r"^\d{5}_\d{6}\.(png|json|txt)$")


def generate(**kw) -> dict:
    """A job on the one-process executor: damaged folders and hostile rows are the driver's and the stages' rules,
    the same code whatever executes the shards (the Ray path is covered by the secrets test below, test_generate,
    test_faults and test_crash_matrix)."""
    from llmgan.job.local_executor import LocalExecutor
    from llmgan.job.run import run_job

    return run_job(GenerateConfig(**kw, executor="local"), LocalExecutor(), progress=False)


# ---- damaged output folders ---------------------------------------------------------------------------------
def test_damaged_shards_are_detected_and_redone_identically(tiny_ckpt: str, tmp_path: Path) -> None:
    prompts = write_prompts(tmp_path / "prompts.parquet", 20)
    out = tmp_path / "out"
    kw = dict(prompts=prompts, out=str(out), ckpt=tiny_ckpt, expand=False, shard_size=6, batch_size=8,
              consistency="none")
    first = generate(**kw)
    shards = out / "shards"
    original = {p.name: p.read_bytes() for p in shards.iterdir()}
    original_index = {p.name: p.read_bytes() for p in (out / "index").iterdir()}
    assert first["shards"] >= 5
    (shards / "00000.stats.json").unlink()  # tar without stats: a crash before the commit
    (shards / "00001.tar").unlink()  # stats without tar
    tar = shards / "00002.tar"
    tar.write_bytes(original["00002.tar"][:1000])  # truncated tar, stats still there
    (out / "index" / "00003.parquet").unlink()  # index lost
    again = generate(**kw)
    assert again["images_this_run"] > 0 and again["images"] == first["images"]
    def content(files: dict[str, bytes]) -> dict[str, object]:  # stats carry timings and pids: compare their sha
        return {n: json.loads(b)["data_sha256"] if n.endswith(".stats.json") else b for n, b in files.items()}

    assert content({p.name: p.read_bytes() for p in shards.iterdir()}) == content(original)  # repaired exactly
    assert {p.name: p.read_bytes() for p in (out / "index").iterdir()} == original_index
    assert (out / "_SUCCESS.json").exists()

    # a stats file from another job (folders mixed up): refused, nothing rewritten
    stats = json.loads((shards / "00004.stats.json").read_text())
    stats["job_id"] = "0123456789abcdef"
    (shards / "00004.stats.json").write_text(json.dumps(stats))
    before = {p.name: p.stat().st_mtime_ns for p in shards.iterdir()}
    with pytest.raises(UserError, match=r"shard 00004 .* written by job '0123456789abcdef'.*--overwrite"):
        generate(**kw)
    assert {p.name: p.stat().st_mtime_ns for p in shards.iterdir()} == before


def test_committed_shard_is_never_overwritten_with_other_bytes(tmp_path: Path) -> None:
    from llmgan.job.shards import ImageRecord, ShardConflict, ShardResult, write_shard

    storage = Storage()
    rec = ImageRecord("00000_000000", b"png-bytes", "a caption", {"prompt_id": "a"})
    first = write_shard(storage, str(tmp_path), ShardResult(0, 0, 1, records=[rec]), "webdataset", "job1")
    again = write_shard(storage, str(tmp_path), ShardResult(0, 0, 1, records=[rec]), "webdataset", "job1")
    assert again == first  # a retried write of identical bytes is a no-op
    other = ImageRecord("00000_000000", b"other-bytes", "a caption", {"prompt_id": "a"})
    with pytest.raises(ShardConflict, match="refusing to overwrite"):
        write_shard(storage, str(tmp_path), ShardResult(0, 0, 1, records=[other]), "webdataset", "job1")
    with tarfile.open(tmp_path / "shards" / "00000.tar") as t:
        assert t.extractfile("00000_000000.png").read() == b"png-bytes"  # type: ignore[union-attr]


# ---- hostile prompts ----------------------------------------------------------------------------------------
def hostile_table() -> pa.Table:
    ids = ["../../escape", "/etc/passwd", "nul\x00id", "ok-1", "x" * 500, "long", "ctl", "bad-utf8", "big-extra",
           "blocked-word", "blocked-re", "ok-2", "ok-3"]
    prompts = [b"red star", b"blue circle", b"green cross", b"white star", b"red circle", b"p" * 1_000_000,
               b"red\x00star", b"\xff\xfe star", b"blue star", b"a forbidden star", b"green star #666", b"  white   cross",
               b"Forbiddenness is fine"]
    extra = ["s"] * len(ids)
    extra[8] = "e" * 100_000
    return pa.table({"id": ids, "prompt": pa.array(prompts, pa.binary()).view(pa.string()),
                     "n": pa.array([2] * len(ids), pa.int32()), "note": extra})


def test_hostile_prompts_are_rejected_per_row_and_keys_stay_inside(tiny_ckpt: str, tmp_path: Path) -> None:
    prompts = tmp_path / "hostile.parquet"
    pq.write_table(hostile_table(), prompts)
    blocklist = tmp_path / "blocklist.txt"
    blocklist.write_text("# words and patterns\nforbidden\nre:#\\d{3}\n")
    out = tmp_path / "sub" / "out"
    summary = generate(prompts=str(prompts), out=str(out), ckpt=tiny_ckpt, expand=False, shard_size=4,
                       blocklist=str(blocklist))
    assert summary["rejected_reasons"] == {
        "prompt longer than 2000 characters": 1, "control characters in prompt": 1,
        "column 'prompt' is not valid UTF-8": 1, "extra columns larger than 65536 bytes": 1,
        "id longer than 200 characters": 1, "blocked": 2,
    }
    assert summary["images"] == 2 * 6
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert all(out in p.parents or p in (prompts, blocklist) for p in written)  # nothing escaped --out
    metas = []
    for tar_path in sorted((out / "shards").glob("*.tar")):
        with tarfile.open(tar_path) as tar:
            for m in tar.getmembers():
                assert KEY.match(m.name) and m.isfile(), m.name
                if m.name.endswith(".json"):
                    metas.append(json.loads(tar.extractfile(m).read()))  # type: ignore[union-attr]
    ids = {m["prompt_id"] for m in metas}
    assert ids == {"../../escape", "/etc/passwd", "nul\x00id", "ok-1", "ok-2", "ok-3"}  # carried as data only
    assert {m["prompt"] for m in metas if m["prompt_id"] == "ok-3"} == {"Forbiddenness is fine"}  # whole words


@pytest.mark.parametrize("make, message", [
    (lambda d: (d / "empty.parquet").write_bytes(b""), "not a readable Parquet file"),
    (lambda d: pq.write_table(pa.table({"prompt": pa.array([], pa.string())}), d / "empty.parquet"), "has no rows"),
    (lambda d: (d / "empty.parquet").write_bytes(b"PAR1" + b"\0" * 64 + b"PAR1"), "not a readable Parquet file"),
    (lambda d: pq.write_table(pa.table({"prompt": ["a"], "seed": ["x"]}), d / "empty.parquet"), "'seed' must be integer"),
    (lambda d: pq.write_table(pa.table({"prompt": ["a"], "id": pa.array([b"\xff"], pa.binary()).view(pa.string())}),
                              d / "empty.parquet"), "'id' holds bytes that are not valid UTF-8"),
])
def test_malformed_files_are_one_line_user_errors(tmp_path: Path, make, message: str) -> None:
    make(tmp_path)
    with pytest.raises(UserError, match=message):
        open_prompts(str(tmp_path / "empty.parquet"))


def test_truncated_prompts_file(tmp_path: Path) -> None:
    path = tmp_path / "p.parquet"
    write_prompts(path, 50)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="not a readable Parquet file"):
        open_prompts(str(path))


NULLS = """
import resource, sys
import pyarrow as pa, pyarrow.parquet as pq
from llmgan.io.prompts import open_prompts
from llmgan.job.plan import make_plan
path = sys.argv[1]
rows = 3_000_000
pq.write_table(pa.table({"prompt": pa.nulls(rows, pa.string()), "n": pa.nulls(rows, pa.int32())}), path,
               row_group_size=250_000)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
pf = open_prompts(path)
plan = make_plan(pf, 1, 1000)
rejected = 0
for spec in plan:
    rows_ok, rej = pf.read_range(spec.row_start, spec.row_stop)
    assert not rows_ok
    rejected += len(rej)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(len(plan), rejected, sum(s.planned_images for s in plan), (peak - base) // 1024)
"""


def test_millions_of_null_rows_stream_in_bounded_shards(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-c", NULLS, str(tmp_path / "nulls.parquet")],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    shards, rejected, planned, grown_mb = map(int, result.stdout.split())
    assert shards == 30 and rejected == 3_000_000 and planned == 0  # 100,000 rows per shard at most
    print(f"3M null rows: {shards} shards, peak RSS grew {grown_mb} MB")
    assert grown_mb < 1500


def test_blocklist_file_errors_and_caption_matching(tmp_path: Path) -> None:
    from llmgan.job.blocklist import load_blocklist, parse_blocklist

    (tmp_path / "bad.txt").write_text("ok\nre:(unclosed\n")
    with pytest.raises(UserError, match="line 2: invalid regular expression"):
        load_blocklist(str(tmp_path / "bad.txt"))
    with pytest.raises(UserError, match="blocklist not found"):
        load_blocklist(str(tmp_path / "missing.txt"))
    bl = parse_blocklist("Red Star\nre:\\bcorner\\b\n# comment\n\n")
    assert bl.entries == 2
    assert bl.blocks("a small red   star") and bl.blocks("in the top left CORNER")
    assert not bl.blocks("a redstar") and not bl.blocks("corners") and not parse_blocklist("").blocks("x")


def test_blocklist_from_s3_rejects_prompts_in_the_expander_stage(tmp_path: Path, tiny_ckpt: str, s3_server: str,
                                                                  s3_url: str) -> None:
    from llmgan.job.plan import ShardSpec
    from llmgan.job.stages import ShardExpander

    prompts = tmp_path / "p.parquet"
    pq.write_table(pa.table({"prompt": ["a red star", "a blue circle", "a red square"]}), prompts)
    url = join(s3_url, "policy/blocklist.txt")
    Storage(s3_server).write_text(url, "re:\\bred\\b\n")
    cfg = GenerateConfig(prompts=str(prompts), out=str(tmp_path / "o"), ckpt=tiny_ckpt, expand=False,
                         blocklist=url, s3_endpoint=s3_server)
    batch = ShardExpander(cfg)(ShardSpec(0, 0, 3, 3))
    assert [it.caption for it in batch.items] == ["a blue circle"]
    assert [r["reason"] for r in batch.rejected] == ["blocked", "blocked"]
    with pytest.raises(UserError, match="blocklist not found"):
        ShardExpander(dataclasses.replace(cfg, blocklist=join(s3_url, "missing.txt")))(ShardSpec(0, 0, 3, 3))


@pytest.fixture(scope="module")
def random_lm(tmp_path_factory: pytest.TempPathFactory) -> str:
    """An untrained 1-layer GPT-2 over a small word vocabulary (built here, nothing downloaded)."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    words = ["<eos>", "<unk>", "\n"] + "a the on in small large red blue green star circle cross top left of".split()
    tokenizer = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<eos>", unk_token="<unk>",
                                   pad_token="<eos>")
    torch.manual_seed(1)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(words), n_positions=64, n_embd=16, n_layer=1, n_head=2,
                                       eos_token_id=0, bos_token_id=0, pad_token_id=0))
    path = tmp_path_factory.mktemp("random_lm")
    model.save_pretrained(path)
    fast.save_pretrained(path)
    return str(path)


def test_blocklist_applies_to_expanded_captions(tmp_path: Path, tiny_ckpt: str, random_lm: str) -> None:
    """The expander stage drops exactly the variants whose expanded caption matches; the rest keep their seeds."""
    from llmgan.job.plan import ShardSpec
    from llmgan.job.stages import ShardExpander

    prompts = tmp_path / "p.parquet"
    # prompts outside the shapes vocabulary: the faithfulness guard leaves their captions as the LM wrote them
    pq.write_table(pa.table({"prompt": ["zebra", "paper boat", "old key", "quiet lake"]}), prompts)
    base = dict(prompts=str(prompts), out=str(tmp_path / "o"), ckpt=tiny_ckpt, lm=random_lm, variants=3,
                n_per_prompt=3)
    spec = ShardSpec(0, 0, 4, 12)
    plain = ShardExpander(GenerateConfig(**base))(spec)
    prompt_words = {"zebra", "paper", "boat", "old", "key", "quiet", "lake"}
    caption_words = {w for it in plain.items for w in it.caption.lower().split()} - prompt_words
    if not caption_words:
        pytest.skip("the caption LM only echoed the prompts")
    word = sorted(caption_words)[0]
    (tmp_path / "bl.txt").write_text(f"{word}\n")
    blocked = ShardExpander(GenerateConfig(**base, blocklist=str(tmp_path / "bl.txt")))(spec)
    hit = {(it.meta["row"], it.meta["variant"]) for it in plain.items if word in it.caption.lower().split()}
    assert hit
    assert [(it.meta["row"], it.meta["variant"], it.seed, it.caption) for it in blocked.items] == [
        (it.meta["row"], it.meta["variant"], it.seed, it.caption) for it in plain.items
        if (it.meta["row"], it.meta["variant"]) not in hit]
    assert {(r["row"], r["variant"]) for r in blocked.rejected if r["reason"] == "blocked"} == hit


# ---- image datasets -----------------------------------------------------------------------------------------
def _png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG that claims to be width x height: a decompression bomb for any decoder that trusts it."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_corrupt_images_and_decompression_bombs_are_skipped(tmp_path: Path) -> None:
    from PIL import Image

    from llmgan.data.readers import load_captioned

    Image.new("RGB", (16, 16), (255, 0, 0)).save(tmp_path / "good.png")
    (tmp_path / "bomb.png").write_bytes(_png_header_only(60_000, 60_000))
    (tmp_path / "bomb2.png").write_bytes(_png_header_only(8_000, 8_000))
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    (tmp_path / "half.png").write_bytes((tmp_path / "good.png").read_bytes()[:40])
    for name in ("good", "bomb", "bomb2", "broken", "half"):
        (tmp_path / f"{name}.txt").write_text(f"a red square {name}")
    data = load_captioned(str(tmp_path), 8)
    assert data.captions == ["a red square good"]
    assert sum(data.skipped.values()) == 4
    assert set(data.skipped) <= {"image too large", "corrupt image"} and data.skipped.get("image too large", 0) >= 1


# ---- secrets ------------------------------------------------------------------------------------------------
def test_no_secret_in_any_output_log_or_error(ray_local, tiny_ckpt: str, tmp_path: Path, s3_server: str,
                                              s3_url: str) -> None:
    storage = Storage(s3_server)
    local = write_prompts(tmp_path / "p.parquet", 6)
    prompts = join(s3_url, "p.parquet")
    storage.write_bytes(prompts, Path(local).read_bytes())
    host = s3_server.split("://", 1)[1]
    password = "endpoint-PASSWORD-sekrit"
    endpoint = f"http://admin:{password}@{host}"
    out = join(s3_url, "out")
    cmd = [sys.executable, str(REPO / "jobs/generate.py"), prompts, "--out", out, "--ckpt", tiny_ckpt, "--no-expand",
           "--shard-size", "4", "--s3-endpoint", endpoint]
    env = dict(os.environ, RAY_ADDRESS=ray_local.get_runtime_context().gcs_address)
    ok = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert ok.returncode == 0, ok.stderr[-2000:]
    # failures too: a missing bucket and a rerun with different settings
    bad = subprocess.run([*cmd[:4], "s3://no-such-bucket-x/out", *cmd[5:]], env=env, capture_output=True, text=True,
                         timeout=600)
    refused = subprocess.run([*cmd, "--seed", "3"], env=env, capture_output=True, text=True, timeout=600)
    assert bad.returncode == 1 and refused.returncode == 2
    assert "no-such-bucket-x" in bad.stderr and "different job" in refused.stderr
    texts = [ok.stdout, ok.stderr, bad.stdout, bad.stderr, refused.stdout, refused.stderr]
    names = storage.list(out)
    assert {"_job.json", "_SUCCESS.json"} <= set(names)
    blobs = [storage.read_bytes(join(out, n)) for n in names]
    for tar_blob in [b for n, b in zip(names, blobs) if n.endswith(".tar")]:
        with tarfile.open(fileobj=io.BytesIO(tar_blob)) as tar:
            blobs += [tar.extractfile(m).read() for m in tar.getmembers()]  # type: ignore[union-attr]
    # the Ray session's own logs too: driver, raylet, GCS and every worker that ran the job's actors and tasks
    from ray._private import worker as ray_worker  # no public API names the session directory

    logs = [p for p in Path(ray_worker._global_node.get_logs_dir_path()).rglob("*") if p.is_file()]
    assert any(p.name.startswith("worker-") for p in logs)
    blobs += [p.read_bytes() for p in logs]
    for secret in (FAKE_KEY_ID, FAKE_SECRET, password, "admin:"):
        for text in texts:
            assert secret not in text
        for blob in blobs:
            assert secret.encode() not in blob
    job = json.loads(storage.read_text(join(out, "_job.json")))
    assert job["run"]["s3_endpoint"] == s3_server  # recorded, without the user:password@


def test_plan_of_hostile_file_counts_only_real_prompts(tmp_path: Path) -> None:
    path = tmp_path / "h.parquet"
    pq.write_table(hostile_table(), path)
    plan = make_plan(open_prompts(str(path)), 1, 1000)
    assert len(plan) == 1 and plan[0].planned_images == 2 * 13  # nulls count 0; other rejections surface later
