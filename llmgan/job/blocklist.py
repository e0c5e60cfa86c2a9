"""Content policy for generation: a blocklist of words, phrases and regular expressions (file or s3://).

File format (UTF-8, one entry per line): blank lines and lines starting with `#` are ignored; `re:PATTERN`
is a Python regular expression; any other line is a word or phrase matched as whole words. Matching is
case-insensitive. The job rejects a prompt, or an expanded caption, that matches any entry, with reason
`blocked`; no image is generated from it.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from llmgan.errors import StorageError, UserError
from llmgan.io.storage import Storage

BLOCKED = "blocked"
MAX_BLOCKLIST_BYTES = 10_000_000


@dataclass(frozen=True)
class Blocklist:
    url: str
    sha256: str
    entries: int
    pattern: re.Pattern[str] | None

    def blocks(self, text: str) -> bool:
        return self.pattern is not None and self.pattern.search(text) is not None


def _word_pattern(entry: str) -> str:
    # whole words: a phrase's words separated by any whitespace; \b only next to word characters
    body = r"\s+".join(re.escape(w) for w in entry.split())
    left = r"\b" if re.match(r"\w", entry) else ""
    right = r"\b" if re.search(r"\w$", entry) else ""
    return f"{left}{body}{right}"


def parse_blocklist(text: str, url: str = "<blocklist>") -> Blocklist:
    """Compile a blocklist's text into one case-insensitive pattern; UserError names a bad line."""
    parts: list[str] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("re:"):
            expr = line[3:].strip()
            try:
                re.compile(expr)
            except re.error as exc:
                raise UserError(f"blocklist {url} line {lineno}: invalid regular expression ({exc})") from None
            if not expr:
                raise UserError(f"blocklist {url} line {lineno}: empty regular expression")
            parts.append(f"(?:{expr})")
        else:
            parts.append(_word_pattern(line))
    pattern = re.compile("|".join(parts), re.IGNORECASE) if parts else None
    return Blocklist(url, hashlib.sha256(text.encode("utf-8")).hexdigest(), len(parts), pattern)


def load_blocklist(url: str, storage: Storage | None = None) -> Blocklist:
    """Read and compile the blocklist at `url` (local path or s3://)."""
    storage = storage or Storage()
    try:
        data = storage.read_bytes(url)
    except StorageError as exc:
        if str(exc).startswith("not found") or str(exc).startswith("is a directory"):
            raise UserError(f"blocklist {exc}") from None
        raise
    if len(data) > MAX_BLOCKLIST_BYTES:
        raise UserError(f"blocklist {url} is larger than {MAX_BLOCKLIST_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise UserError(f"blocklist {url} is not UTF-8 text") from None
    return parse_blocklist(text, url)
