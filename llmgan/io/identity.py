"""Content identity of a model directory or hub id: what `_job.json` records and reruns compare."""

from __future__ import annotations

import hashlib
from pathlib import Path

from llmgan.io.storage import Storage, is_s3, join


def content_identity(path_or_id: str, storage: Storage | None = None) -> str:
    """Short sha256 over every file's name and bytes for a local dir/file or s3:// prefix; else the id itself.

    Hub ids (no such local path) are recorded as given: their content is pinned by the hub revision.
    """
    storage = storage or Storage()
    if is_s3(path_or_id):
        names = storage.list(path_or_id)
        urls = [join(path_or_id, n) for n in names]
    else:
        p = Path(path_or_id)
        if p.is_file():
            names, urls = [p.name], [str(p)]
        elif p.is_dir():
            names = sorted(f.relative_to(p).as_posix() for f in p.rglob("*") if f.is_file())
            urls = [str(p / n) for n in names]
        else:
            return f"id:{path_or_id}"
    h = hashlib.sha256()
    for name, url in zip(names, urls):
        h.update(name.encode() + b"\0" + hashlib.sha256(storage.read_bytes(url)).digest())
    return f"sha256:{h.hexdigest()[:16]}"
