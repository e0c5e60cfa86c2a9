"""The prompts-file contract: validate a prompts file (Parquet, CSV, TSV, JSON Lines or text) and read it in
row ranges (Parquet: bounded memory, a row group at a time; text formats: parsed once, llmgan.io.prompt_formats).

Contract (docs/generation.md, "Prompts file"), the same for every format: required string column `prompt` (name
overridable); optional unique `id` (default: the row number), integer `n` (images for this prompt) and `seed`;
every other column is carried into each image's metadata. File-level problems raise UserError before anything is written; row-level problems (null, empty or
whitespace-only prompt, invalid n) are returned per row so the job can record them and go on.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from llmgan.errors import StorageError, UserError
from llmgan.io.prompt_formats import read_text_table, resolve_format
from llmgan.io.storage import Storage

MAX_N_PER_PROMPT = 10_000
MAX_PROMPT_CHARS = 2_000
MAX_ID_CHARS = 200
MAX_EXTRA_BYTES = 65_536  # extra columns are copied into every image's metadata: keep that bounded


@dataclass
class PromptRow:
    """One valid prompt row."""

    row: int
    id: str
    prompt: str
    n: int | None  # None: use the job's --n-per-prompt
    seed: int | None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class RejectedRow:
    row: int
    id: str
    reason: str


def _is_string(t: Any) -> bool:
    import pyarrow as pa

    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)


def _is_int(t: Any) -> bool:
    import pyarrow as pa

    return pa.types.is_integer(t)


# Unicode category Cc (C0 and C1 controls: NUL, ESC, ...) except tab/newline/CR, which are normalised as spaces
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def _has_control(text: str) -> bool:
    return _CONTROL.search(text) is not None


def _records(table: Any) -> tuple[list[dict], dict[int, str]]:
    """Rows as dicts; string cells that are not valid UTF-8 become None, with the offending row noted.

    Parquet does not validate string bytes, so a hostile file can hold any bytes in a string column.
    """
    import pyarrow as pa

    try:
        return table.to_pylist(), {}
    except UnicodeDecodeError:
        pass
    bad: dict[int, str] = {}
    columns: dict[str, list] = {}
    for name in table.column_names:
        col = table.column(name)
        if _is_string(col.type):
            values = []
            for i, raw in enumerate(col.cast(pa.binary()).to_pylist()):
                try:
                    values.append(None if raw is None else raw.decode("utf-8"))
                except UnicodeDecodeError:
                    values.append(None)
                    bad.setdefault(i, f"column {name!r} is not valid UTF-8")
            columns[name] = values
        else:
            columns[name] = col.to_pylist()
    return [dict(zip(columns, vals)) for vals in zip(*columns.values())], bad


def _id_hash(value: str) -> int:
    return int.from_bytes(hashlib.blake2b(value.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little")


class _ParquetRows:
    """Rows of a Parquet file, read a row group at a time (bounded memory however big the file)."""

    def __init__(self, source: Any) -> None:
        import pyarrow.parquet as pq

        self._file = pq.ParquetFile(source)
        self.schema = self._file.schema_arrow
        self.num_rows: int = self._file.metadata.num_rows
        self._starts = np.cumsum([0] + [self._file.metadata.row_group(i).num_rows
                                        for i in range(self._file.num_row_groups)])

    def iter_column(self, name: str, batch_size: int) -> Iterator[Any]:
        for batch in self._file.iter_batches(batch_size=batch_size, columns=[name]):
            yield batch.column(0)

    def slices(self, start: int, stop: int) -> Iterator[tuple[int, Any]]:
        """(first row, table) pieces covering rows [start, stop); only the row groups that overlap are read."""
        rg = int(np.searchsorted(self._starts, start, side="right") - 1)
        while rg < self._file.num_row_groups and self._starts[rg] < stop:
            base = int(self._starts[rg])
            table = self._file.read_row_group(rg)
            lo, hi = max(start - base, 0), min(stop - base, table.num_rows)
            if hi > lo:
                yield base + lo, table.slice(lo, hi - lo)
            rg += 1


class _TableRows:
    """Rows of a text prompts file, parsed whole into memory once (llmgan.io.prompt_formats)."""

    def __init__(self, table: Any) -> None:
        self._table = table
        self.schema = table.schema
        self.num_rows: int = table.num_rows

    def iter_column(self, name: str, batch_size: int) -> Iterator[Any]:
        column = self._table.column(name)
        for start in range(0, self.num_rows, batch_size):
            yield column.slice(start, batch_size).combine_chunks()

    def slices(self, start: int, stop: int) -> Iterator[tuple[int, Any]]:
        yield start, self._table.slice(start, stop - start)


class PromptsFile:
    """A validated prompts file (local or s3://): Parquet, CSV, TSV, JSON Lines or plain text, by extension
    or `input_format`. Opening it checks the schema, not the rows; every format gets the same checks."""

    def __init__(self, url: str, storage: Storage | None = None, prompt_column: str = "prompt",
                 input_format: str = "auto") -> None:
        self.url = url
        self.storage = storage or Storage()
        self.prompt_column = prompt_column
        self.format = resolve_format(url, input_format)
        self._where = f"{url} (endpoint {self.storage._where()})" if url.startswith("s3://") else url
        try:
            source = self.storage.open_input(url)
        except StorageError as exc:
            msg = str(exc)
            if msg.startswith("not found"):
                raise UserError(f"prompts file not found: {url}") from None
            if msg.startswith("is a directory"):
                raise UserError(f"prompts file {url} is a directory, not a file") from None
            raise
        self._rows: _ParquetRows | _TableRows
        if self.format == "parquet":
            try:
                self._rows = _ParquetRows(source)
            except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for non-Parquet bytes
                raise UserError(f"prompts file {url} is not a readable Parquet file ({type(exc).__name__}); for "
                                f"CSV, TSV, JSON Lines or text pass --input-format") from None
        else:
            try:
                table = read_text_table(source, self.format, prompt_column, url)
            except OSError as exc:
                raise self._io_error(exc) from None
            self._rows = _TableRows(table)
        schema = self._rows.schema
        self.columns: list[str] = list(schema.names)
        repeated = sorted({c for c in self.columns if self.columns.count(c) > 1})
        if repeated:
            raise UserError(f"prompts file {url} has repeated column names: {', '.join(repeated)}")
        if prompt_column not in self.columns:
            found = ", ".join(self.columns[:20]) + (f", ... ({len(self.columns)} in all)" if len(self.columns) > 20
                                                     else "") if self.columns else "(none)"
            raise UserError(f"prompts file {url} has no column {prompt_column!r} (columns found: {found}); "
                            f"name the prompt column with --prompt-column")
        checks = [(prompt_column, _is_string, "string")]
        checks += [("id", lambda t: _is_string(t) or _is_int(t), "string or integer")]
        checks += [("n", _is_int, "integer"), ("seed", _is_int, "integer")]
        for name, ok, wanted in checks:
            if name in self.columns and not ok(schema.field(name).type):
                raise UserError(
                    f"prompts file column {name!r} must be {wanted}, found {schema.field(name).type}"
                )
        self.extra_columns = [c for c in self.columns if c not in (prompt_column, "id", "n", "seed")]
        self.num_rows: int = self._rows.num_rows

    def _io_error(self, exc: Exception) -> Exception:
        """One line naming where: pyarrow's S3 client failed after its retries, or the file's bytes are damaged."""
        detail = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        if isinstance(exc, OSError) and self.url.startswith("s3://"):
            return StorageError(f"reading prompts file {self._where} failed: {detail}")
        return UserError(f"prompts file {self.url} is damaged or unreadable: {detail}")

    def iter_column(self, name: str, batch_size: int = 65_536) -> Iterator[Any]:
        """Stream one column as pyarrow arrays (reads only that column)."""
        try:
            yield from self._rows.iter_column(name, batch_size)
        except (OSError, pa.ArrowException) as exc:
            raise self._io_error(exc) from None

    def check_ids(self) -> None:
        """Fail with one line if ids are null or repeat. Memory: 8 bytes per row (hashes), not the ids."""
        if "id" not in self.columns:
            return
        try:
            self._check_ids()
        except UnicodeDecodeError:
            raise UserError("prompts file column 'id' holds bytes that are not valid UTF-8") from None

    def _check_ids(self) -> None:
        hashes = np.empty(self.num_rows, dtype=np.uint64)
        pos = 0
        for arr in self.iter_column("id"):
            if arr.null_count:
                raise UserError(f"prompts file column 'id' has {arr.null_count} null value(s); ids must be set")
            for v in arr.to_pylist():
                hashes[pos] = _id_hash(str(v))
                pos += 1
        order = np.sort(hashes)
        dup = np.flatnonzero(order[1:] == order[:-1])
        if dup.size:
            # confirm with the real values (a 64-bit hash collision is not a duplicate)
            suspects = set(order[dup].tolist())
            seen: dict[str, int] = {}
            for arr in self.iter_column("id"):
                for v in arr.to_pylist():
                    s = str(v)
                    if _id_hash(s) in suspects:
                        seen[s] = seen.get(s, 0) + 1
                        if seen[s] > 1:
                            raise UserError(f"prompts file has duplicate id {s[:80]!r}; ids must be unique")

    def image_counts(self, default_n: int, batch_size: int = 65_536) -> Iterator[np.ndarray]:
        """Per-row image counts in row order (invalid or missing n -> its default/0), streamed in batches."""
        if "n" not in self.columns:
            remaining = self.num_rows
            while remaining > 0:
                k = min(batch_size, remaining)
                yield np.full(k, default_n, dtype=np.int64)
                remaining -= k
            return
        for arr in self.iter_column("n", batch_size):
            vals = arr.to_numpy(zero_copy_only=False)
            counts = np.where(np.isnan(vals.astype(float)), default_n, vals).astype(np.int64)
            counts[(counts < 1) | (counts > MAX_N_PER_PROMPT)] = 0  # rejected rows produce no image
            yield counts

    def prompt_present(self, batch_size: int = 65_536) -> Iterator[np.ndarray]:
        """Per-row booleans in row order: False where the prompt is null or empty (no image will come of it)."""
        import pyarrow as pa
        import pyarrow.compute as pc

        for arr in self.iter_column(self.prompt_column, batch_size):
            lengths = pc.binary_length(arr.cast(pa.binary()))
            yield pc.fill_null(pc.greater(lengths, 0), False).to_numpy(zero_copy_only=False)

    def read_range(self, start: int, stop: int) -> tuple[list[PromptRow], list[RejectedRow]]:
        """Rows [start, stop), validated. Parquet: reads only the row groups that overlap the range."""
        if not 0 <= start <= stop <= self.num_rows:
            raise ValueError(f"row range [{start}, {stop}) outside 0..{self.num_rows}")
        rows: list[PromptRow] = []
        rejected: list[RejectedRow] = []
        if start == stop:
            return rows, rejected
        try:
            for first_row, table in self._rows.slices(start, stop):
                records, bad = _records(table)
                self._validate(records, first_row, rows, rejected, bad)
        except (OSError, pa.ArrowException) as exc:
            raise self._io_error(exc) from None
        return rows, rejected

    def _validate(self, records: list[dict], first_row: int, rows: list[PromptRow], rejected: list[RejectedRow],
                  bad: dict[int, str]) -> None:
        for offset, rec in enumerate(records):
            row = first_row + offset
            pid = str(rec["id"]) if rec.get("id") is not None else str(row)
            prompt = rec.get(self.prompt_column)
            n = rec.get("n")
            reason = bad.get(offset)
            extra = {c: rec[c] for c in self.extra_columns}
            if reason:
                pass
            elif prompt is None:
                reason = "null prompt"
            elif not prompt.strip():
                reason = "empty prompt"
            elif len(prompt) > MAX_PROMPT_CHARS:
                reason = f"prompt longer than {MAX_PROMPT_CHARS} characters"
            elif n is not None and not 1 <= n <= MAX_N_PER_PROMPT:
                reason = f"invalid n={n} (must be 1..{MAX_N_PER_PROMPT})"
            elif _has_control(prompt):
                reason = "control characters in prompt"
            elif len(pid) > MAX_ID_CHARS:
                reason = f"id longer than {MAX_ID_CHARS} characters"
            elif extra and len(json.dumps(extra, ensure_ascii=False, default=str)) > MAX_EXTRA_BYTES:
                reason = f"extra columns larger than {MAX_EXTRA_BYTES} bytes"
            if reason:
                rejected.append(RejectedRow(row=row, id=pid[:MAX_ID_CHARS], reason=reason))
                continue
            rows.append(PromptRow(row=row, id=pid, prompt=" ".join(prompt.split()), n=n, seed=rec.get("seed"), extra=extra))

    def iter_ranges(self, batch_rows: int) -> Iterator[tuple[list[PromptRow], list[RejectedRow]]]:
        """The whole file in consecutive validated batches of `batch_rows` rows."""
        for start in range(0, self.num_rows, batch_rows):
            yield self.read_range(start, min(start + batch_rows, self.num_rows))


def open_prompts(url: str, storage: Storage | None = None, prompt_column: str = "prompt",
                 input_format: str = "auto") -> PromptsFile:
    """Open and fully validate a prompts file (schema, then ids); raises UserError with one line."""
    pf = PromptsFile(url, storage=storage, prompt_column=prompt_column, input_format=input_format)
    if pf.num_rows == 0:
        raise UserError(f"prompts file {url} has no rows")
    pf.check_ids()
    return pf
