"""The handle a running job reports through. Every call is made on the worker thread."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from wan_desktop.models import ModelError, ModelStore
from wan_desktop.models.cancel import CancelToken
from wan_desktop.models.errors import CancelledError, ErrorCode
from wan_desktop.models.types import DownloadProgress

from .errors import JobFailedError
from .events import (
    EventBus,
    JobLog,
    JobPreview,
    JobStage,
    JobStateChanged,
    JobStep,
    JobWarning,
    ModelDownload,
)
from .jobs import FailureCategory, Job, JobState
from .jobstore import JobStore
from .outputs import OutputPaths, jpeg_bytes
from .settings import EngineSettings

# Progress shares of a Wan job's phases; the denoising steps fill the middle.
STEPS_SPAN = (0.10, 0.90)


class StepTimer:
    """Measured step times per expert; the ETA sums each expert's remaining steps × its median."""

    def __init__(self) -> None:
        self.times: dict[str | None, list[float]] = {}
        self._last: float | None = None

    def start(self) -> None:
        self._last = time.monotonic()

    def lap(self, expert: str | None) -> float:
        now = time.monotonic()
        dt = now - (self._last if self._last is not None else now)
        self._last = now
        self.times.setdefault(expert, []).append(dt)
        return dt

    def eta(self, remaining: Mapping[str | None, int]) -> float | None:
        measured = sum(len(v) for v in self.times.values())
        if measured < 2:
            return None  # the first step carries warm-up; wait for a second one
        every = [t for v in self.times.values() for t in v]
        overall = statistics.median(every)
        total = 0.0
        for expert, n in remaining.items():
            own = self.times.get(expert)
            total += n * (statistics.median(own) if own else overall)
        return total


class JobContext:
    def __init__(
        self,
        *,
        job: Job,
        store: JobStore,
        bus: EventBus,
        settings: EngineSettings,
        models: ModelStore,
        outputs: OutputPaths,
        cancel: CancelToken,
        on_change: Callable[[Job], None] | None = None,
    ) -> None:
        self._job = job
        self._store = store
        self._bus = bus
        self.settings = settings
        self.models = models
        self.outputs = outputs
        self.cancel_token = cancel
        self._on_change = on_change
        self.timer = StepTimer()
        self.stage_times: dict[str, float] = {}
        self._stage_started: tuple[str, float] | None = None

    # ----------------------------------------------------------------------------- state

    @property
    def job(self) -> Job:
        return self._job

    @property
    def job_id(self) -> str:
        return self._job.id

    @property
    def params(self) -> Mapping[str, Any]:
        return self._job.params

    def update(self, **changes: Any) -> Job:
        self._job = self._store.update(self._job.id, **changes)
        if self._on_change is not None:
            self._on_change(self._job)
        return self._job

    def set_state(self, state: JobState) -> None:
        previous = self._job.state
        if previous is state:
            return
        self.update(state=state)
        self._bus.publish(JobStateChanged(job=self._job, previous=previous))

    def stage(self, name: str, progress: float | None = None, message: str = "") -> None:
        """Announce that a stage starts (and the previous one ended)."""
        self.check_cancelled()
        now = time.monotonic()
        done = self._job.stages_completed
        if self._stage_started is not None:
            prev, t0 = self._stage_started
            self.stage_times[prev] = self.stage_times.get(prev, 0.0) + now - t0
            if prev not in done:
                done = (*done, prev)
        self._stage_started = (name, now)
        progress = self._job.progress if progress is None else max(self._job.progress, progress)
        self.update(stage=name, stage_message=message, progress=progress, stages_completed=done)
        self._bus.publish(
            JobStage(job_id=self.job_id, stage=name, progress=progress, message=message)
        )
        self.log("info", f"stage {name}: {message}" if message else f"stage {name}")

    def finish_stages(self) -> None:
        if self._stage_started is not None:
            prev, t0 = self._stage_started
            self.stage_times[prev] = self.stage_times.get(prev, 0.0) + time.monotonic() - t0
            if prev not in self._job.stages_completed:
                self.update(stages_completed=(*self._job.stages_completed, prev))
            self._stage_started = None

    def step(
        self,
        done: int,
        total: int,
        *,
        expert: str | None = None,
        remaining: Mapping[str | None, int] | None = None,
        span: tuple[float, float] = STEPS_SPAN,
    ) -> None:
        """One denoising step finished (``done`` of ``total``). Checks cancellation."""
        dt = self.timer.lap(expert)
        eta = self.timer.eta(remaining if remaining is not None else {expert: total - done})
        progress = span[0] + (span[1] - span[0]) * done / max(1, total)
        self.update(step=done, total_steps=total, progress=progress, eta_s=eta)
        self._bus.publish(
            JobStep(
                job_id=self.job_id,
                step=done,
                total_steps=total,
                progress=progress,
                eta_s=eta,
                step_time_s=dt,
                expert=expert,
            )
        )
        self.check_cancelled()

    def preview(self, step: int, rgb: Any) -> None:
        data, w, h = jpeg_bytes(rgb)
        self._bus.publish(JobPreview(job_id=self.job_id, step=step, width=w, height=h, jpeg=data))

    def warn(
        self, message: str, code: str | None = None, suggestions: tuple[str, ...] = ()
    ) -> None:
        self.update(warnings=(*self._job.warnings, message))
        self._bus.publish(
            JobWarning(job_id=self.job_id, message=message, code=code, suggestions=suggestions)
        )
        self.log("warning", message)

    def log(self, level: str, message: str) -> None:
        self._store.add_log(self.job_id, level, message)
        self._bus.publish(JobLog(job_id=self.job_id, level=level, message=message))

    # --------------------------------------------------------------------------- cancellation

    @property
    def cancelled(self) -> bool:
        return self.cancel_token.cancelled

    def check_cancelled(self) -> None:
        """Raise ``CancelledError`` (``models.errors``) once the job is cancelled."""
        self.cancel_token.raise_if_cancelled()

    # ---------------------------------------------------------------------------------- models

    def ensure_model(self, model_id: str, variant: str | None) -> Path:
        """The model's folder, downloading it first (with progress events) if needed."""

        def on_progress(p: DownloadProgress) -> None:
            self._bus.publish(ModelDownload(progress=p, job_id=self.job_id))

        try:
            return self.models.ensure(
                model_id, variant, progress=on_progress, cancel=self.cancel_token
            )
        except CancelledError:
            raise  # the job's own token: the engine finishes it as cancelled
        except ModelError as exc:
            category = (
                FailureCategory.model_unavailable
                if exc.code
                in (
                    ErrorCode.model_not_found,
                    ErrorCode.variant_not_found,
                    ErrorCode.missing_dependency,
                )
                else FailureCategory.download_failed
            )
            suggestions = tuple(
                s
                for s in (exc.fix, "check your connection and disk space, then retry the job")
                if s
            )
            raise JobFailedError(
                category,
                f"the model could not be prepared: {exc.message}",
                suggestions,
                code=str(exc.code),
            ) from exc
