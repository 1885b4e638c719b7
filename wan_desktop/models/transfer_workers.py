"""The helper threads of a file fetched in parts: one hashes the in-order prefix while later
parts still arrive, one flushes arrived bytes to disk so the final fsync finds little left.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import threading
from pathlib import Path

from .cancel import CancelToken
from .partials import Part

HASH_CHUNK = 8 * 1024 * 1024
# A large file's new bytes are flushed to disk every this many bytes, while the rest arrives.
WRITEBACK_BYTES = 64 * 1024 * 1024


if sys.platform == "linux":
    _flush_data = os.fdatasync  # the data (and the size), not the timestamps
else:
    _flush_data = os.fsync


class Flusher:
    """Flushes a file's bytes to disk in the background every ``WRITEBACK_BYTES`` written."""

    def __init__(self, path: Path) -> None:
        self._fh = path.open("rb+", buffering=0)
        self._pending = 0
        self._stop = False
        self._last = False  # one more flush before stopping
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="wan-flush", daemon=True)
        self._thread.start()

    def wrote(self, n: int) -> None:
        with self._cond:
            self._pending += n
            if self._pending >= WRITEBACK_BYTES:
                self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._pending < WRITEBACK_BYTES and not self._stop:
                    self._cond.wait()
                if self._stop and not (self._last and self._pending):
                    return
                self._pending = 0
            # Only a head start: an error here shows again in the final fsync, which counts.
            with contextlib.suppress(OSError):
                _flush_data(self._fh.fileno())

    def finish(self) -> None:
        """Flush what is left in the background (while the hash catches up), then stop."""
        with self._cond:
            self._stop = self._last = True
            self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify()
        self._thread.join()
        self._fh.close()


class OrderedHasher:
    """Hashes the in-order prefix of a file while later parts are still being written."""

    def __init__(self, path: Path, parts: list[Part], cancel: CancelToken) -> None:
        self.path = path
        self.parts = parts
        self.cancel = cancel
        self.hash = hashlib.sha256()
        self.pos = 0
        self._cond = threading.Condition()
        self._finishing = False
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="wan-hash", daemon=True)
        self._thread.start()

    def _available(self) -> int:
        end = 0
        for p in self.parts:
            end = p.start + p.done
            if not p.finished:
                break
        return end

    def poke(self) -> None:
        with self._cond:
            self._cond.notify()

    def _run(self) -> None:
        try:
            buf = bytearray(HASH_CHUNK)
            view = memoryview(buf)
            with self.path.open("rb", buffering=0) as fh:
                while True:
                    with self._cond:
                        while self._available() <= self.pos and not self._finishing:
                            if self.cancel.cancelled:
                                return
                            self._cond.wait(0.2)
                    avail = self._available()
                    if avail <= self.pos:
                        return  # finishing and nothing left
                    fh.seek(self.pos)
                    while self.pos < avail:
                        n = fh.readinto(view[: min(HASH_CHUNK, avail - self.pos)])
                        if not n:
                            return
                        self.hash.update(view[:n])
                        self.pos += n
                        if self.cancel.cancelled:
                            return
        except BaseException as exc:  # reported by finish()
            self._error = exc

    def finish(self) -> str:
        with self._cond:
            self._finishing = True
            self._cond.notify()
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self.hash.hexdigest()

    def abandon(self) -> None:
        with self._cond:
            self._finishing = True
            self._cond.notify()
        self._thread.join(5)
