"""A file on its way into the staging folder: ``.wan-partial.<name>`` and, for a file fetched in
ranged parts, the ``.wan-partial.<name>.json`` record of how far each part has got.

The record is written after the bytes, so it never claims more than the file holds: a killed
process, or another one later, resumes every part where the record says.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PARTIAL_PREFIX = ".wan-partial."
STATE_SUFFIX = ".json"
STATE_FORMAT = 1
# How often the per-part record is rewritten while bytes flow. Lower loses less on a kill.
STATE_SAVE_INTERVAL_S = 0.2
# The last parts_per_file × part_size bytes of a file travel in parts this many times smaller.
TAIL_SPLIT = 8
MIN_PART_BYTES = 1 << 20


def partial_path(dest: Path) -> Path:
    return dest.with_name(PARTIAL_PREFIX + dest.name)


def state_path(dest: Path) -> Path:
    return dest.with_name(PARTIAL_PREFIX + dest.name + STATE_SUFFIX)


def staged_bytes(dest: Path) -> int:
    """Bytes of ``dest`` already downloaded, whichever way it is being fetched."""
    state = _read_state(state_path(dest))
    if state is not None:
        return sum(int(p[2]) for p in state.get("parts", []))
    for path in (dest, partial_path(dest)):  # finished, or a streamed prefix
        with contextlib.suppress(OSError):
            return path.stat().st_size
    return 0


def staged_part_bytes(folder: Path) -> int:
    """Bytes in the partial files under ``folder`` (for status of a partial model): what each
    part record counts, and the length of each streamed prefix (a partial without a record)."""
    total = 0
    if folder.is_dir():
        for partial in folder.rglob(PARTIAL_PREFIX + "*"):
            if partial.name.endswith(STATE_SUFFIX):
                continue
            state = _read_state(partial.with_name(partial.name + STATE_SUFFIX))
            if state is not None:
                total += sum(int(p[2]) for p in state.get("parts", []))
            else:
                with contextlib.suppress(OSError):
                    total += partial.stat().st_size
    return total


def write_known(dest: Path, data: bytes) -> str:
    """Install bytes already in memory (a file read while planning) as ``dest``; its sha256."""
    partial = partial_path(dest)
    partial.parent.mkdir(parents=True, exist_ok=True)
    with partial.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    partial.replace(dest)
    return hashlib.sha256(data).hexdigest()


def discard(dest: Path) -> None:
    for p in (dest, partial_path(dest), state_path(dest)):
        p.unlink(missing_ok=True)


def _read_state(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("format") == STATE_FORMAT else None


def plan_parts(size: int, part_size: int, parallel: int) -> list[tuple[int, int]]:
    """The byte ranges ``[start, end)`` a file of ``size`` bytes is fetched in.

    ``part_size`` each, except the last ``parallel × part_size`` bytes (or so), which are cut
    ``TAIL_SPLIT`` times finer (see ``transfer.py``'s docstring). A file of at most ``part_size``
    bytes is one part.
    """
    if size <= part_size:
        return [(0, size)]
    small = min(part_size, max(MIN_PART_BYTES, part_size // TAIL_SPLIT))
    tail = (max(0, size - parallel * part_size) // part_size) * part_size
    starts = [*range(0, tail, part_size), *range(tail, size, small)]
    return [(a, min(size, a + (part_size if a < tail else small))) for a in starts]


@dataclass
class Part:
    start: int
    end: int  # exclusive
    done: int = 0  # bytes written from start; only the part's own worker raises it

    @property
    def length(self) -> int:
        return self.end - self.start

    @property
    def finished(self) -> bool:
        return self.done >= self.length


class PartsRecord:
    """The ``.wan-partial.<name>.json`` beside a file being fetched in parts."""

    def __init__(self, path: Path, identity: dict[str, Any], parts: list[Part]) -> None:
        self.path = path
        self.identity = identity
        self.parts = parts
        self._lock = threading.Lock()
        self._saved_at = 0.0

    @classmethod
    def open(
        cls, dest: Path, identity: dict[str, Any], size: int, part_size: int, parallel: int
    ) -> PartsRecord:
        path = state_path(dest)
        data = _read_state(path)
        partial = partial_path(dest)
        if (
            data is not None
            and data.get("identity") == identity
            and partial.is_file()
            and all(int(p[2]) <= int(p[1]) - int(p[0]) for p in data["parts"])
        ):
            parts = [Part(int(a), int(b), int(d)) for a, b, d in data["parts"]]
            # Bytes the record counts must be in the file; if not (it was truncated), start over.
            if partial.stat().st_size >= max(
                (p.start + p.done for p in parts if p.done), default=0
            ):
                return cls(path, identity, parts)
        partial.unlink(missing_ok=True)
        parts = [Part(a, b) for a, b in plan_parts(size, part_size, parallel)]
        rec = cls(path, identity, parts)
        partial.parent.mkdir(parents=True, exist_ok=True)
        partial.touch()
        rec.save(force=True)
        return rec

    @property
    def done_bytes(self) -> int:
        return sum(p.done for p in self.parts)

    def save(self, *, force: bool = False) -> None:
        now = time.monotonic()
        with self._lock:
            if not force and now - self._saved_at < STATE_SAVE_INTERVAL_S:
                return
            self._saved_at = now
            doc = {
                "format": STATE_FORMAT,
                "identity": self.identity,
                "parts": [[p.start, p.end, p.done] for p in self.parts],
            }
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(doc), "utf-8")
            tmp.replace(self.path)  # atomic; no fsync: a killed process loses no page cache
