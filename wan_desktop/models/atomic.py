"""The one way to replace a file: a reader sees the old file or the new one, never half of either.

Write a temporary file in the same folder (a hidden, uniquely named ``.wan-tmp-*`` file, so two
writers never share one and a file left by a kill is never mistaken for data), flush and fsync
it, rename it over the target, then fsync the folder so the rename survives a power cut.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

TMP_PREFIX = ".wan-tmp-"


def temp_path_for(dest: Path) -> Path:
    """A fresh temporary name beside ``dest`` (same folder, so the rename is atomic), ending in
    ``dest``'s suffix for writers that choose a format by it (ffmpeg)."""
    return dest.with_name(
        f"{TMP_PREFIX}{dest.stem}.{os.getpid()}.{uuid.uuid4().hex[:8]}{dest.suffix}"
    )


@contextlib.contextmanager
def atomic_path(dest: Path, *, durable: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; whatever the block writes there replaces ``dest``
    when it succeeds, and is removed when it raises. For writers that need a path (ffmpeg, PIL)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path_for(dest)
    try:
        yield tmp
        if durable:
            _fsync(tmp)
        tmp.replace(dest)
        if durable:
            fsync_dir(dest.parent)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write(
    dest: Path, data: bytes | str, *, mode: int | None = None, durable: bool = True
) -> None:
    """Replace ``dest`` with ``data`` (text is UTF-8). ``mode``: the new file's permissions,
    set before any byte is written (an owner-only token is never readable by others)."""
    with atomic_path(dest, durable=False) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666 if mode is None else mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.encode("utf-8") if isinstance(data, str) else data)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        if mode is not None:
            tmp.chmod(mode)  # the umask may have taken bits away
    if durable:
        fsync_dir(dest.parent)


def atomic_write_json(dest: Path, data: Any, *, durable: bool = True, indent: int = 1) -> None:
    atomic_write(dest, json.dumps(data, indent=indent, sort_keys=True), durable=durable)


def fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable (where the platform allows fsync of a folder)."""
    _fsync(path)


def _fsync(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
