"""(short prompt -> caption) pairs for `llmgan train-lm` from any captioned dataset (`llmgan data prompt-pairs --from`).

Each pair takes one row's own caption and a short prompt a user might type for it, drawn from the row's own words:

- rows with a `name` column (the emoji dataset: "doughnut"): the name alone, "a doughnut", "doughnut emoji",
  "doughnut icon", "doughnut sprite", and, when the row has a `style`, half the time the style too ("doughnut,
  google style", "doughnut emoji, google style", "doughnut in google style", "google style doughnut", "doughnut icon,
  google style"); now and then the row's own `short_prompt`;
- any other row: its `short_prompt` when it has one, the caption's first clause ("a mossy stone tile" of "a mossy
  stone tile, top view, soft light"), or a few of the caption's content words in their order ("mossy tile").

Rows are used in turn (a seeded order), so every row gets about n / rows pairs; pair i's prompt comes from its own
random stream (seed, i): the same seed gives the same table. `split` keeps the rows of one split (the dataset's
`split` column), so the held-out rows of a dataset stay out of the LM's training data.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from llmgan.data.config import SPLITS
from llmgan.errors import StorageError, UserError
from llmgan.io.storage import Storage, is_s3

CAPTION_COLUMNS = ("caption", "text")  # the first present is the caption (`text` is what Hugging Face uses)
CARRY = ("name", "style", "label", "split")  # columns copied to each pair when the dataset has them
OWN_PROMPT = 0.2  # chance a name row's pair uses the row's own short_prompt
# chance a name row's prompt states its style: more often than the dataset's own short prompts (half), as the shapes
# pairs state size and position more often than users do: more signal for copying it
STYLE_SHARE = 0.7
MAX_WORDS = 4  # most content words in a generic prompt
NAME_FORMS = ("{name}", "{article} {name}", "{name} emoji", "{name} icon", "{name} sprite")
STYLE_FORMS = ("{name}, {style} style", "{name} emoji, {style} style", "{name} in {style} style",
               "{style} style {name}", "{name} icon, {style} style")
_WORD = re.compile(r"[^\W_]+(?:['’-][^\W_]+)*")
_CLAUSE = re.compile(r"\s*(?:[,;:.!?]|\s-\s|\s–\s)\s*")


@functools.lru_cache(maxsize=1)
def _stop_words() -> frozenset[str]:
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return frozenset(ENGLISH_STOP_WORDS)


def _text(value: Any) -> str:
    return " ".join(str(value).split()) if value is not None else ""


def read_captioned(url: str, storage: Storage | None = None) -> pa.Table:
    """The text columns of a captioned Parquet file (local or s3://), never its images: the caption (`caption`, else
    `text`, renamed `caption`) and whichever of short_prompt, name, style, label, split it has."""
    storage = storage or Storage()
    if not is_s3(url) and not Path(url).is_file():
        raise UserError(f"--from {url}: " + ("a directory; give a Parquet file" if Path(url).is_dir() else "no such file"))
    try:
        with storage.open_input(url) as f:
            names = pq.read_schema(f).names
            caption = next((c for c in CAPTION_COLUMNS if c in names), None)
            if caption is None:
                raise UserError(f"--from {url}: no caption column ({' or '.join(CAPTION_COLUMNS)}); has "
                                f"{', '.join(names) or 'no columns'}")
            wanted = [caption, *(c for c in ("short_prompt", *CARRY) if c in names)]
            f.seek(0)
            table = pq.read_table(f, columns=wanted)
    except (UserError, StorageError):
        raise
    except Exception as exc:  # noqa: BLE001 - not Parquet / unreadable is a user problem here
        raise UserError(f"--from {url}: not a readable Parquet file ({type(exc).__name__})") from None
    return table.rename_columns(["caption", *table.column_names[1:]])


def _article(name: str) -> str:
    return "an" if name[:1].lower() in "aeiou" else "a"


def _generic_prompt(caption: str, rng: np.random.Generator) -> str:
    """The caption's first clause, or 1..MAX_WORDS of its content words in their order (half each; the clause when
    the caption has no content word)."""
    if rng.random() < 0.5:
        words = [w for w in _WORD.findall(caption) if w.lower() not in _stop_words() and (len(w) > 1 or w.isdigit())]
        if words:
            k = int(rng.integers(1, min(MAX_WORDS, len(words)) + 1))
            keep = np.sort(rng.choice(len(words), size=k, replace=False))
            return " ".join(words[int(j)] for j in keep)
    return _CLAUSE.split(caption, maxsplit=1)[0].strip() or caption


def draw_prompt(row: Mapping[str, Any], rng: np.random.Generator) -> str:
    """One short prompt for a row (`caption` and optionally short_prompt, name, style), from the row's own words."""
    caption, own = _text(row.get("caption")), _text(row.get("short_prompt"))
    name, style = _text(row.get("name")), _text(row.get("style"))
    if name:
        if own and rng.random() < OWN_PROMPT:
            return own
        forms = STYLE_FORMS if style and rng.random() < STYLE_SHARE else NAME_FORMS
        form = forms[int(rng.integers(len(forms)))]
        return form.format(name=name, style=style, article=_article(name))
    if own and rng.random() < 0.3:
        return own
    return _generic_prompt(caption, rng)


def prompt_pairs_from(table: pa.Table, n: int, seed: int = 0, split: str = "all", source: str = "--from") -> pa.Table:
    """`n` pairs (short_prompt, caption and the CARRY columns the table has) from the rows of `split` of a table as
    `read_captioned` returns it; rows without a caption are skipped."""
    if n < 1:
        raise UserError(f"--n must be at least 1, got {n}")
    if seed < 0:
        raise UserError(f"--seed must be non-negative, got {seed}")
    if split not in SPLITS:
        raise UserError(f"--split must be one of {', '.join(SPLITS)}, got {split!r}")
    if "caption" not in table.column_names:
        raise UserError(f"{source}: no caption column ({' or '.join(CAPTION_COLUMNS)}); has "
                        f"{', '.join(table.column_names) or 'no columns'}")
    if split != "all" and "split" not in table.column_names:
        raise UserError(f"--split {split}: {source} has no split column; use --split all")
    rows = [r for r in table.to_pylist() if _text(r.get("caption")) and (split == "all" or r.get("split") == split)]
    if not rows:
        raise UserError(f"{source}: no captioned rows" + (f" in split {split!r}" if split != "all" else ""))
    order = np.random.default_rng([seed, 0x9A1, len(rows)]).permutation(len(rows))
    carry = [c for c in CARRY if c in table.column_names]
    cols: dict[str, list[str | None]] = {c: [] for c in ("short_prompt", "caption", *carry)}
    for i in range(n):
        row = rows[int(order[i % len(rows)])]
        cols["short_prompt"].append(draw_prompt(row, np.random.default_rng([seed, 0x9A2, i])))
        cols["caption"].append(_text(row["caption"]))
        for c in carry:
            cols[c].append(None if row.get(c) is None else str(row[c]))
    out = pa.table({c: pa.array(v, pa.string()) for c, v in cols.items()})
    return out.replace_schema_metadata({"llmgan.dataset": "prompt-pairs", "llmgan.source": source,
                                        "llmgan.split": split, "llmgan.seed": str(seed), "llmgan.rows": str(len(rows))})
