"""Prompts reader: the contract in DESIGN.md, bad input as one-line UserErrors, bounded-memory reads, S3."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from llmgan.errors import UserError
from llmgan.io.prompts import open_prompts
from llmgan.io.storage import Storage, join


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
        (lambda d: write(d / "c.parquet", pa.table({"text": ["a"], "id": ["1"]})), "no column 'prompt'; columns: text, id"),
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
    real = pf._file.read_row_group
    pf._file.read_row_group = lambda i, *a, **k: (read_groups.append(i), real(i, *a, **k))[1]
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
