"""Outputs users load without glue: Parquet shards with real columns (Hugging Face `datasets` Image), the index
outside the data glob, the documented WebDataset and `datasets` lines run as written (warnings as errors),
`llmgan export` (a folder of PNGs + manifest.csv, local and S3), and the contact sheet sampled across prompts."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import warnings
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from llmgan.io.storage import Storage, join
from llmgan.job.config import GenerateConfig
from llmgan.job.shards import ImageRecord, ShardResult, write_shard

REPO = Path(__file__).resolve().parents[1]
IDS = ["p/0", "Star", "star", "..", "plain-id_1.x", "été"]


def _prompts(path: Path, rows: int = 12) -> str:
    words = ["red star", "blue circle", "green cross", "white square"]
    ids = [IDS[i] if i < len(IDS) else f"id{i}" for i in range(rows)]
    pq.write_table(pa.table({
        "prompt": [words[i % len(words)] for i in range(rows)], "id": ids,
        "n": pa.array([1 + i % 2 for i in range(rows)], pa.int32()),
        "style": [f"s{i}" for i in range(rows)], "weight": [i / 4 for i in range(rows)],
        "count": pa.array([None if i % 3 else i for i in range(rows)], pa.int64()),
        "image": ["user column named image"] * rows,
    }), path)
    return str(path)


def _job(prompts: str, out: str, ckpt: str, **kw) -> dict:  # type: ignore[no-untyped-def]
    from llmgan.job.local_executor import LocalExecutor
    from llmgan.job.run import run_job

    kw = {"shard_size": 5, **kw}
    cfg = GenerateConfig(prompts=prompts, out=out, ckpt=ckpt, expand=False, batch_size=8, executor="local",
                         consistency="none", **kw)
    return run_job(cfg, LocalExecutor(), progress=False)


@pytest.fixture(scope="module")
def jobs(tiny_ckpt: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same prompts as a WebDataset job and a Parquet job (same images: the format is not in the seeds)."""
    root = tmp_path_factory.mktemp("jobs")
    prompts = _prompts(root / "prompts.parquet")
    outs = {fmt: root / fmt for fmt in ("webdataset", "parquet")}
    for fmt, out in outs.items():
        _job(prompts, str(out), tiny_ckpt, format=fmt)
    return outs


def _documented_lines() -> dict[str, str]:
    """The WebDataset and `datasets` lines of docs/generation.md, as documented."""
    text = (REPO / "docs" / "generation.md").read_text()
    block = re.search(r"```python\n(import webdataset as wds\n.*?)```", text, re.S)
    assert block, "docs/generation.md lost its reading example"
    lines = block.group(1).splitlines()
    return {"webdataset": "\n".join(lines[:2]), "parquet": "\n".join(lines[2:])}


def test_parquet_shards_have_typed_columns_and_index_is_outside_the_glob(jobs: dict[str, Path]) -> None:
    out = jobs["parquet"]
    names = [f"{i:05d}.parquet" for i in range(3)]  # 18 images in shards of 6 (a prompt never splits)
    assert sorted(p.name for p in (out / "shards").glob("*.parquet")) == names
    assert sorted(p.name for p in (out / "index").iterdir()) == names
    table = pq.read_table(out / "shards" / "00000.parquet")
    schema = table.schema
    assert json.loads(schema.metadata[b"huggingface"])["info"]["features"]["image"] == {"_type": "Image"}
    assert schema.field("image").type == pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    for name, kind in [("prompt", pa.string()), ("prompt_id", pa.string()), ("caption", pa.string()),
                       ("seed", pa.uint64()), ("variant", pa.int32()), ("consistency", pa.float64()),
                       ("attempts", pa.int32()), ("understood", pa.string()),
                       ("not_understood", pa.list_(pa.string())), ("style", pa.string()),
                       ("weight", pa.float64()), ("count", pa.int64()), ("extra_image", pa.string())]:
        assert schema.field(name).type == kind, name
    assert "json" not in schema.names
    row = table.slice(0, 1).to_pylist()[0]
    assert row["prompt_id"] == "p/0" and row["style"] == "s0" and row["count"] == 0 and row["attempts"] == 1
    assert row["consistency"] is None  # not scored in this job
    assert row["extra_image"] == "user column named image" and row["image"]["path"] == f"{row['key']}.png"


def test_documented_reading_lines_run_without_warnings(jobs: dict[str, Path], monkeypatch: pytest.MonkeyPatch,
                                                       tmp_path: Path) -> None:
    import datasets

    lines = _documented_lines()
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf")
    n_images = sum(json.loads(p.read_text())["images"] for p in (jobs["webdataset"] / "shards").glob("*.stats.json"))
    for fmt, code in lines.items():
        code = code.replace("outputs/batch1", str(jobs[fmt])).replace("{00000..00009}", "{00000..00002}")
        scope: dict = {}
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            # Python hides ResourceWarning by default; webdataset 1.0 leaves closing its tar streams to the GC
            warnings.simplefilter("ignore", ResourceWarning)
            exec(code, scope)  # noqa: S102 - the documented lines, as a user would paste them
            if fmt == "webdataset":
                samples = list(scope["samples"])
                assert len(samples) == n_images
                assert samples[0]["png"].size == (32, 32) and samples[0]["json"]["prompt_id"] == "p/0"
            else:
                ds = scope["ds"]
                assert len(ds) == n_images and ds[0]["image"].size == (32, 32)
                assert ds[0]["prompt_id"] == "p/0" and ds[0]["weight"] == 0.0 and ds[0]["consistency"] is None


def _manifest(folder: Path) -> list[dict[str, str]]:
    with open(folder / "manifest.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _cli(*args: str) -> int:
    from llmgan.cli.app import main

    with pytest.raises(SystemExit) as info:
        main(list(args))
    return int(info.value.code)


def test_export_writes_a_folder_of_pngs_and_a_manifest(jobs: dict[str, Path], tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    dests = {}
    for fmt, out in jobs.items():
        dests[fmt] = tmp_path / fmt
        assert _cli("export", str(out), str(dests[fmt])) == 0
        captured = capsys.readouterr()
        assert re.fullmatch(rf"18 images from 3 shards -> {re.escape(str(dests[fmt]))} \(.*manifest.csv; .*s\)\n",
                            captured.out)
        assert "[llmgan] export: shard 00002 done: 18/18 images" in captured.err
    rows = _manifest(dests["webdataset"])
    assert len(rows) == 18 and list(rows[0])[:7] == ["path", "prompt_id", "prompt", "caption", "seed", "variant",
                                                      "index"]
    assert list(rows[0])[-4:] == ["style", "weight", "count", "image"]  # extra columns, in the file's order
    assert rows == _manifest(dests["parquet"])  # either shard format exports the same folder
    folders = {r["prompt_id"]: r["path"].split("/")[0] for r in rows}
    assert folders["plain-id_1.x"] == "plain-id_1.x" and folders["Star"] == "Star"
    assert re.fullmatch(r"p_0-[0-9a-f]{8}", folders["p/0"]) and re.fullmatch(r"_\.-[0-9a-f]{8}", folders[".."])
    assert re.fullmatch(r"star-[0-9a-f]{8}", folders["star"])  # "Star" and "star" stay apart on any file system
    assert re.fullmatch(r"_t_-[0-9a-f]{8}", folders["été"])
    for r in rows:
        png = (dests["webdataset"] / r["path"]).read_bytes()
        assert hashlib.sha256(png).hexdigest() == r["sha256"]
        assert r["path"].endswith(f"/{r['variant']}_{r['index']}.png")
    first = next(r for r in rows if r["prompt_id"] == "p/0")
    assert first["consistency"] == "" and first["attempts"] == "1" and first["style"] == "s0"
    assert first["image"] == "user column named image" and first["weight"] == "0.0"
    assert {p.name for p in dests["webdataset"].iterdir() if p.is_file()} == {"manifest.csv"}  # the rest: folders
    assert _cli("export", str(jobs["parquet"]), str(dests["webdataset"]), "--overwrite", "--quiet") == 0
    assert _manifest(dests["webdataset"]) == rows and capsys.readouterr().err == ""


def test_an_index_left_in_shards_by_an_older_version_is_moved_out_by_redoing_its_shard(tmp_path: Path) -> None:
    from llmgan.job.shards import check_shard, output_names

    st, out = Storage(), str(tmp_path / "out")
    write_shard(st, out, ShardResult(0, 0, 1, [_record("00000_000000", 0, {})]), "parquet", job_id="j")
    assert check_shard(st, out, 0, output_names(st, out), "j") is None
    legacy = Path(out, "shards", "00000.index.parquet")
    Path(out, "index", "00000.parquet").rename(legacy)
    assert check_shard(st, out, 0, output_names(st, out), "j") == "index in the old place (shards/00000.index.parquet)"
    assert not legacy.exists()  # the job redoes the shard; no index is left for a shards/*.parquet glob


@pytest.mark.parametrize(
    "setup, args, message",
    [
        (lambda out, d: None, lambda out, d: [str(out.parent), str(d)], "is not a job output (no _job.json)"),
        (lambda out, d: d.parent.mkdir(exist_ok=True) or d.write_text("x"), lambda out, d: [str(out), str(d)],
         "is a file, not a folder"),
        (lambda out, d: d.mkdir(parents=True) or (d / "keep.txt").write_text("x"), lambda out, d: [str(out), str(d)],
         "is not empty; choose an empty folder or pass --overwrite"),
        (lambda out, d: None, lambda out, d: [str(out), str(out / "export")], "is the job output or inside it"),
    ],
)
def test_export_bad_input_is_one_line_and_writes_nothing(jobs: dict[str, Path], tmp_path: Path, setup, args,
                                                         message: str, capsys: pytest.CaptureFixture[str]) -> None:
    out, dest = jobs["webdataset"], tmp_path / "dest"
    setup(out, dest)
    before = sorted(p for p in tmp_path.rglob("*"))
    assert _cli("export", *args(out, dest)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert sorted(p for p in tmp_path.rglob("*")) == before and not (out / "export").exists()


def test_unfinished_job_needs_partial_and_a_damaged_shard_stops_the_export(
        tiny_ckpt: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    _job(_prompts(tmp_path / "p.parquet"), str(out), tiny_ckpt)
    (out / "_SUCCESS.json").unlink()
    (out / "shards" / "00001.stats.json").unlink()  # as if the job were still running: shard 1 not committed
    assert _cli("export", str(out), str(tmp_path / "a")) == 2
    err = capsys.readouterr().err
    assert "unfinished job (2 of 3 shards committed, no _SUCCESS.json)" in err and "--partial" in err
    assert not (tmp_path / "a").exists()
    assert _cli("export", str(out), str(tmp_path / "a"), "--partial", "--quiet") == 0
    captured = capsys.readouterr()
    assert "exporting 2 of 3 shards" in captured.err and "[llmgan] export" not in captured.err
    stats = [json.loads((out / "shards" / f"{i:05d}.stats.json").read_text()) for i in (0, 2)]
    assert len(_manifest(tmp_path / "a")) == sum(s["images"] for s in stats)
    tar = out / "shards" / "00002.tar"
    tar.write_bytes(tar.read_bytes()[:-1024])
    assert _cli("export", str(out), str(tmp_path / "b"), "--partial") == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: shard 00002 of ") and "damaged" in err and "rerun the job" in err
    assert not (tmp_path / "b" / "manifest.csv").exists()  # no manifest: the export did not finish


def test_export_from_s3(tiny_ckpt: str, tmp_path: Path, s3_server: str, s3_url: str) -> None:
    from llmgan.job.export import plan_export, run_export

    storage = Storage(endpoint=s3_server)
    out = join(s3_url, "job")
    _job(_prompts(tmp_path / "p.parquet", rows=4), out, tiny_ckpt, s3_endpoint=s3_server, format="parquet")
    assert {"index/00000.parquet", "shards/00000.parquet"} <= set(storage.list(out))
    result = run_export(storage, plan_export(storage, out, str(tmp_path / "e")))
    assert result["images"] == 6 and len(_manifest(tmp_path / "e")) == 6
    back = join(s3_url, "exported")  # and to S3
    run_export(storage, plan_export(storage, out, back))
    names = storage.list(back)
    assert "manifest.csv" in names and len([n for n in names if n.endswith(".png")]) == 6


def _record(key: str, i: int, meta: dict) -> ImageRecord:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (40 * i % 255, 0, 0)).save(buf, "PNG")
    return ImageRecord(key, buf.getvalue(), f"caption {i}", {"prompt": f"prompt {i}", "prompt_id": str(i),
                                                             "variant": 0, "index": 0, "seed": i, **meta})


def test_understood_words_and_null_consistency_in_columns_and_manifest(tmp_path: Path) -> None:
    """Images whose prompts had words the model did not understand: consistency null, `understood` as JSON,
    `not_understood` a list; shards without those fields (older checkpoints) load beside them."""
    import datasets

    from llmgan.job.export import plan_export, run_export

    st, out = Storage(), str(tmp_path / "out")
    understood = {"red": {"attr": "colour", "value": "red", "confidence": 0.98}}
    flagged = [_record("00000_000000", 0, {"consistency": None, "consistency_of_understood": 0.91, "attempts": 2,
                                           "understood": understood, "not_understood": ["dragon"]}),
               _record("00000_000001", 1, {"consistency": 0.75, "understood": {}, "not_understood": []})]
    plain = [_record("00001_000000", 2, {})]
    for index, records in ((0, flagged), (1, plain)):
        write_shard(st, out, ShardResult(index, 0, 1, records), "parquet", job_id="j")
    Path(out, "_job.json").write_text(json.dumps({"job_id": "j", "plan": {"shards": 2},
                                                  "settings": {"prompt_column": "prompt"}, "prompts": {"columns": []}}))
    Path(out, "_SUCCESS.json").write_text("{}")
    rows = pq.read_table(Path(out, "shards", "00000.parquet")).to_pylist()
    assert rows[0]["consistency"] is None and rows[0]["consistency_of_understood"] == 0.91
    assert json.loads(rows[0]["understood"]) == understood and rows[0]["not_understood"] == ["dragon"]
    assert rows[1]["consistency"] == 0.75 and rows[1]["not_understood"] == []
    older = pq.read_table(Path(out, "shards", "00001.parquet")).to_pylist()[0]
    assert older["understood"] is None and older["not_understood"] is None and older["consistency"] is None
    ds = datasets.load_dataset("parquet", data_files=str(Path(out, "shards", "*.parquet")), split="train",
                               cache_dir=str(tmp_path / "hf"))
    assert ds["not_understood"] == [["dragon"], [], None]
    run_export(st, plan_export(st, out, str(tmp_path / "e")))
    manifest = _manifest(tmp_path / "e")
    assert manifest[0]["consistency"] == "" and json.loads(manifest[0]["understood"]) == understood
    assert json.loads(manifest[0]["not_understood"]) == ["dragon"] and manifest[1]["not_understood"] == "[]"
    assert manifest[2]["understood"] == manifest[2]["not_understood"] == ""


def test_contact_sheet_samples_prompts_across_the_job(tiny_ckpt: str, tmp_path: Path) -> None:
    from llmgan.job.contact_sheet import MAX_ROWS, sample_rows, spread
    from llmgan.job.shards import committed_shards

    assert spread(list(range(10)), 3) == [0, 4, 9] and spread([1, 2], 5) == [1, 2]
    out = tmp_path / "out"
    prompts = tmp_path / "p.parquet"
    pq.write_table(pa.table({"prompt": [f"prompt number {i}" for i in range(40)], "n": pa.array([2] * 40)}), prompts)
    summary = _job(str(prompts), str(out), tiny_ckpt, shard_size=4)
    assert summary["shards"] == 20
    rows = sample_rows(Storage(), str(out), MAX_ROWS, 4)
    assert len(rows) == MAX_ROWS and all(len(recs) == 2 for _, recs in rows)  # both images of each prompt
    ids = [int(recs[0].meta["prompt_id"]) for _, recs in rows]
    assert ids == sorted(set(ids)) and ids[0] == 0 and ids[-1] == 39  # from the first prompt to the last
    sheet = Image.open(out / "contact_sheet.png")
    assert len(committed_shards(Storage(), str(out))) == 20
    # 16 panels of (caption strip above two 96 px tiles), in columns that keep the sheet roughly square
    assert sheet.width >= 2 * 2 * 96 and sheet.height >= 4 * 96 and 0.5 < sheet.width / sheet.height < 2
