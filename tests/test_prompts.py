"""Prompts reader: the contract (docs/generation.md), every input format (Parquet, CSV, TSV, JSON Lines, text) with the
same checks, bad input as one-line UserErrors, bounded-memory reads, S3, and a local job from CSV and text files."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from llmgan.errors import UserError
from llmgan.io.prompts import open_prompts
from llmgan.io.storage import Storage, join
from llmgan.job.plan import make_plan


def write(path: Path, table: pa.Table, **kw) -> str:
    pq.write_table(table, path, **kw)
    return str(path)


def test_valid_file_with_extras(tmp_path: Path) -> None:
    url = write(tmp_path / "p.parquet", pa.table({
        "prompt": ["red star", "  blue   circle ", "green cross"],
        "id": ["a", "b", "c"],
        "n": pa.array([2, None, 1], pa.int32()),
        "seed": pa.array([7, 8, None], pa.int64()),
        "style": ["x", "y", "z"],
    }))
    pf = open_prompts(url)
    rows, rejected = pf.read_range(0, 3)
    assert rejected == []
    assert [r.id for r in rows] == ["a", "b", "c"]
    assert rows[1].prompt == "blue circle"  # whitespace normalised
    assert rows[0].n == 2 and rows[1].n is None and rows[2].seed is None
    assert rows[2].extra == {"style": "z"}
    counts = [int(c) for arr in pf.image_counts(default_n=4) for c in arr]
    assert counts == [2, 4, 1]


def test_default_ids_are_row_numbers_and_bad_rows_reported(tmp_path: Path) -> None:
    url = write(tmp_path / "p.parquet", pa.table({
        "prompt": ["ok", None, "", "   ", "fine", "too many"],
        "n": pa.array([1, 1, 1, 1, 0, 10**6], pa.int64()),
    }))
    rows, rejected = open_prompts(url).read_range(0, 6)
    assert [r.id for r in rows] == ["0"]
    reasons = {r.id: r.reason for r in rejected}
    assert reasons["1"] == "null prompt"
    assert reasons["2"] == reasons["3"] == "empty prompt"
    assert reasons["4"].startswith("invalid n=0") and reasons["5"].startswith("invalid n=1000000")


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d: str(d / "missing.parquet"), "prompts file not found"),
        (lambda d: (d / "x.parquet").write_text("not parquet at all") and str(d / "x.parquet"), "not a readable Parquet"),
        (lambda d: write(d / "c.parquet", pa.table({"text": ["a"], "id": ["1"]})), "no column 'prompt' (columns found: text, id); name the prompt column with --prompt-column"),
        (lambda d: write(d / "t.parquet", pa.table({"prompt": [1, 2]})), "column 'prompt' must be string"),
        (lambda d: write(d / "n.parquet", pa.table({"prompt": ["a"], "n": ["3"]})), "column 'n' must be integer"),
        (lambda d: write(d / "d.parquet", pa.table({"prompt": ["a", "b", "c"], "id": ["x", "y", "x"]})), "duplicate id 'x'"),
        (lambda d: write(d / "e.parquet", pa.table({"prompt": pa.array([], pa.string())})), "has no rows"),
        (lambda d: write(d / "i.parquet", pa.table({"prompt": ["a", "b"], "id": ["x", None]})), "null value"),
    ],
)
def test_bad_files_raise_one_line(tmp_path: Path, make, message: str) -> None:
    url = make(tmp_path)
    with pytest.raises(UserError) as info:
        open_prompts(url)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_prompt_column_override(tmp_path: Path) -> None:
    url = write(tmp_path / "p.parquet", pa.table({"text": ["a cat"]}))
    rows, _ = open_prompts(url, prompt_column="text").read_range(0, 1)
    assert rows[0].prompt == "a cat" and rows[0].extra == {}


def test_100k_rows_read_in_bounded_ranges(tmp_path: Path) -> None:
    n = 100_000
    url = write(tmp_path / "big.parquet", pa.table({"prompt": [f"prompt {i}" for i in range(n)],
                                                    "id": [f"id-{i}" for i in range(n)]}), row_group_size=5_000)
    pf = open_prompts(url)
    read_groups: list[int] = []
    real = pf._rows._file.read_row_group
    pf._rows._file.read_row_group = lambda i, *a, **k: (read_groups.append(i), real(i, *a, **k))[1]
    rows, _ = pf.read_range(52_000, 52_010)
    assert [r.id for r in rows] == [f"id-{i}" for i in range(52_000, 52_010)]
    assert read_groups == [10]  # only the row group that holds the range
    read_groups.clear()
    total = 0
    for rows, rejected in pf.iter_ranges(20_000):
        assert len(rows) <= 20_000 and not rejected
        total += len(rows)
    assert total == n
    assert sorted(set(read_groups)) == list(range(20)) and len(read_groups) == 20  # each group read once


def test_prompts_on_s3(s3_server: str, s3_url: str, tmp_path: Path) -> None:
    local = write(tmp_path / "p.parquet", pa.table({"prompt": ["red star", "blue circle"], "id": ["a", "b"]}))
    st = Storage(endpoint=s3_server)
    url = join(s3_url, "prompts.parquet")
    st.write_bytes(url, Path(local).read_bytes())
    rows, _ = open_prompts(url, storage=st).read_range(0, 2)
    assert [r.prompt for r in rows] == ["red star", "blue circle"]
    with pytest.raises(UserError, match="not found"):
        open_prompts(join(s3_url, "nope.parquet"), storage=st)


# ---- every input format: the same columns, checks and rejections -------------------------------------------------

ROWS = [
    {"prompt": "red star", "id": "a", "n": 2, "seed": 7, "style": "flat"},
    {"prompt": "  blue   circle ", "id": "b", "n": None, "seed": None, "style": "soft"},
    {"prompt": "", "id": "c", "n": 1, "seed": None, "style": "x"},
    {"prompt": "green cross", "id": "007", "n": 0, "seed": 3, "style": "y"},
]


def write_rows(path: Path, rows: list[dict], fmt: str) -> str:
    """`rows` in `fmt`, the way common tools write it (csv module, json.dumps per line)."""
    import csv
    import json

    if fmt == "parquet":
        names = list(rows[0])
        types = {"n": pa.int32(), "seed": pa.int64()}
        pq.write_table(pa.table({k: pa.array([r[k] for r in rows], types.get(k, pa.string())) for k in names}), path)
    elif fmt in ("csv", "tsv"):
        with open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]), delimiter="\t" if fmt == "tsv" else ",")
            writer.writeheader()
            writer.writerows({k: "" if v is None else v for k, v in r.items()} for r in rows)
    elif fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    else:
        path.write_text("".join(r["prompt"] + "\n" for r in rows), encoding="utf-8")
    return str(path)


def summary(pf) -> tuple[list, list]:  # type: ignore[no-untyped-def]
    rows, rejected = pf.read_range(0, pf.num_rows)
    return ([(r.row, r.id, r.prompt, r.n, r.seed, r.extra) for r in rows],
            [(r.row, r.id, r.reason) for r in rejected])


@pytest.mark.parametrize("fmt, ext", [("csv", "csv"), ("tsv", "tsv"), ("jsonl", "jsonl"), ("tsv", "tab"),
                                      ("jsonl", "ndjson")])
def test_text_formats_read_like_parquet(tmp_path: Path, fmt: str, ext: str) -> None:
    reference = open_prompts(write_rows(tmp_path / "p.parquet", ROWS, "parquet"))
    pf = open_prompts(write_rows(tmp_path / f"p.{ext}", ROWS, fmt))
    assert pf.format == fmt and reference.format == "parquet"
    assert pf.columns == reference.columns and pf.extra_columns == ["style"]
    assert summary(pf) == summary(reference)
    rows, rejected = summary(pf)
    assert rows[1][2] == "blue circle" and rows[0][5] == {"style": "flat"}
    assert [r[2] for r in rejected] == ["empty prompt", "invalid n=0 (must be 1..10000)"]
    assert rejected[1][1] == "007"  # an id is text: leading zeros stay
    # the shard plan (what makes shards' row ranges stable across reruns) does not depend on the format
    assert make_plan(pf, 3, 2) == make_plan(reference, 3, 2)
    assert [r for i in range(4) for r in pf.read_range(i, i + 1)[0]] == pf.read_range(0, 4)[0]


def test_text_file_is_one_prompt_a_line(tmp_path: Path) -> None:
    path = tmp_path / "prompts.txt"
    path.write_bytes(b"\xef\xbb\xbfred star\r\n\r\n   \n  a small   blue circle\nbad \xff byte\nlast line no newline")
    pf = open_prompts(str(path))
    assert pf.format == "txt" and pf.columns == ["prompt"] and pf.num_rows == 4  # BOM dropped, blank lines skipped
    rows, rejected = pf.read_range(0, 4)
    assert [(r.id, r.prompt) for r in rows] == [("0", "red star"), ("1", "a small blue circle"),
                                                 ("3", "last line no newline")]
    assert [(r.id, r.reason) for r in rejected] == [("2", "column 'prompt' is not valid UTF-8")]
    # a text file's one column is the prompt column, whatever --prompt-column names it
    assert open_prompts(str(path), prompt_column="text").read_range(0, 1)[0][0].prompt == "red star"


def test_csv_details_quotes_newlines_bad_bytes(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_bytes(b'prompt,id,n,weight,flag\n"red, bold star",1,2,0.5,true\n"two\nlines",2,,1.5,false\n'
                     b'cr\xffab,3,1,2.0,true\n')
    rows, rejected = open_prompts(str(path)).read_range(0, 3)
    assert [(r.id, r.prompt, r.n) for r in rows] == [("1", "red, bold star", 2), ("2", "two lines", None)]
    assert rows[0].extra == {"weight": 0.5, "flag": True}  # extra columns keep their type
    assert [(r.id, r.reason) for r in rejected] == [("3", "column 'prompt' is not valid UTF-8")]


def test_jsonl_carries_nested_extras(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt": "red star", "id": 5, "tags": ["a", "b"], "meta": {"x": 1}}\n\n'
                    '{"prompt": null, "id": 6}\n', encoding="utf-8")
    rows, rejected = open_prompts(str(path)).read_range(0, 2)
    assert rows[0].id == "5" and rows[0].extra == {"tags": ["a", "b"], "meta": {"x": 1}}
    assert [(r.id, r.reason) for r in rejected] == [("6", "null prompt")]


def test_input_format_overrides_the_extension(tmp_path: Path) -> None:
    dat = write_rows(tmp_path / "prompts.dat", ROWS, "csv")
    with pytest.raises(UserError, match=r"not a readable Parquet file \(.*\); for CSV, TSV, JSON Lines or text pass "
                                        r"--input-format"):
        open_prompts(dat)  # an unknown extension reads as Parquet, as before
    assert summary(open_prompts(dat, input_format="csv")) == summary(open_prompts(write_rows(
        tmp_path / "p.parquet", ROWS, "parquet")))
    # a CSV read as TSV has one column named "prompt,id,n,seed,style": the error lists it and names the option
    with pytest.raises(UserError, match=r"no column 'prompt' \(columns found: prompt,id,n,seed,style\); name the "
                                        r"prompt column with --prompt-column"):
        open_prompts(dat, input_format="tsv")
    assert open_prompts(dat, input_format="txt").num_rows == 5  # the header line is a prompt too
    with pytest.raises(UserError, match="--input-format must be one of auto, parquet, csv, tsv, jsonl, txt, got 'xls'"):
        open_prompts(dat, input_format="xls")


def _bad(fmt: str, rows: list[dict]):  # type: ignore[no-untyped-def]
    return lambda d: write_rows(d / f"bad.{fmt}", rows, fmt)


@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl"])
@pytest.mark.parametrize(
    "rows, message",
    [
        ([{"text": "a", "id": "1"}], "no column 'prompt' (columns found: text, id); name the prompt column with "
                                     "--prompt-column"),
        ([{"prompt": "a", "n": "three"}], "column 'n' must be integer"),
        ([{"prompt": "a", "seed": 1.5}], "column 'seed' must be integer"),
        ([{"prompt": "a", "id": "x"}, {"prompt": "b", "id": "y"}, {"prompt": "c", "id": "x"}], "duplicate id 'x'"),
    ],
)
def test_same_rejections_for_every_text_format(tmp_path: Path, fmt: str, rows: list[dict], message: str) -> None:
    with pytest.raises(UserError) as info:
        open_prompts(_bad(fmt, rows)(tmp_path))
    assert message in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("e.csv", b"", "has no rows"),
        ("h.csv", b"prompt,id\n", "has no rows"),
        ("e.jsonl", b"", "has no rows"),
        ("e.txt", b"\n\n  \n", "has no rows"),
        ("r.csv", b"prompt,id\nred,1\nblue,2,3\n", "is not valid CSV: CSV parse error: Expected 2 columns, got 3"),
        ("j.jsonl", b'{"prompt": "red"}\nnot json\n', "is not valid JSON Lines: JSON parse error"),
        ("m.jsonl", b'{"prompt": "a", "id": 1}\n{"prompt": "b", "id": "x"}\n', "is not valid JSON Lines"),
        ("d.csv", b"prompt,prompt\nred,blue\n", "has repeated column names: prompt"),
        ("t.jsonl", b'{"prompt": 5}\n', "column 'prompt' must be string"),
        ("i.jsonl", b'{"prompt": "a", "id": "x"}\n{"prompt": "b", "id": null}\n', "null value"),
    ],
)
def test_malformed_text_files_are_one_line_errors(tmp_path: Path, name: str, content: bytes, message: str) -> None:
    (tmp_path / name).write_bytes(content)
    with pytest.raises(UserError) as info:
        open_prompts(str(tmp_path / name))
    assert message in str(info.value) and "\n" not in str(info.value)


def test_text_file_too_big_to_hold_points_to_parquet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import llmgan.io.prompt_formats as formats

    monkeypatch.setattr(formats, "MAX_TEXT_BYTES", 10)
    with pytest.raises(UserError, match="read whole .*convert it to Parquet"):
        open_prompts(write_rows(tmp_path / "p.csv", ROWS, "csv"))


def test_text_prompts_on_s3(s3_server: str, s3_url: str, tmp_path: Path) -> None:
    st = Storage(endpoint=s3_server)
    for fmt in ("csv", "jsonl", "txt"):
        url = join(s3_url, f"prompts.{fmt}")
        st.write_bytes(url, Path(write_rows(tmp_path / f"p.{fmt}", ROWS, fmt)).read_bytes())
        pf = open_prompts(url, storage=st)
        rows, rejected = pf.read_range(0, pf.num_rows)
        assert [r.prompt for r in rows][:2] == ["red star", "blue circle"]
        assert len(rejected) == (0 if fmt == "txt" else 2)  # the empty line of the text file is skipped


@pytest.mark.parametrize("fmt", ["csv", "txt"])
def test_local_job_from_a_text_prompts_file(tmp_path: Path, tiny_ckpt: str, fmt: str) -> None:
    """End to end with the local executor: the driver and the expander stage both read the text file."""
    import json

    from llmgan.job.config import GenerateConfig
    from llmgan.job.local_executor import LocalExecutor
    from llmgan.job.run import run_job

    prompts = write_rows(tmp_path / f"prompts.{fmt}", ROWS, fmt)
    out = tmp_path / "out"
    cfg = GenerateConfig(prompts=prompts, out=str(out), ckpt=tiny_ckpt, expand=False, n_per_prompt=2, shard_size=3,
                         batch_size=4, executor="local", consistency="none")
    result = run_job(cfg, LocalExecutor(), progress=False)
    # csv: a (n=2) + b (default 2); c empty and 007 n=0 rejected. txt: 3 prompts x 2 (the empty line skipped)
    assert result["images"] == 4 if fmt == "csv" else 6
    assert result["rejected_reasons"] == ({"empty prompt": 1, "invalid n=0 (must be 1..10000)": 1} if fmt == "csv"
                                          else {})
    job = json.loads((out / "_job.json").read_text())
    assert job["prompts"]["format"] == fmt and job["settings"]["prompt_column"] == "prompt"
    assert run_job(cfg, LocalExecutor(), progress=False)["images_this_run"] == 0  # resume: all committed


def test_local_job_honours_input_format_in_the_expander_stage(tmp_path: Path, tiny_ckpt: str) -> None:
    from llmgan.job.config import GenerateConfig
    from llmgan.job.local_executor import LocalExecutor
    from llmgan.job.run import run_job

    prompts = write_rows(tmp_path / "prompts.dat", ROWS, "csv")  # an extension that says nothing
    cfg = GenerateConfig(prompts=prompts, out=str(tmp_path / "out"), ckpt=tiny_ckpt, expand=False, executor="local",
                         consistency="none", input_format="csv", max_retries=0)
    assert run_job(cfg, LocalExecutor(), progress=False)["images"] == 3  # a (n=2) + b (n=1)
