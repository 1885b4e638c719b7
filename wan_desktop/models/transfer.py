"""The transfer engine of HTTP-like sources: parallel ranged parts, resume, retries, hashing.

One file is split into parts of ``part_size_bytes``; up to ``parts_per_file`` of them stream at
once, each written at its offset into ``.wan-partial.<name>`` next to the file's final place in
the staging folder. ``.wan-partial.<name>.json`` records how far each part has got (written after
the bytes, so it never claims more than the file holds): a killed process, or another one later,
resumes every part where the record says, and fetches nothing twice that the record counts.

Retries (``requests.py``): a failed request is asked again for what is still missing, after a
backoff shared by every request to the source. A request that moved at least ``PROGRESS_BYTES``
starts the count again.

Hashing: sha256 must see the bytes in order, so a reader thread follows the growing in-order
prefix of the file and hashes it while the later parts are still arriving (from the page cache,
not the network). The last ``parts_per_file`` parts' worth of a file is cut into parts
``TAIL_SPLIT`` times smaller: parts running side by side finish at about the same time, so with
equal parts the last few would all land at the very end and leave that much to hash (and to wait
for, on the slowest connection) after the last byte. A file of one part is simply appended in
order and hashed as it arrives, without a part record or a reader thread.

Disk: every file is fsynced before it counts as downloaded. So that this fsync does not find the
whole file still in memory (seconds on a slow disk, after the last byte: the kernel starts
writing on its own only after ~30 s or gigabytes), a thread per large file flushes what has
arrived every ``WRITEBACK_BYTES`` while the rest is still coming.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from . import metrics
from .cancel import CancelToken
from .errors import ModelError
from .integrity import sha256_file
from .logs import LOGGER_NAME, log_event
from .requests import SourceGate, TransferSettings, with_retries
from .sources.base import RangedSource, RemoteFile
from .sources.http import HttpError

if TYPE_CHECKING:
    pass

log = logging.getLogger(LOGGER_NAME)

PARTIAL_PREFIX = ".wan-partial."
STATE_SUFFIX = ".json"
STATE_FORMAT = 1
# How often the per-part record is rewritten while bytes flow. Lower loses less on a kill.
STATE_SAVE_INTERVAL_S = 0.2
# A failed request that moved at least this much made progress: the retry count starts again.
# (Less, e.g. a server that trickles, counts as a failed attempt.)
PROGRESS_BYTES = 64 * 1024
HASH_CHUNK = 8 * 1024 * 1024
# The last parts_per_file × part_size bytes of a file travel in parts this many times smaller.
TAIL_SPLIT = 8
MIN_PART_BYTES = 1 << 20
# A large file's new bytes are flushed to disk every this many bytes, while the rest arrives.
WRITEBACK_BYTES = 64 * 1024 * 1024

T = TypeVar("T")


# ------------------------------------------------------------------------- staging files


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


def run_all(
    fn: Callable[[T], object], items: list[T], *, workers: int, batch: CancelToken, name: str
) -> None:
    """``fn`` over ``items`` on up to ``workers`` threads; the first failure cancels ``batch``
    (the siblings stop at their next chunk), waits for them and is raised."""
    with ThreadPoolExecutor(max(1, min(workers, len(items))), thread_name_prefix=name) as pool:
        futures = [pool.submit(fn, item) for item in items]
        done, pending = wait(futures, return_when=FIRST_EXCEPTION)
        failed = next((f for f in done if f.exception() is not None), None)
        if failed is not None:
            batch.cancel()
            for f in pending:
                f.cancel()
            wait(pending)
            exc = failed.exception()
            assert exc is not None
            raise exc


# ----------------------------------------------------------------------------- one file


def plan_parts(size: int, part_size: int, parallel: int) -> list[tuple[int, int]]:
    """The byte ranges ``[start, end)`` a file of ``size`` bytes is fetched in.

    ``part_size`` each, except the last ``parallel × part_size`` bytes (or so), which are cut
    ``TAIL_SPLIT`` times finer (see the module's docstring). A file of at most ``part_size``
    bytes is one part.
    """
    if size <= part_size:
        return [(0, size)]
    small = min(part_size, max(MIN_PART_BYTES, part_size // TAIL_SPLIT))
    tail = (max(0, size - parallel * part_size) // part_size) * part_size
    starts = [*range(0, tail, part_size), *range(tail, size, small)]
    return [(a, min(size, a + (part_size if a < tail else small))) for a in starts]


if sys.platform == "linux":
    _flush_data = os.fdatasync  # the data (and the size), not the timestamps
else:
    _flush_data = os.fsync


class _Flusher:
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


@dataclass
class _Part:
    start: int
    end: int  # exclusive
    done: int = 0  # bytes written from start; only the part's own worker raises it

    @property
    def length(self) -> int:
        return self.end - self.start

    @property
    def finished(self) -> bool:
        return self.done >= self.length


class _PartsRecord:
    """The ``.wan-partial.<name>.json`` beside a file being fetched in parts."""

    def __init__(self, path: Path, identity: dict[str, Any], parts: list[_Part]) -> None:
        self.path = path
        self.identity = identity
        self.parts = parts
        self._lock = threading.Lock()
        self._saved_at = 0.0

    @classmethod
    def open(
        cls, dest: Path, identity: dict[str, Any], size: int, part_size: int, parallel: int
    ) -> _PartsRecord:
        path = state_path(dest)
        data = _read_state(path)
        partial = partial_path(dest)
        if (
            data is not None
            and data.get("identity") == identity
            and partial.is_file()
            and all(int(p[2]) <= int(p[1]) - int(p[0]) for p in data["parts"])
        ):
            parts = [_Part(int(a), int(b), int(d)) for a, b, d in data["parts"]]
            # Bytes the record counts must be in the file; if not (it was truncated), start over.
            if partial.stat().st_size >= max(
                (p.start + p.done for p in parts if p.done), default=0
            ):
                return cls(path, identity, parts)
        partial.unlink(missing_ok=True)
        parts = [_Part(a, b) for a, b in plan_parts(size, part_size, parallel)]
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


class _OrderedHasher:
    """Hashes the in-order prefix of a file while later parts are still being written."""

    def __init__(self, path: Path, parts: list[_Part], cancel: CancelToken) -> None:
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


def fetch_file(
    source: RangedSource,
    remote: RemoteFile,
    dest: Path,
    *,
    size: int,
    expected_sha256: str | None,
    settings: TransferSettings,
    gate: SourceGate,
    cancel: CancelToken,
    on_bytes: Callable[[int], None],
    on_resumed: Callable[[int], None],
) -> str | None:
    """Fetch ``remote`` (``size`` bytes) into ``dest``; return its sha256 (None: not hashed).

    The caller checks size and hash. What a previous run left (parts, a streamed prefix, or a
    finished file that was not yet recorded) is reused.
    """
    if dest.is_file() and not state_path(dest).exists():
        if dest.stat().st_size == size:
            on_resumed(size)
            return sha256_file(dest)[0] if settings.verify_sha256 else None
        dest.unlink()
    job = _Transfer(source, remote, dest, size, settings, gate, cancel, on_bytes)
    if size <= settings.part_size_bytes and not state_path(dest).exists():
        return job.stream(expected_sha256, on_resumed)
    return job.parts(expected_sha256, on_resumed)


@dataclass
class _Transfer:
    source: RangedSource
    remote: RemoteFile
    dest: Path
    size: int
    settings: TransferSettings
    gate: SourceGate
    cancel: CancelToken
    on_bytes: Callable[[int], None]

    def _log_resume(self, resumed: int) -> None:
        if resumed:
            log_event(
                log,
                logging.INFO,
                "resume",
                "resuming %s at %d of %d bytes",
                self.remote.path,
                resumed,
                self.size,
                file=self.remote.path,
                bytes_done=resumed,
            )

    def _fetch_range(
        self,
        start: int,
        end: int,
        done: Callable[[], int],
        write: Callable[[memoryview], None],
        cancel: CancelToken,
        failed: Callable[[], None] = lambda: None,
    ) -> None:
        """Bytes ``[start + done(), end)`` into ``write``, asking again for what is missing.

        ``failed`` runs after each failed request (the bytes it did deliver are written): the
        part's record is saved there, so even a process killed during the backoff keeps them.
        """
        before = done()

        def attempt() -> None:
            nonlocal before
            before = done()
            try:
                got = self.source.read_range(self.remote, start + before, end, write)
                if start + done() < end:
                    raise HttpError(
                        f"{self.remote.path}: the body ended after {got} bytes, "
                        f"{end - start - done()} short",
                        transient=True,
                        reason="truncated",
                    )
            except HttpError:
                failed()
                raise

        with_retries(
            attempt,
            source=self.source,
            gate=self.gate,
            settings=self.settings,
            cancel=cancel,
            what=self.remote.path,
            progressed=lambda: done() - before >= PROGRESS_BYTES,
        )

    def stream(self, expected_sha256: str | None, on_resumed: Callable[[int], None]) -> str | None:
        """A file of one part: appended in order to its partial file, hashed as it arrives.

        Appends leave no holes, so whatever a killed run left is a prefix of the file: it is
        hashed once and the request continues after it. (The store discards the partial file
        when the plan names another version of the file.)
        """
        partial = partial_path(self.dest)
        partial.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256() if self.settings.verify_sha256 else None
        metric_source = self.source.describe()
        with partial.open("ab", buffering=0) as fh:
            pos = fh.tell()
            if pos > self.size:
                fh.truncate(0)
                pos = 0
            if pos and digest is not None:
                _hash_prefix(partial, pos, digest)
            on_resumed(pos)
            self._log_resume(pos)

            def write(data: memoryview) -> None:
                nonlocal pos
                self.cancel.raise_if_cancelled()
                view = data
                while view:
                    n = fh.write(view)
                    view = view[n or 0 :]
                if digest is not None:
                    digest.update(data)
                pos += len(data)
                self.on_bytes(len(data))
                metrics.bytes_received(metric_source, len(data))

            if pos < self.size:
                self._fetch_range(0, self.size, lambda: pos, write, self.cancel)
            os.fsync(fh.fileno())
        partial.replace(self.dest)
        return digest.hexdigest() if digest is not None else None

    def parts(self, expected_sha256: str | None, on_resumed: Callable[[int], None]) -> str | None:
        """A large file: parallel ranged parts written at their offsets, resumable per part."""
        settings, dest, size = self.settings, self.dest, self.size
        identity = {"size": size, "sha256": expected_sha256, "source": self.source.describe()}
        record = _PartsRecord.open(
            dest, identity, size, settings.part_size_bytes, settings.parts_per_file
        )
        partial = partial_path(dest)
        resumed = record.done_bytes
        on_resumed(resumed)
        self._log_resume(resumed)
        todo = [p for p in record.parts if not p.finished]
        batch = self.cancel.child()
        hasher = _OrderedHasher(partial, record.parts, batch) if settings.verify_sha256 else None
        flusher = _Flusher(partial) if todo else None
        metric_source = self.source.describe()

        def run_part(part: _Part) -> None:
            with partial.open("r+b", buffering=0) as fh:

                def write(data: memoryview) -> None:
                    batch.raise_if_cancelled()
                    fh.seek(part.start + part.done)
                    view = data
                    while view:
                        n = fh.write(view)
                        view = view[n or 0 :]
                    part.done += len(data)  # after the bytes are in the file, never before
                    self.on_bytes(len(data))
                    metrics.bytes_received(metric_source, len(data))
                    if hasher is not None:
                        hasher.poke()
                    if flusher is not None:
                        flusher.wrote(len(data))
                    record.save()

                self._fetch_range(
                    part.start,
                    part.end,
                    lambda: part.done,
                    write,
                    batch,
                    failed=lambda: record.save(force=True),
                )
            record.save(force=True)

        try:
            if len(todo) == 1:
                run_part(todo[0])  # one part left: no pool needed
            elif todo:
                run_all(
                    run_part, todo, workers=settings.parts_per_file, batch=batch, name="wan-part"
                )
            if flusher is not None:
                flusher.finish()
            digest = hasher.finish() if hasher is not None else None
        except BaseException:
            batch.cancel()
            if hasher is not None:
                hasher.abandon()
            with contextlib.suppress(OSError):
                record.save(force=True)
            raise
        finally:
            if flusher is not None:
                flusher.close()
        if hasher is not None and hasher.pos != size:
            raise ModelError(f"{self.remote.path}: hashed {hasher.pos} of {size} bytes")
        with partial.open("rb+") as fh:
            os.fsync(fh.fileno())
        partial.replace(dest)
        state_path(dest).unlink(missing_ok=True)
        return digest


def _hash_prefix(path: Path, length: int, digest: Any) -> None:
    """Feed the first ``length`` bytes of ``path`` to ``digest``."""
    buf = bytearray(HASH_CHUNK)
    view = memoryview(buf)
    with path.open("rb", buffering=0) as fh:
        while length > 0:
            n = fh.readinto(view[: min(HASH_CHUNK, length)])
            if not n:
                raise ModelError(f"{path.name} is shorter than the {length} bytes it had")
            digest.update(view[:n])
            length -= n
