"""The Engine: one object, one worker thread, commands in and events out.

Commands (submit, cancel, delete, retry, reorder, pause, resume, clear, ensure_model, unload) are
plain methods, safe from any thread, and return at once. Jobs run one at a time on the worker
thread (`runner.py`); model downloads run beside it. Everything that happens is published as
a typed event.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wan_desktop.models import ModelError, ModelStore
from wan_desktop.models.cancel import CancelToken
from wan_desktop.models.store import with_dev_mode
from wan_desktop.models.types import DownloadProgress

from . import libraries
from .errors import EngineError, InvalidInputError, JobStateError, StoreUnavailableError
from .estimate import FitVerdict, fit_verdict
from .events import (
    Alert,
    EventBus,
    JobStateChanged,
    MemorySample,
    ModelDownload,
    ModelDownloadFinished,
    QueueChanged,
)
from .face import EngineFace, EngineInfo, Lifecycle, LocalModels
from .hardware import HardwareProfile
from .job_rows import UnreadableJobError
from .jobs import Job, JobKind, JobSpec, JobState, Priority
from .jobstore import JobStore
from .outputs import OutputStore
from .pipelines.base import Pipeline
from .runner import JobRunner
from .settings import EngineSettings

log = logging.getLogger("wan_desktop.engine")

META_PAUSED = "queue_paused"


class Engine(JobRunner, Lifecycle):
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
        self._pipelines = {}
        for p in pipelines or ():
            self._pipelines[(p.kind, p.mock)] = p
        self._pipelines_lock = threading.Lock()
        self._hardware = hardware
        self._hardware_lock = threading.Lock()
        self._monitor = None
        self._cond = threading.Condition()
        self._paused = self.store.get_meta(META_PAUSED) == "1"
        self._running = None
        self._stopping = False
        self._unload_requested = None
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
        if start:
            self.start()

    def _begin(self) -> None:
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

    # ------------------------------------------------------------------------------- commands

    def submit(self, spec: JobSpec) -> Job:
        """Validate, store and queue a job. Raises InvalidInputError with every bad field."""
        pipeline = self.pipeline(spec.kind)
        params = pipeline.validate(spec.params)
        gpus = int(params.get("gpus") or 1)
        if gpus > self.gpus_per_machine():
            raise InvalidInputError({"gpus": self.gpus_refusal(gpus)})
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

    def gpus_per_machine(self) -> int:
        """The most GPUs one job can use here. This engine runs a job in its own process, on
        one GPU; a pool (``wan serve --pool``) splits one job across the GPUs of a machine."""
        return 1

    def gpus_refusal(self, gpus: int) -> str:
        """What to do about a job that asks for more GPUs than ``gpus_per_machine``."""
        return (
            f"is {gpus}; this server runs each job on one GPU: to split one job across "
            f"{gpus} GPUs of one machine, start it with wan serve --pool on a machine with "
            f"{gpus} GPUs, or use gpus 1"
        )

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

    # ------------------------------------------------------------ the app's interface (face.py)

    @property
    def info(self) -> EngineInfo:
        s = self.settings
        return EngineInfo(
            data_dir=s.data_dir,
            outputs_dir=s.outputs_dir,
            loras_dir=s.loras_dir,
            models_root=s.models.models_root,
            memory_sample_s=s.memory_sample_s,
            preview_every=s.preview_every,
            idle_unload_s=s.idle_unload_s,
            dev_mode=s.dev_mode,
            mock=s.mock,
            extra=s.extra,
        )

    def this_computer_load(self) -> MemorySample | None:
        """None: this engine's own samples are of this computer."""
        return None

    @property
    def models_view(self) -> LocalModels:
        return LocalModels(lambda: self.models, self.apply_quota)

    def validate(self, kind: JobKind, params: Mapping[str, Any]) -> None:
        """Raise InvalidInputError naming every bad field, as submit would."""
        self.pipeline(kind).validate(params)

    def fit(self, model_id: str, params: Mapping[str, Any]) -> FitVerdict:
        """Whether and how ``model_id`` fits this machine at ``params``. Blocking but cheap."""
        return fit_verdict(
            self.models, self.hardware, model_id, params, data_dir=self.settings.data_dir
        )

    def fetch_output(self, job: Job) -> Job:
        """A local job's files are already here."""
        return job

    def tune(self, *, idle_unload_s: float | None = None, preview_every: int | None = None) -> None:
        """Settings read at each housekeeping tick or job: they apply at once."""
        with self._cond:
            if idle_unload_s is not None:
                self.settings = replace(self.settings, idle_unload_s=idle_unload_s)
            if preview_every is not None:
                self.settings = replace(self.settings, preview_every=preview_every)

    def apply_quota(self, quota_bytes: int | None) -> None:
        """Use this models-folder quota from now on (the settings file keeps it for restarts)."""
        with self._cond:
            self.models.config = replace(self.models.config, quota_bytes=quota_bytes)
            self.settings = replace(
                self.settings, models=replace(self.settings.models, quota_bytes=quota_bytes)
            )

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


if TYPE_CHECKING:

    def _is_an_engine_face(engine: Engine) -> EngineFace:
        return engine  # mypy checks here that the local engine implements the interface
