"""Hashing helpers shared by verification and sources."""

from __future__ import annotations

import hashlib
from pathlib import Path

HASH_CHUNK = 8 * 1024 * 1024


def sha256_file(path: Path) -> tuple[str, int]:
    """The file's sha256 (hex) and size, read once in large chunks."""
    h = hashlib.sha256()
    size = 0
    with path.open("rb", buffering=0) as fh:
        buf = bytearray(HASH_CHUNK)
        view = memoryview(buf)
        while n := fh.readinto(buf):
            h.update(view[:n])
            size += n
    return h.hexdigest(), size


def git_blob_sha1(path: Path) -> str:
    """The git blob id of a file (how the Hub names small, non-LFS files)."""
    size = path.stat().st_size
    h = hashlib.sha1(b"blob %d\0" % size, usedforsecurity=False)
    with path.open("rb") as fh:
        while chunk := fh.read(HASH_CHUNK):
            h.update(chunk)
    return h.hexdigest()
