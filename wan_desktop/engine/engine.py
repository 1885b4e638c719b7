"""The Engine: one object, one worker thread, commands in and events out.

Commands (submit, cancel, delete, retry, reorder, pause, resume, clear, ensure_model, unload) are
plain methods, safe from any thread, and return at once. Jobs run one at a time on the worker
thread; model downloads run beside it. Everything that happens is published as a typed event.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from wan_desktop.models import ModelError, ModelStore
from wan_desktop.models.cancel import CancelToken
from wan_desktop.models.errors import CancelledError
from wan_desktop.models.store import with_dev_mode
from wan_desktop.models.types import DownloadProgress

from . import libraries
from .context import JobContext
from .errors import EngineError, JobNotFoundError, JobStateError, StoreUnavailableError
from .events import (
    Alert,
    Event,
    EventBus,
    JobStage,
    JobStateChanged,
    Listener,
    MemorySample,
    ModelDownload,
    ModelDownloadFinished,
    ModelUnloaded,
    QueueChanged,
    Subscription,
)
from .failures import classify
from .hardware import HardwareProfile, MemoryMonitor, read_profile
from .jobs import FailureCategory, Job, JobFailure, JobKind, JobSpec, JobState, Priority
from .jobstore import JobStore, UnreadableJobError
from .lora import AppliedLora, LoraState
from .outputs import OutputStore
from .pipelines import registry
from .pipelines.base import LoadedModel, Pipeline
from .settings import EngineSettings
from .store_recovery import BACKUP_INTERVAL_S, StoreHealth
from .workers import WorkerInfo, WorkerState

log = logging.getLogger("wan_desktop.engine")

HOUSEKEEPING_S = 1.0
STORE_RETRY_S = 5.0
VRAM_ALERT_INTERVAL_S = 60.0
META_PAUSED = "queue_paused"


@dataclass
class _Running:
    job_id: str
    cancel: CancelToken
    reason: str = "cancelled"  # why the token was set: "cancelled" or "shutdown"


class Engine:
    def __init__(
        self,
        settings: EngineSettings | None = None,
        *,
        pipelines: Iterable[Pipeline] | None = None,
        hardware: HardwareProfile | None = None,
        start: bool = True,
    ) -> None:
        self.settings = settings or EngineSettings.from_env()
        self.bus = EventBus()
        self.store = JobStore(self.settings.db_path, backups_dir=self.settings.db_backups_dir)
        self.models = ModelStore(self.settings.models)
        self.outputs = OutputStore(self.settings.outputs_dir)
        self._pipelines: dict[tuple[JobKind, bool], Pipeline] = {}
        for p in pipelines or ():
            self._pipelines[(p.kind, p.mock)] = p
        self._pipelines_lock = threading.Lock()
        self._hardware = hardware
        self._hardware_lock = threading.Lock()
        self._monitor: MemoryMonitor | None = None
        self._cond = threading.Condition()
        self._paused = self.store.get_meta(META_PAUSED) == "1"
        self._running: _Running | None = None
        self._stopping = False
        self._unload_requested: str | None = None
        self._downloads: dict[tuple[str, str], tuple[Future[Path], CancelToken]] = {}
        self._download_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="wan-download")
        self._last_vram_alert = 0.0
        self.recovered = (
            []
            if self.store.read_only
            else self.store.recover_after_crash(requeue=self.settings.retry_interrupted)
        )
        self.store.backup_if_changed()
        self._worker = threading.Thread(target=self._work, name="wan-engine", daemon=True)
        self._sampler = threading.Thread(target=self._sample, name="wan-memory", daemon=True)
        self._started = False
        if start:
            self.start()

    def start(self) -> None:
        if self._started:
            return
        self._started = True
        health = self.store.health
        if not health.ok:
            # Said once listeners are attached (the app subscribes before it starts the engine).
            self.publish(
                Alert(
                    kind="job_store",
                    severity="critical",
                    message=health.message,
                    suggestions=(
                        "check the disk that holds the data folder",
                        "the damaged file is kept beside the store: keep it for a repair",
                    )
                    if health.moved_to is not None
                    else (),
                )
            )
        self._worker.start()
        self._sampler.start()

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

    # ------------------------------------------------------------------------------- commands

    def submit(self, spec: JobSpec) -> Job:
        """Validate, store and queue a job. Raises InvalidInputError with every bad field."""
        pipeline = self.pipeline(spec.kind)
        params = pipeline.validate(spec.params)
        desc = pipeline.describe(params)
        now = time.time()
        with self._cond:
            job = Job(
                id=uuid.uuid4().hex,
                kind=spec.kind,
                state=JobState.queued,
                params=params,
                created_at=now,
                updated_at=now,
                priority=spec.priority,
                position=self._position_for(spec.priority),
                mock=pipeline.mock,
                model_id=desc.model_id,
                variant=desc.variant,
                development=desc.development,
                label=desc.label,
                estimate=dict(desc.estimate),
                warnings=(*spec.warnings, *desc.warnings),
                client=spec.client,
            )
            self.store.insert(job)
            self._cond.notify_all()
        self.publish(JobStateChanged(job=job, previous=None))
        self.publish(QueueChanged(reason="submitted", job_ids=(job.id,), paused=self._paused))
        return job

    def _position_for(self, priority: Priority) -> float:
        """After every queued job of the same or higher priority, before the lower ones."""
        queued = self.store.queued()
        if not queued:
            return 1.0
        after = [j for j in queued if j.priority >= priority]
        before = [
            j
            for j in queued
            if j.priority < priority and (not after or j.position > after[-1].position)
        ]
        if not before:
            return queued[-1].position + 1.0
        upper = before[0].position
        lower = after[-1].position if after else upper - 2.0
        return (lower + upper) / 2.0

    def cancel(self, job_id: str) -> Job:
        with self._cond:
            job = self.get(job_id)
            if job.state is JobState.queued:
                job = self.store.update(
                    job_id,
                    state=JobState.cancelled,
                    finished_at=time.time(),
                    stage_message="cancelled",
                    eta_s=None,
                )
                self.publish(JobStateChanged(job=job, previous=JobState.queued))
                self.publish(
                    QueueChanged(reason="cancelled", job_ids=(job_id,), paused=self._paused)
                )
                return job
            if job.state.active:
                running = self._running
                if running is not None and running.job_id == job_id:
                    # Kept in case the app dies before the job stops (best effort: a full
                    # disk must not stop a cancel).
                    with contextlib.suppress(StoreUnavailableError):
                        self.store.request_cancel(job_id)
                    running.reason = "cancelled"
                    running.cancel.cancel()
                return job
        raise JobStateError(job_id, job.state, "cancel", "it has already finished")

    def delete(self, job_id: str, *, delete_outputs: bool = False) -> None:
        with self._cond:
            try:
                job = self.get(job_id)
            except UnreadableJobError:
                pass  # a record that cannot be read can always be deleted
            else:
                if not job.finished:
                    raise JobStateError(job_id, job.state, "delete", "cancel it first")
            self.store.delete(job_id)
        if delete_outputs:
            self.outputs.delete(job_id)
        self.publish(QueueChanged(reason="deleted", job_ids=(job_id,), paused=self._paused))

    def delete_output(self, job_id: str) -> int:
        """Remove a finished job's video, thumbnail and sidecar; the job stays in history."""
        job = self.get(job_id)
        if not job.finished:
            raise JobStateError(job_id, job.state, "delete the output of", "it is still running")
        freed = self.outputs.delete(job_id)
        self.store.update(job_id, output=None)
        self.publish(QueueChanged(reason="output_deleted", job_ids=(job_id,), paused=self._paused))
        return freed

    def retry(self, job_id: str) -> Job:
        """Queue a new job with the same parameters (and seed) as a finished one."""
        job = self.get(job_id)
        if not job.finished:
            raise JobStateError(job_id, job.state, "retry", "it has not finished")
        params = dict(job.params)
        new = self.submit(
            JobSpec(kind=job.kind, params=params, priority=job.priority, client=job.client)
        )
        return self.store.update(new.id, retry_of=job_id)

    def reorder(self, job_ids: Sequence[str]) -> list[Job]:
        """Put these queued jobs in this order; others keep their places. Returns the queue."""
        if len(set(job_ids)) != len(job_ids):
            raise EngineError("a job id appears twice in the new order")
        with self._cond:
            for jid in job_ids:
                job = self.get(jid)
                if job.state is not JobState.queued:
                    raise JobStateError(jid, job.state, "reorder", "only queued jobs move")
            slots = sorted(self.store.positions(job_ids).values())
            self.store.set_positions(dict(zip(job_ids, slots, strict=True)))
        self.publish(QueueChanged(reason="reordered", job_ids=tuple(job_ids), paused=self._paused))
        return self.store.queued()

    def clear_finished(self, states: Iterable[JobState] = (JobState.completed,)) -> int:
        wanted = set(states)
        if not wanted <= {s for s in JobState if s.finished}:
            raise EngineError("only finished jobs can be cleared")
        jobs = self.store.list_jobs(states=wanted)
        for job in jobs:
            self.store.delete(job.id)
        self.publish(
            QueueChanged(reason="cleared", job_ids=tuple(j.id for j in jobs), paused=self._paused)
        )
        return len(jobs)

    def pause(self) -> None:
        """The running job finishes; queued jobs wait until resume()."""
        with self._cond:
            self._paused = True
            self._save_paused("1")
        self.publish(QueueChanged(reason="paused", paused=True))

    def resume(self) -> None:
        with self._cond:
            self._paused = False
            self._save_paused("0")
            self._cond.notify_all()
        self.publish(QueueChanged(reason="resumed", paused=False))

    def _save_paused(self, value: str) -> None:
        try:
            self.store.set_meta(META_PAUSED, value)
        except StoreUnavailableError as exc:  # a full or read-only store: it holds until a restart
            log.warning("the queue's pause state is not saved: %s", exc)

    def set_dev_mode(self, on: bool) -> None:
        """Switch development mode (tiny random-weight variants) for jobs submitted from now on.

        Jobs already queued keep the variant and label they were described with at submit time.
        """
        with self._cond:
            if self.settings.dev_mode == on:
                return
            self.settings = replace(
                self.settings, models=replace(self.settings.models, dev_mode=on)
            )
            self.models = with_dev_mode(self.models, on)

    def unload(self) -> None:
        """Free loaded models (done on the worker thread, after the running job if any)."""
        with self._cond:
            self._unload_requested = "requested"
            self._cond.notify_all()

    # ------------------------------------------------------------------------------ downloads

    def ensure_model(self, model_id: str, variant: str | None = None) -> Future[Path]:
        """Download (if needed) beside the worker; progress comes as ModelDownload events."""
        spec, var = self.models.resolve(model_id, variant)
        key = (spec.id, var.name)
        with self._cond:
            existing = self._downloads.get(key)
            if existing is not None and not existing[0].done():
                return existing[0]
            token = CancelToken()
            future = self._download_pool.submit(self._download, spec.id, var.name, token)
            self._downloads[key] = (future, token)
            return future

    def cancel_download(self, model_id: str, variant: str | None = None) -> bool:
        spec, var = self.models.resolve(model_id, variant)
        entry = self._downloads.get((spec.id, var.name))
        if entry is None or entry[0].done():
            return False
        entry[1].cancel()
        return True

    def downloads(self) -> list[tuple[str, str]]:
        return [k for k, (f, _) in self._downloads.items() if not f.done()]

    def _download(self, model_id: str, variant: str, token: CancelToken) -> Path:
        def on_progress(p: DownloadProgress) -> None:
            self.publish(ModelDownload(progress=p))

        if self.models.resolve(model_id, variant)[1].development:
            # Built here with diffusers: never beside another thread's first import of it.
            with contextlib.suppress(ImportError):  # the build names what is missing
                libraries.load()
        try:
            path = self.models.ensure(model_id, variant, progress=on_progress, cancel=token)
        except ModelError as exc:
            self.publish(
                ModelDownloadFinished(
                    model_id=model_id, variant=variant, ok=False, error=str(exc), code=str(exc.code)
                )
            )
            raise
        self.publish(ModelDownloadFinished(model_id=model_id, variant=variant, ok=True))
        return path

    # ---------------------------------------------------------------------------------- worker

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

    # ------------------------------------------------------------------------------- shutdown

    def shutdown(self, *, timeout: float = 30.0) -> None:
        """Stop the worker; a running job is stopped at its next step and marked interrupted."""
        with self._cond:
            if self._stopping:
                return
            self._stopping = True
            if self._running is not None:
                self._running.reason = "shutdown"
                self._running.cancel.cancel()
            for _, token in self._downloads.values():
                token.cancel()
            self._cond.notify_all()
        if self._started:
            self._worker.join(timeout)
            self._sampler.join(timeout)
        self._download_pool.shutdown(wait=True, cancel_futures=True)
        with self._pipelines_lock:
            for p in self._pipelines.values():
                with contextlib.suppress(Exception):
                    p.unload("shutdown")
        self.bus.close()
        self.store.backup_if_changed()
        self.store.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
