"""Download progress for people: byte counts from many threads become rate-limited events."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from .logs import LOGGER_NAME
from .types import DownloadProgress, Phase

log = logging.getLogger(LOGGER_NAME)

PROGRESS_INTERVAL_S = 0.1
ProgressCallback = Callable[[DownloadProgress], None]


class Reporter:
    """Turns byte counts from many threads into rate-limited :class:`DownloadProgress` events."""

    def __init__(self, model_id: str, variant: str, callback: ProgressCallback | None) -> None:
        self.model_id = model_id
        self.variant = variant
        self.callback = callback
        self.source: str | None = None
        self._lock = threading.Lock()
        self._phase = Phase.planning
        self._files_total = 0
        self._files_done = 0
        self._bytes_total: int | None = None
        self._bytes_done = 0
        self._transferred = 0
        self._file: str | None = None
        self._file_done: dict[str, int] = {}
        self._file_total: dict[str, int | None] = {}
        self._file_started: dict[str, tuple[float, int]] = {}  # when, bytes done then
        self._last_emit = 0.0
        self._speed = 0.0
        self._speed_t = time.monotonic()
        self._speed_bytes = 0

    @property
    def transferred(self) -> int:
        return self._transferred

    def begin(
        self, *, files_total: int, files_done: int, bytes_total: int | None, bytes_done: int
    ) -> None:
        with self._lock:
            self._files_total = files_total
            self._files_done = files_done
            self._bytes_total = bytes_total
            self._bytes_done = bytes_done
            self._phase = Phase.downloading
        self._emit(force=True)

    def phase(self, phase: Phase) -> None:
        with self._lock:
            self._phase = phase
            if phase is Phase.complete and self._bytes_total is not None:
                self._bytes_done = self._bytes_total
        self._emit(force=True)

    def file_started(self, rel: str, size: int | None) -> Callable[[int], None]:
        with self._lock:
            self._file = rel
            self._file_done[rel] = 0
            self._file_total[rel] = size
            self._file_started[rel] = (time.monotonic(), 0)

        def on_bytes(n: int) -> None:
            with self._lock:
                self._file_done[rel] += n
                self._bytes_done += n
                self._transferred += n
                self._speed_bytes += n
                self._file = rel
            self._emit()

        return on_bytes

    def resumed(self, rel: str, offset: int) -> None:
        if offset:
            with self._lock:
                self._file_done[rel] = offset
                self._file_started[rel] = (
                    self._file_started.get(rel, (time.monotonic(), 0))[0],
                    offset,
                )
                self._bytes_done += offset

    def discard(self, size: int) -> None:
        with self._lock:
            self._bytes_done -= size

    def file_finished(self, rel: str) -> None:
        with self._lock:
            self._files_done += 1
        self._emit(force=True)

    def _emit(self, *, force: bool = False) -> None:
        if self.callback is None:
            return
        now = time.monotonic()
        with self._lock:
            if not force and now - self._last_emit < PROGRESS_INTERVAL_S:
                return
            self._last_emit = now
            window = now - self._speed_t
            if window >= 0.5:
                inst = self._speed_bytes / window
                self._speed = inst if self._speed == 0 else 0.7 * self._speed + 0.3 * inst
                self._speed_t, self._speed_bytes = now, 0
            eta = None
            if self._bytes_total is not None and self._speed > 0:
                eta = max(0.0, (self._bytes_total - self._bytes_done) / self._speed)
            rel = self._file
            file_eta = None
            if rel is not None and self._file_total.get(rel) is not None:
                t0, base = self._file_started.get(rel, (now, 0))
                got = self._file_done.get(rel, 0) - base
                if got > 0 and now > t0:
                    left = (self._file_total[rel] or 0) - self._file_done.get(rel, 0)
                    file_eta = max(0.0, left / (got / (now - t0)))
            event = DownloadProgress(
                model_id=self.model_id,
                variant=self.variant,
                phase=self._phase,
                bytes_done=self._bytes_done,
                bytes_total=self._bytes_total,
                speed_bps=self._speed,
                eta_s=eta,
                files_done=self._files_done,
                files_total=self._files_total,
                file=rel,
                file_bytes_done=self._file_done.get(rel, 0) if rel else 0,
                file_bytes_total=self._file_total.get(rel) if rel else None,
                file_eta_s=file_eta,
                source=self.source,
                bytes_transferred=self._transferred,
            )
        try:
            self.callback(event)
        except Exception:  # a broken listener must not break a download
            log.exception("progress callback failed")
