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
import logging
import os
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from . import metrics
from .cancel import CancelToken
from .errors import ModelError
from .integrity import sha256_file
from .logs import LOGGER_NAME, log_event
from .partials import Part, PartsRecord, partial_path, state_path
from .requests import SourceGate, TransferSettings, with_retries
from .sources.base import RangedSource, RemoteFile
from .sources.http_errors import HttpError
from .transfer_workers import HASH_CHUNK, Flusher, OrderedHasher

log = logging.getLogger(LOGGER_NAME)

# A failed request that moved at least this much made progress: the retry count starts again.
# (Less, e.g. a server that trickles, counts as a failed attempt.)
PROGRESS_BYTES = 64 * 1024

T = TypeVar("T")


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
        record = PartsRecord.open(
            dest, identity, size, settings.part_size_bytes, settings.parts_per_file
        )
        partial = partial_path(dest)
        resumed = record.done_bytes
        on_resumed(resumed)
        self._log_resume(resumed)
        todo = [p for p in record.parts if not p.finished]
        batch = self.cancel.child()
        hasher = OrderedHasher(partial, record.parts, batch) if settings.verify_sha256 else None
        flusher = Flusher(partial) if todo else None
        metric_source = self.source.describe()

        def run_part(part: Part) -> None:
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
