"""Engine events → Qt signals on the GUI thread.

The engine delivers events on a subscriber thread. The bridge queues them and wakes the GUI thread
once per batch (a queued signal to one of its own slots), where they are re-emitted as typed
signals. A burst of progress events therefore costs the GUI one wake-up, and superseded samples
(memory, download progress, steps of the same job) are dropped in favour of the newest. A batch
that takes longer than a few milliseconds to handle is finished on the next loop turn, so
painting and input never wait behind a long one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from PySide6.QtCore import QObject, Signal, Slot

from wan_desktop.engine import (
    Alert,
    Event,
    JobPreview,
    JobStage,
    JobStateChanged,
    JobStep,
    JobWarning,
    MemorySample,
    ModelDownload,
    ModelDownloadFinished,
    ModelLoaded,
    ModelUnloaded,
    QueueChanged,
    Subscription,
)
from wan_desktop.engine.face import EngineFace, LinkChanged

# One wake-up handles events for at most this long before yielding to the loop.
DRAIN_SLICE_S = 0.008


def _supersede_key(event: Event) -> tuple[object, ...] | None:
    """Events with the same key replace each other inside one batch."""
    if isinstance(event, MemorySample):
        return ("memory",)
    if isinstance(event, ModelDownload):
        return ("download", event.progress.model_id, event.progress.variant)
    if isinstance(event, JobStep):
        return ("step", event.job_id)
    if isinstance(event, JobPreview):
        return ("preview", event.job_id)
    return None


class EngineBridge(QObject):
    job_changed = Signal(object)  # JobStateChanged
    job_stage = Signal(object)  # JobStage
    job_step = Signal(object)  # JobStep
    job_preview = Signal(object)  # JobPreview
    job_warning = Signal(object)  # JobWarning
    queue_changed = Signal(object)  # QueueChanged
    download_progress = Signal(object)  # ModelDownload
    download_finished = Signal(object)  # ModelDownloadFinished
    model_loaded = Signal(object)  # ModelLoaded
    model_unloaded = Signal(object)  # ModelUnloaded
    memory_sampled = Signal(object)  # MemorySample
    alert = Signal(object)  # Alert
    link_changed = Signal(object)  # LinkChanged: a remote engine's link went up or down

    _wake = Signal()

    def __init__(self, engine: EngineFace, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.engine = engine
        self._lock = threading.Lock()
        self._pending: list[Event] = []
        self._woken = False
        self.delivered = 0
        self._routes: dict[type[Event], Callable[[Event], None]] = {
            JobStateChanged: self.job_changed.emit,
            JobStage: self.job_stage.emit,
            JobStep: self.job_step.emit,
            JobPreview: self.job_preview.emit,
            JobWarning: self.job_warning.emit,
            QueueChanged: self.queue_changed.emit,
            ModelDownload: self.download_progress.emit,
            ModelDownloadFinished: self.download_finished.emit,
            ModelLoaded: self.model_loaded.emit,
            ModelUnloaded: self.model_unloaded.emit,
            MemorySample: self.memory_sampled.emit,
            Alert: self.alert.emit,
            LinkChanged: self.link_changed.emit,
        }
        self._wake.connect(self._drain)  # the bridge lives on the GUI thread: a queued call
        self._sub: Subscription | None = engine.subscribe(self._on_event, name="gui")

    def _on_event(self, event: Event) -> None:
        """Runs on the engine's subscriber thread: queue, and wake the GUI thread once."""
        with self._lock:
            self._pending.append(event)
            if self._woken:
                return
            self._woken = True
        self._wake.emit()

    @Slot()
    def _drain(self) -> None:
        started = time.perf_counter()
        with self._lock:
            batch, self._pending = self._pending, []
            self._woken = False
        if self._sub is None:
            return  # closed: what was still queued is not for the app any more
        last: dict[tuple[object, ...], int] = {}
        for i, event in enumerate(batch):
            key = _supersede_key(event)
            if key is not None:
                last[key] = i
        wanted = [
            e for i, e in enumerate(batch) if (key := _supersede_key(e)) is None or last[key] == i
        ]
        for n, event in enumerate(wanted):
            route = self._routes.get(type(event))
            if route is not None:
                self.delivered += 1
                route(event)
            if time.perf_counter() - started > DRAIN_SLICE_S and n + 1 < len(wanted):
                # Let the loop breathe (paint, input, timers); the rest comes next turn,
                # still in order and still merged with whatever arrives meanwhile.
                with self._lock:
                    self._pending = wanted[n + 1 :] + self._pending
                    if self._woken:
                        return
                    self._woken = True
                self._wake.emit()
                return

    def close(self) -> None:
        """Stop listening (waits for the subscriber thread) and deliver nothing more, not even
        what was queued (the engine may be shut down next); call before the bridge is deleted."""
        if self._sub is not None:
            self._sub.close(wait=True)
            self._sub = None
        with self._lock:
            self._pending = []
