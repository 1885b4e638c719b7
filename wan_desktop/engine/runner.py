"""The worker thread: one job at a time, how a job ends, idle unloads, and the memory sampler."""

from __future__ import annotations

import contextlib
import logging
import time

from wan_desktop.models.cancel import CancelToken
from wan_desktop.models.errors import CancelledError

from .context import JobContext
from .core import EngineCore, _Running
from .errors import EngineError, StoreUnavailableError
from .events import Alert, JobStage, JobStateChanged, MemorySample, ModelUnloaded, QueueChanged
from .failures import classify
from .jobs import FailureCategory, Job, JobFailure, JobState
from .store_recovery import BACKUP_INTERVAL_S

log = logging.getLogger("wan_desktop.engine")

HOUSEKEEPING_S = 1.0
STORE_RETRY_S = 5.0
VRAM_ALERT_INTERVAL_S = 60.0


class JobRunner(EngineCore):
    _last_vram_alert: float

    def _work(self) -> None:
        while True:
            with self._cond:
                if self._stopping:
                    return
                reason, self._unload_requested = self._unload_requested, None
                job = None if self._paused else self._next_job()
                if job is not None:
                    self._running = _Running(job.id, CancelToken(message="job cancelled"))
                elif reason is None:
                    self._cond.wait(HOUSEKEEPING_S)
            # Slow work happens outside the lock, so commands never wait for it.
            if reason is not None:
                self._unload_all(reason)
            if job is not None:
                try:
                    self._execute(job)
                except StoreUnavailableError as exc:
                    # The job's state cannot be recorded (a full or damaged data folder).
                    log.error("job %s could not be recorded: %s", job.id, exc)
                    self._settle(job.id)
                finally:
                    with self._cond:
                        self._running = None
            elif reason is None:
                self._unload_idle()
            self.store.backup_if_changed(min_interval_s=BACKUP_INTERVAL_S)

    def _settle(self, job_id: str) -> None:
        """After the store refused a job's write: once it takes writes again, end the job (a
        job that never started is simply run then). Waits, never spins; a stop leaves it for
        the next start's recovery."""
        running = self._running
        while True:
            with self._cond:
                if self._cond.wait_for(lambda: self._stopping, STORE_RETRY_S):
                    return
            try:
                current = self.store.get(job_id)
                if current is None or not current.state.active:
                    return
                if running is not None and running.cancel.cancelled:
                    state, failure = JobState.cancelled, None
                else:
                    state = JobState.failed
                    failure = JobFailure(
                        FailureCategory.storage_full,
                        "the data folder filled up while this job ran: its progress could not "
                        "be recorded",
                        (
                            "free space on the disk of the data folder (old videos, unused models)",
                            "then retry the job",
                        ),
                        stage=current.stage,
                    )
                ended = self.store.update(
                    job_id,
                    state=state,
                    finished_at=time.time(),
                    eta_s=None,
                    failure=failure,
                    stage=str(state),
                    stage_message=failure.message if failure else str(state),
                )
                self.store.forget_cancel(job_id)
            except StoreUnavailableError:
                continue
            self.publish(JobStateChanged(job=ended, previous=current.state))
            self.publish(QueueChanged(reason=str(state), job_ids=(job_id,), paused=self._paused))
            return

    def _next_job(self) -> Job | None:
        if self.store.read_only:
            return None  # a job could not record its progress
        try:
            return self.store.next_queued()
        except EngineError as exc:
            log.warning("cannot read the queue: %s", exc)
            return None

    def job_context(self, job: Job, cancel: CancelToken) -> JobContext:
        """What a running job reports through (its store row, events, outputs, cancellation)."""
        return JobContext(
            job=job,
            store=self.store,
            bus=self.bus,
            settings=self.settings,
            models=self.models,
            outputs=self.outputs.paths(job.id),
            cancel=cancel,
        )

    def _execute(self, job: Job) -> None:
        running = self._running
        assert running is not None
        pipeline = self.pipeline(job.kind, mock=job.mock)
        ctx = self.job_context(job, running.cancel)
        ctx.update(started_at=time.time(), progress=0.0, failure=None)
        ctx.set_state(JobState.preparing)
        try:
            self.outputs.check_space(pipeline.output_bytes(job.params))
            output = pipeline.run(ctx)
        except CancelledError:
            ctx.finish_stages()
            if running.reason == "shutdown":
                self._finish(
                    ctx,
                    JobState.interrupted,
                    JobFailure(
                        FailureCategory.interrupted,
                        "the app was closed while this job ran",
                        ("retry the job",),
                        stage=ctx.job.stage,
                    ),
                )
            else:
                self._finish(ctx, JobState.cancelled, None)
        except Exception as exc:
            ctx.finish_stages()
            failure = classify(exc, stage=ctx.job.stage)
            log.warning("job %s failed (%s): %s", job.id, failure.category, failure.message)
            ctx.log("error", f"{failure.message}\n{failure.detail or ''}".strip())
            self._finish(ctx, JobState.failed, failure)
        else:
            ctx.finish_stages()
            ctx.update(output=output)
            self._finish(ctx, JobState.completed, None)

    def _finish(self, ctx: JobContext, state: JobState, failure: JobFailure | None) -> None:
        stage = (
            "completed"
            if state is JobState.completed
            else ("failed" if state is JobState.failed else str(state))
        )
        progress = 1.0 if state is JobState.completed else ctx.job.progress
        previous = ctx.job.state
        ctx.update(
            state=state,
            finished_at=time.time(),
            eta_s=None,
            failure=failure,
            stage=stage,
            progress=progress,
            stage_message=failure.message if failure else str(state),
        )
        self.publish(
            JobStage(
                job_id=ctx.job_id,
                stage=stage,
                progress=progress,
                message=failure.message if failure else "",
            )
        )
        with contextlib.suppress(StoreUnavailableError):
            self.store.forget_cancel(ctx.job_id)
        self.publish(JobStateChanged(job=ctx.job, previous=previous))
        self.publish(QueueChanged(reason=str(state), job_ids=(ctx.job_id,), paused=self._paused))

    def _unload_idle(self) -> None:
        limit = self.settings.idle_unload_s
        if limit <= 0:
            return
        now = time.time()
        with self._pipelines_lock:
            pipes = list(self._pipelines.values())
        for p in pipes:
            m = p.loaded()
            if m is not None and now - m.last_used > limit:
                p.unload("idle")
                self.publish(ModelUnloaded(model_id=m.model_id, variant=m.variant, reason="idle"))

    def _unload_all(self, reason: str) -> None:
        with self._pipelines_lock:
            pipes = list(self._pipelines.values())
        for p in pipes:
            m = p.loaded()
            if m is not None:
                p.unload(reason)
                self.publish(ModelUnloaded(model_id=m.model_id, variant=m.variant, reason=reason))

    # --------------------------------------------------------------------------------- memory

    def _sample(self) -> None:
        while True:
            try:
                sample = self.memory_sample()
            except Exception:
                log.exception("memory sample failed")
            else:
                self.publish(sample)
                self._check_vram(sample)
            with self._cond:
                if self._cond.wait_for(lambda: self._stopping, self.settings.memory_sample_s):
                    return

    def _check_vram(self, sample: MemorySample) -> None:
        if sample.warning_level == "normal":
            return
        now = time.time()
        if now - self._last_vram_alert < VRAM_ALERT_INTERVAL_S:
            return
        self._last_vram_alert = now
        self.publish(
            Alert(
                kind="vram",
                severity=sample.warning_level,
                message=f"GPU memory is {sample.vram_percent:.0f}% full on {sample.device_name}",
                suggestions=(
                    "lower the resolution or frames of queued jobs",
                    "close other programs that use the GPU",
                    "unload idle models (Models → Unload)",
                ),
            )
        )
