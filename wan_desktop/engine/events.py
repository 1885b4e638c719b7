"""Typed events out of the engine, and the bus that delivers them.

The engine publishes; it does not know who listens. Each subscriber gets its own queue and
delivery thread, so a slow listener never slows generation nor other listeners. The UI turns
events into Qt signals, the API into WebSocket messages.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from wan_desktop.models.types import DownloadProgress

from .jobs import Job, JobState

log = logging.getLogger("wan_desktop.engine.events")


@dataclass(frozen=True, kw_only=True)
class Event:
    at: float = field(default_factory=time.time)


@dataclass(frozen=True, kw_only=True)
class JobStateChanged(Event):
    job: Job
    previous: JobState | None


@dataclass(frozen=True, kw_only=True)
class JobStage(Event):
    job_id: str
    stage: str
    progress: float  # overall job progress 0..1 when the stage starts
    message: str = ""


@dataclass(frozen=True, kw_only=True)
class JobStep(Event):
    job_id: str
    step: int  # 1-based: steps done
    total_steps: int
    progress: float
    eta_s: float | None
    step_time_s: float
    expert: str | None = None  # "high_noise" / "low_noise" on two-expert models


@dataclass(frozen=True, kw_only=True)
class JobPreview(Event):
    job_id: str
    step: int
    width: int
    height: int
    jpeg: bytes


@dataclass(frozen=True, kw_only=True)
class JobWarning(Event):
    job_id: str | None
    message: str
    code: str | None = None
    suggestions: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class JobLog(Event):
    job_id: str
    level: str
    message: str


@dataclass(frozen=True, kw_only=True)
class QueueChanged(Event):
    reason: str  # submitted, cancelled, deleted, reordered, cleared, paused, resumed, retried
    job_ids: tuple[str, ...] = ()
    paused: bool = False


@dataclass(frozen=True, kw_only=True)
class ModelDownload(Event):
    progress: DownloadProgress
    job_id: str | None = None


@dataclass(frozen=True, kw_only=True)
class ModelDownloadFinished(Event):
    model_id: str
    variant: str
    ok: bool
    error: str | None = None
    code: str | None = None


@dataclass(frozen=True, kw_only=True)
class ModelLoaded(Event):
    model_id: str
    variant: str
    strategy: str
    seconds: float


@dataclass(frozen=True, kw_only=True)
class ModelUnloaded(Event):
    model_id: str
    variant: str
    reason: str


@dataclass(frozen=True, kw_only=True)
class MemorySample(Event):
    device_name: str
    has_gpu: bool
    vram_allocated_mb: float
    vram_reserved_mb: float
    vram_free_mb: float
    vram_total_mb: float
    gpu_percent: float | None
    ram_used_mb: float
    ram_total_mb: float
    cpu_percent: float | None = None

    @property
    def vram_percent(self) -> float:
        if not self.vram_total_mb:
            return 0.0
        return 100.0 * (self.vram_total_mb - self.vram_free_mb) / self.vram_total_mb

    @property
    def warning_level(self) -> str:
        pct = self.vram_percent
        if pct >= 95:
            return "critical"
        if pct >= 90:
            return "warning"
        return "normal"


@dataclass(frozen=True, kw_only=True)
class Alert(Event):
    kind: str  # e.g. "vram"
    severity: str  # info, warning, critical
    message: str
    suggestions: tuple[str, ...] = ()


Listener = Callable[[Event], None]

# Events a lagging listener may lose (a newer one supersedes them); state changes are never dropped.
_DROPPABLE = (JobStep, JobPreview, MemorySample, ModelDownload)
MAX_BACKLOG = 2048


class Subscription:
    def __init__(self, bus: EventBus, listener: Listener, name: str) -> None:
        self._bus = bus
        self._listener = listener
        self._queue: queue.SimpleQueue[Event | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=f"events-{name}", daemon=True)
        self.dropped = 0
        self._closed = False
        self._thread.start()

    def _deliver(self, event: Event) -> None:
        if isinstance(event, _DROPPABLE) and self._queue.qsize() > MAX_BACKLOG:
            self.dropped += 1
            return
        self._queue.put(event)

    def _run(self) -> None:
        while True:
            event = self._queue.get()
            if event is None or self._closed:
                return
            try:
                self._listener(event)
            except Exception:
                log.exception("event listener %s failed on %s", self._thread.name, type(event))

    def close(self, *, wait: bool = True) -> None:
        """Stop delivering; events still queued for this listener are dropped."""
        self._bus._remove(self)
        self._closed = True
        self._queue.put(None)
        if wait and threading.current_thread() is not self._thread:
            self._thread.join(timeout=5)


class EventBus:
    def __init__(self) -> None:
        self._subs: list[Subscription] = []
        self._lock = threading.Lock()

    def subscribe(self, listener: Listener, *, name: str = "listener") -> Subscription:
        sub = Subscription(self, listener, name)
        with self._lock:
            self._subs.append(sub)
        return sub

    def publish(self, event: Event) -> None:
        with self._lock:
            subs = list(self._subs)
        for sub in subs:
            sub._deliver(event)

    def _remove(self, sub: Subscription) -> None:
        with self._lock:
            if sub in self._subs:
                self._subs.remove(sub)

    def close(self) -> None:
        with self._lock:
            subs = list(self._subs)
        for sub in subs:
            sub.close()
