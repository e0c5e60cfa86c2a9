"""Frozen prompt sets that measure what the system understands: `load` reads one and refuses a changed file.

Each set is a JSON-lines file next to this module, pinned by its sha256 in `FROZEN`. A set is never edited in
place: a changed set is a new set under a new name with its own pin. Only rows with split == "tune" may be used
to calibrate or tune anything; "holdout" rows are only reported (README.md).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

DIR = Path(__file__).parent
FROZEN: dict[str, str] = {"openvocab-v1": "887ab7980045c9b278a73425f56981d87d15101d89e0df451b3a2da73a7aa95f"}
SPLITS = ("tune", "holdout")


def path(name: str) -> Path:
    """Where set `name` lives."""
    return DIR / f"{name}.jsonl"


def load(name: str = "openvocab-v1", split: str | None = None) -> list[dict[str, Any]]:
    """The rows of frozen set `name` (all, or one split), after checking the file against its pinned sha256."""
    if name not in FROZEN:
        raise ValueError(f"unknown prompt set {name!r}; frozen sets: {', '.join(sorted(FROZEN))}")
    if split is not None and split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)} or None, got {split!r}")
    data = path(name).read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != FROZEN[name]:
        raise ValueError(
            f"prompt set {name!r} ({path(name)}) has sha256 {digest}, not the frozen {FROZEN[name]}: the set is "
            "frozen and must not change; rebuild it byte for byte with `python -m benchmarks.prompt_sets."
            "build_openvocab`, or publish a changed set under a new name with its own pin")
    rows = [json.loads(line) for line in data.decode("utf-8").splitlines()]
    return [r for r in rows if split is None or r["split"] == split]
