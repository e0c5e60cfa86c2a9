"""Prompt-file formats: which format a file is in (its extension, or `--input-format`), and parsing the text
formats (CSV, TSV, JSON Lines, plain text with one prompt a line) into one Arrow table.

Parquet is read in row groups by llmgan.io.prompts; the text formats have no row index to seek to, so they are
parsed once, whole, per reader (the driver and each expander actor) and sliced from memory. MAX_TEXT_BYTES keeps
that bounded: a bigger list of prompts belongs in Parquet.
"""

from __future__ import annotations

from typing import Any

from llmgan.errors import UserError

INPUT_FORMATS = ("auto", "parquet", "csv", "tsv", "jsonl", "txt")
TEXT_FORMATS = ("csv", "tsv", "jsonl", "txt")
EXTENSIONS = {
    ".parquet": "parquet", ".pq": "parquet",
    ".csv": "csv",
    ".tsv": "tsv", ".tab": "tsv",
    ".jsonl": "jsonl", ".ndjson": "jsonl",
    ".txt": "txt",
}
MAX_TEXT_BYTES = 1 << 30  # 1 GiB of text is ~10M prompts held in memory per reader; beyond that, use Parquet
_NAMES = {"parquet": "Parquet", "csv": "CSV", "tsv": "TSV", "jsonl": "JSON Lines", "txt": "text"}


def format_name(fmt: str) -> str:
    """How a format is named in messages ("JSON Lines")."""
    return _NAMES[fmt]


def resolve_format(url: str, input_format: str = "auto") -> str:
    """The format to read `url` as: `input_format` unless "auto", else the file's extension. An unknown
    extension reads as Parquet (what every prompts file was before text formats existed)."""
    if input_format not in INPUT_FORMATS:
        raise UserError(f"--input-format must be one of {', '.join(INPUT_FORMATS)}, got {input_format!r}")
    if input_format != "auto":
        return input_format
    name = url.rstrip("/").rsplit("/", 1)[-1].lower()
    dot = name.rfind(".")
    return EXTENSIONS.get(name[dot:], "parquet") if dot > 0 else "parquet"


def read_text_table(source: Any, fmt: str, prompt_column: str, url: str) -> Any:
    """Parse a whole text prompts file (a pyarrow input file) into a pyarrow Table; one-line UserError if it
    cannot be parsed. The prompt and id columns of CSV/TSV stay strings (an id "007" is not the number 7)."""
    size = source.size()
    if size > MAX_TEXT_BYTES:
        raise UserError(f"prompts file {url} is {size / 2**30:.1f} GiB of {format_name(fmt)}; text prompt files are "
                        f"read whole (at most {MAX_TEXT_BYTES >> 30} GiB): convert it to Parquet")
    data = source.read()
    try:
        if fmt == "txt":
            return _read_lines(data, prompt_column)
        if fmt == "jsonl":
            return _read_jsonl(data)
        return _read_delimited(data, "\t" if fmt == "tsv" else ",", prompt_column)
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - pyarrow raises ArrowInvalid and friends for malformed text
        detail = " ".join(str(exc).split())[:200] or type(exc).__name__
        if "Empty" in detail and "file" in detail:
            raise UserError(f"prompts file {url} has no rows") from None
        raise UserError(f"prompts file {url} is not valid {format_name(fmt)}: {detail}") from None


def _read_delimited(data: bytes, delimiter: str, prompt_column: str) -> Any:
    import pyarrow as pa
    import pyarrow.csv as pcsv

    return pcsv.read_csv(
        pa.BufferReader(data),
        # quoted fields may hold the delimiter and line breaks (what spreadsheets and pandas write)
        parse_options=pcsv.ParseOptions(delimiter=delimiter, newlines_in_values=True),
        # bytes that are not UTF-8 are rejected per row by the prompts reader, as in Parquet, not for the file
        convert_options=pcsv.ConvertOptions(column_types={prompt_column: pa.string(), "id": pa.string()},
                                            check_utf8=False),
    )


def _read_jsonl(data: bytes) -> Any:
    import pyarrow as pa
    import pyarrow.json as pjson

    # one block for the whole file: column types are inferred over every line, not only the first block's
    return pjson.read_json(pa.BufferReader(data), read_options=pjson.ReadOptions(block_size=max(len(data), 1 << 20)))


def _read_lines(data: bytes, prompt_column: str) -> Any:
    """One prompt a line; blank lines are skipped (as CSV skips them). Lines that are not UTF-8 stay bytes in a
    string column, so the prompts reader rejects those rows one by one."""
    import pyarrow as pa

    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    lines = [line.rstrip(b"\r") for line in data.split(b"\n")]
    lines = [line for line in lines if line.strip()]
    # a binary array viewed as string is not UTF-8-checked (a cast would be, and would fail the whole file)
    return pa.table({prompt_column: pa.array(lines, pa.binary()).view(pa.string())})
