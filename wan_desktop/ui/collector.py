"""Garbage collection on the GUI thread only.

Python collects garbage on whichever thread happens to allocate when a threshold is crossed, or
that calls ``gc.collect()``. The engine's threads allocate a lot (and collect after loading a
model), so a Qt object left in a reference cycle by the GUI (a closed dialog, a lambda slot) would
sooner or later be destroyed on an engine thread, and Qt crashes the process when that happens.

While the app runs, the collector switches automatic collection off and does the same work from
a timer on the GUI thread: each tick looks at the allocation counters and collects the oldest
generation over its threshold, as the interpreter would (including its rule that the oldest
generation is only collected once it has grown by a quarter since it was last). A collection
another thread asks for (``wan_desktop.engine.heap.collect``) is posted here and the caller waits.

A full collection walks every object the process holds: with torch, diffusers and transformers
imported that is ~480,000 objects and ~270 ms on this thread, a visible freeze. Once those
libraries are in, ``freeze_long_lived()`` moves everything alive into the interpreter's permanent
generation (``gc.freeze``), which collections skip: a full one then takes a few milliseconds with
a model loaded. Only what the app holds for its whole life should be frozen (a frozen object in
a cycle is never freed), so it is called once, before any model is loaded.
"""

from __future__ import annotations

import gc
import threading
import time

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
        self.longest_ms = [0.0, 0.0, 0.0]  # the longest collection of each generation
        self.frozen = 0  # objects moved into the permanent generation by freeze_long_lived()
        # The interpreter's own bookkeeping for its quarter rule: objects in the oldest
        # generation after its last collection, and objects moved there since.
        self._long_lived_total = 0
        self._long_lived_pending = 0
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
        self._long_lived_total = len(gc.get_objects(generation=2))
        self._long_lived_pending = 0
        heap.set_collector(self.collect_full)
        self._timer.start()

    def stop(self) -> None:
        self._timer.stop()
        heap.set_collector(None)
        self._serve_requests()  # nobody stays waiting
        if self.frozen:
            gc.unfreeze()
            self.frozen = 0
        if self._was_enabled:
            gc.enable()

    def freeze_long_lived(self) -> None:
        """Exempt everything alive now from later collections (see the module's doc)."""
        gc.freeze()
        self.frozen = gc.get_freeze_count()
        self._long_lived_total = len(gc.get_objects(generation=2))
        self._long_lived_pending = 0

    @Slot()
    def tick(self) -> None:
        """Collect the oldest generation the interpreter would collect now, if any."""
        counts, thresholds = gc.get_count(), gc.get_threshold()
        for g in (2, 1, 0):
            if counts[g] <= thresholds[g]:
                continue
            if g == 2 and self._long_lived_pending < self._long_lived_total // 4:
                continue  # the oldest generation has not grown enough to be worth a full pass
            self._collect(g)
            return

    def _collect(self, generation: int) -> None:
        young = 0
        if generation == 1:  # what survives gens 0 and 1 moves into the oldest generation
            young = len(gc.get_objects(generation=0)) + len(gc.get_objects(generation=1))
        t0 = time.perf_counter()
        found = gc.collect(generation)
        ms = (time.perf_counter() - t0) * 1000
        self.collections[generation] += 1
        self.longest_ms[generation] = max(self.longest_ms[generation], ms)
        if generation == 1:
            self._long_lived_pending += max(0, young - found)
        elif generation == 2:
            self._long_lived_total = len(gc.get_objects(generation=2))
            self._long_lived_pending = 0

    def collect_full(self) -> None:
        """A full collection on the GUI thread; from another thread, wait for it there."""
        if threading.current_thread() is threading.main_thread():
            self._collect(2)
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
        self._collect(2)
        for done in waiting:
            done.set()
