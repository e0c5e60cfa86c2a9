"""The one seed scheme of the project: every random stream's seed is a hash of named parts.

`derive_seed(*parts)` = the low 63 bits of BLAKE2b-64 over the parts' `str()` joined by U+001F, shifted right
by one. It is stable across processes, platforms and Python's per-process string hashing, so a job seed, a
prompt id and a variant always give the same image. Parts are ints or strings; a tag string first
("image", "caption", ...) keeps unrelated streams apart.
"""

from __future__ import annotations

import hashlib


def derive_seed(*parts: object) -> int:
    """A non-negative 63-bit seed from any number of int / str parts."""
    data = "\x1f".join(str(p) for p in parts).encode("utf-8", "surrogatepass")
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little") >> 1
