"""The cache folder: fetched packages and text-embedding tables live here, never in a user's data folder or
bucket. `--cache-dir` wins, then $LLMGAN_CACHE_DIR, then $XDG_CACHE_HOME/llmgan, then ~/.cache/llmgan."""

from __future__ import annotations

import os
from pathlib import Path

from llmgan.errors import UserError

ENV = "LLMGAN_CACHE_DIR"


def cache_dir(override: str | os.PathLike[str] | None = None, *parts: str) -> Path:
    """The cache folder (or `parts` below it), created if missing; a path that is a file is a UserError."""
    base = override or os.environ.get(ENV)
    if not base:
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = Path(xdg) / "llmgan" if xdg else Path.home() / ".cache" / "llmgan"
    path = Path(base).expanduser().joinpath(*parts)
    if path.exists() and not path.is_dir():
        raise UserError(f"cache folder {path} is a file; choose another with --cache-dir or ${ENV}")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create the cache folder {path}: {exc.strerror}; choose another with --cache-dir "
                        f"or ${ENV}") from None
    return path
