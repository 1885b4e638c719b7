"""Blocking work off the GUI thread, results back on it.

Disk scans, hashing, keyring calls and the hardware probe run in a small thread pool; the result
(or the error) comes back through a queued signal and the callback runs on the GUI thread.
Futures the engine returns (``ensure_model``) are watched the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from PySide6.QtCore import QObject, Signal, Slot

log = logging.getLogger("wan_desktop.ui")

T = TypeVar("T")
OnDone = Callable[[Any], None]
OnError = Callable[[BaseException], None]


class Background(QObject):
    _finished = Signal(object)

    def __init__(self, parent: QObject | None = None, *, workers: int = 2) -> None:
        super().__init__(parent)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="wan-ui")
        self._closed = False
        self.pending = 0
        self._finished.connect(self._deliver)

    def run(
        self,
        fn: Callable[..., T],
        *args: Any,
        on_done: OnDone | None = None,
        on_error: OnError | None = None,
    ) -> Future[T]:
        if self._closed:
            # The app is closing: late requests (a refresh after the last event) are dropped.
            dropped: Future[T] = Future()
            dropped.cancel()
            return dropped
        future = self._pool.submit(fn, *args)
        self.watch(future, on_done=on_done, on_error=on_error)
        return future

    def watch(
        self,
        future: Future[Any],
        *,
        on_done: OnDone | None = None,
        on_error: OnError | None = None,
    ) -> None:
        self.pending += 1

        def done(f: Future[Any]) -> None:
            if not self._closed:
                self._finished.emit((f, on_done, on_error))

        future.add_done_callback(done)

    @Slot(object)
    def _deliver(self, item: tuple[Future[Any], OnDone | None, OnError | None]) -> None:
        future, on_done, on_error = item
        self.pending -= 1
        if future.cancelled():
            return
        exc = future.exception()
        try:
            if exc is not None:
                if on_error is not None:
                    on_error(exc)
                else:
                    log.error("background task failed: %s", exc, exc_info=exc)
            elif on_done is not None:
                on_done(future.result())
        except Exception:
            log.exception("a background task's callback failed")

    def shutdown(self) -> None:
        self._closed = True
        self._pool.shutdown(wait=True, cancel_futures=True)
