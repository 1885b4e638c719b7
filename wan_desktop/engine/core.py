"""What every part of the engine reads: its state, events, hardware, pipelines and queries.

``Engine.__init__`` (``engine.py``) sets the state declared here; the worker loop (``runner.py``)
builds on it, and the Engine's commands on both.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from wan_desktop.models import ModelStore
from wan_desktop.models.cancel import CancelToken

from .errors import JobNotFoundError
from .events import Event, EventBus, Listener, MemorySample, Subscription
from .hardware import HardwareProfile, MemoryMonitor, read_profile
from .jobs import Job, JobKind, JobState
from .jobstore import JobStore
from .lora import AppliedLora, LoraState
from .outputs import OutputStore
from .pipelines import registry
from .pipelines.base import LoadedModel, Pipeline
from .settings import EngineSettings
from .store_recovery import StoreHealth
from .workers import WorkerInfo, WorkerState


@dataclass
class _Running:
    job_id: str
    cancel: CancelToken
    reason: str = "cancelled"  # why the token was set: "cancelled" or "shutdown"


class EngineCore:
    settings: EngineSettings
    bus: EventBus
    store: JobStore
    models: ModelStore
    outputs: OutputStore
    _pipelines: dict[tuple[JobKind, bool], Pipeline]
    _pipelines_lock: threading.Lock
    _hardware: HardwareProfile | None
    _hardware_lock: threading.Lock
    _monitor: MemoryMonitor | None
    _cond: threading.Condition
    _paused: bool
    _running: _Running | None
    _stopping: bool
    _unload_requested: str | None

    @property
    def store_health(self) -> StoreHealth:
        return self.store.health

    # ------------------------------------------------------------------------------- events

    def subscribe(self, listener: Listener, *, name: str = "listener") -> Subscription:
        return self.bus.subscribe(listener, name=name)

    def publish(self, event: Event) -> None:
        """Hand ``event`` to every subscriber (from any thread)."""
        self.bus.publish(event)

    # ------------------------------------------------------------------------------ hardware

    @property
    def hardware(self) -> HardwareProfile:
        """Read once (this may import torch: the first call can take a second)."""
        with self._hardware_lock:
            if self._hardware is None:
                self._hardware = read_profile(self.settings.device)
            return self._hardware

    def memory_sample(self) -> MemorySample:
        if self._monitor is None:
            self._monitor = MemoryMonitor(self.hardware)
        return self._monitor.sample()

    # ------------------------------------------------------------------------------ pipelines

    def pipeline(self, kind: JobKind, *, mock: bool | None = None) -> Pipeline:
        use_mock = self.settings.mock if mock is None else mock
        use_mock = use_mock and kind is JobKind.wan
        key = (kind, use_mock)
        with self._pipelines_lock:
            if key not in self._pipelines:
                self._pipelines[key] = self._make_pipeline(kind, use_mock)
            return self._pipelines[key]

    def _make_pipeline(self, kind: JobKind, mock: bool) -> Pipeline:
        return registry.create(kind, self, mock=mock)

    def loaded_models(self) -> list[LoadedModel]:
        with self._pipelines_lock:
            pipes = list(self._pipelines.values())
        return [m for p in pipes if (m := p.loaded()) is not None]

    def lora_state(self) -> LoraState:
        """The LoRAs held and switched on in the loaded models (read-only; loads nothing)."""
        with self._pipelines_lock:
            pipes = list(self._pipelines.values())
        loaded: dict[str, tuple[str, ...]] = {}
        applied: list[AppliedLora] = []
        for p in pipes:
            state = p.lora_state()
            if state is not None:
                loaded.update(state.loaded)
                applied.extend(state.applied)
        return LoraState(loaded=loaded, applied=tuple(applied))

    def workers(self) -> list[WorkerInfo]:
        """Who runs jobs: this engine's one worker thread (a pool engine lists its actors)."""
        import platform

        hw = self.hardware
        loaded = self.loaded_models()
        running = self.running_job_id
        return [
            WorkerInfo(
                name="local",
                node=platform.node(),
                device=hw.device,
                gpu_name=hw.gpu_name,
                vram_total_mb=hw.vram_total_mb,
                state=WorkerState.busy if running else WorkerState.idle,
                loaded_model=f"{loaded[0].model_id} ({loaded[0].variant})" if loaded else None,
                current_job=running,
            )
        ]

    # -------------------------------------------------------------------------------- queries

    def get(self, job_id: str) -> Job:
        job = self.store.get(job_id)
        if job is None:
            raise JobNotFoundError(job_id)
        return job

    def jobs(
        self,
        *,
        states: Iterable[JobState] | None = None,
        kinds: Iterable[JobKind] | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[Job]:
        """Jobs, newest first."""
        return self.store.list_jobs(states=states, kinds=kinds, limit=limit, offset=offset)

    def queue(self) -> list[Job]:
        """Queued jobs in the order they will run."""
        return self.store.queued()

    def counts(self) -> dict[JobState, int]:
        return self.store.counts_by_state()

    def logs(self, job_id: str) -> list[dict[str, Any]]:
        self.get(job_id)
        return self.store.logs(job_id)

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def running_job_id(self) -> str | None:
        r = self._running
        return r.job_id if r else None
