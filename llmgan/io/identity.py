"""Content identity of a model directory or hub id: what `_job.json` records and reruns compare."""

from __future__ import annotations

import hashlib
from pathlib import Path

from llmgan.io.storage import Storage, is_s3, join

# A training run's resumable state beside the model it exports (`llmgan train-lm` keeps it in its --out):
# not part of the model, so neither its identity nor a copy of the model includes it.
TRAINING_STATE_DIR = "checkpoints"


def is_model_file(relative_name: str) -> bool:
    return relative_name.split("/", 1)[0] != TRAINING_STATE_DIR


def content_identity(path_or_id: str, storage: Storage | None = None) -> str:
    """Short sha256 over every model file's name and bytes (is_model_file) for a local dir/file or s3:// prefix;
    else the id itself.

    Hub ids (no such local path) are recorded as given: their content is pinned by the hub revision.
    """
    storage = storage or Storage()
    if is_s3(path_or_id):
        names = [n for n in storage.list(path_or_id) if is_model_file(n)]
        urls = [join(path_or_id, n) for n in names]
    else:
        p = Path(path_or_id)
        if p.is_file():
            names, urls = [p.name], [str(p)]
        elif p.is_dir():
            names = sorted(n for f in p.rglob("*") if f.is_file() and is_model_file(n := f.relative_to(p).as_posix()))
            urls = [str(p / n) for n in names]
        else:
            return f"id:{path_or_id}"
    h = hashlib.sha256()
    for name, url in zip(names, urls):
        h.update(name.encode() + b"\0" + hashlib.sha256(storage.read_bytes(url)).digest())
    return f"sha256:{h.hexdigest()[:16]}"
