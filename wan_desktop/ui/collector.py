"""Garbage collection on the GUI thread only.

Python collects garbage on whichever thread happens to allocate when a threshold is crossed, or
that calls ``gc.collect()``. The engine's threads allocate a lot (and collect after loading a
model), so a Qt object left in a reference cycle by the GUI (a closed dialog, a lambda slot) would
sooner or later be destroyed on an engine thread, and Qt crashes the process when that happens.

While the app runs, the collector switches automatic collection off and does the same work from
a timer on the GUI thread: each tick looks at the allocation counters and collects the oldest
generation over its threshold, as the interpreter would. A collection another thread asks for
(``wan_desktop.engine.heap.collect``) is posted here and the caller waits for it.
"""

from __future__ import annotations

import gc
import threading

from PySide6.QtCore import QObject, QTimer, Signal, Slot

from wan_desktop.engine import heap

CHECK_INTERVAL_MS = 250
# A thread that asks for a collection waits at most this long. The GUI thread may itself be
# waiting for that thread (shutting the engine down), so the wait must end: the collection then
# happens at the next tick instead.
REQUEST_TIMEOUT_S = 5.0


class GuiCollector(QObject):
    """Install with ``start()`` on the GUI thread; ``stop()`` puts automatic collection back."""

    _requested = Signal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.collections = [0, 0, 0]  # per generation, for tests and diagnostics
        self._lock = threading.Lock()
        self._waiting: list[threading.Event] = []
        self._was_enabled = gc.isenabled()
        self._timer = QTimer(self)
        self._timer.setInterval(CHECK_INTERVAL_MS)
        self._timer.timeout.connect(self.tick)
        self._requested.connect(self._serve_requests)

    def start(self) -> None:
        self._was_enabled = gc.isenabled()
        gc.disable()
        heap.set_collector(self.collect_full)
        self._timer.start()

    def stop(self) -> None:
        self._timer.stop()
        heap.set_collector(None)
        self._serve_requests()  # nobody stays waiting
        if self._was_enabled:
            gc.enable()

    @Slot()
    def tick(self) -> None:
        """Collect the oldest generation whose count is over its threshold, if any."""
        counts, thresholds = gc.get_count(), gc.get_threshold()
        generation = -1
        for g in range(3):
            if counts[g] > thresholds[g]:
                generation = g
        if generation >= 0:
            gc.collect(generation)
            self.collections[generation] += 1

    def collect_full(self) -> None:
        """A full collection on the GUI thread; from another thread, wait for it there."""
        if threading.current_thread() is threading.main_thread():
            gc.collect()
            self.collections[2] += 1
            return
        done = threading.Event()
        with self._lock:
            self._waiting.append(done)
        self._requested.emit()
        done.wait(REQUEST_TIMEOUT_S)

    @Slot()
    def _serve_requests(self) -> None:
        with self._lock:
            waiting, self._waiting = self._waiting, []
        if not waiting:
            return
        gc.collect()
        self.collections[2] += 1
        for done in waiting:
            done.set()
