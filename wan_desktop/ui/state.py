"""The app's observable state over one engine. Widgets read it and listen to its ``*_changed``
signals; commands go to the engine. Everything here runs on the GUI thread.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal, Slot
from PySide6.QtGui import QImage

from wan_desktop.engine import (
    Alert,
    EngineError,
    Job,
    JobKind,
    JobPreview,
    JobSpec,
    JobStage,
    JobState,
    JobStateChanged,
    JobStep,
    JobWarning,
    MemorySample,
    ModelDownload,
    ModelDownloadFinished,
    QueueChanged,
)
from wan_desktop.engine.face import THIS_COMPUTER, EngineFace, LinkChanged
from wan_desktop.engine.lora_library import LoraLibrary
from wan_desktop.engine.model_catalog import Catalog, ModelRow
from wan_desktop.engine.pipelines.base import LoadedModel
from wan_desktop.engine.settings import ENV_PREVIEW_EVERY
from wan_desktop.models import DiskUsage, DownloadProgress

from .background import Background
from .bridge import EngineBridge
from .config import AppSettings, SettingsStore
from .fit import FitCache

log = logging.getLogger("wan_desktop.ui")

HISTORY_LIMIT = 300
GUI_CLIENT = "desktop"


@dataclass(frozen=True)
class Notice:
    kind: str  # success, error, info, warning
    title: str
    message: str = ""
    suggestions: tuple[str, ...] = ()
    job_id: str | None = None
    sticky: bool = False


class Studio(QObject):
    jobs_changed = Signal()  # a job appeared or went, or the queue order changed
    job_updated = Signal(object)  # Job: its state, stage or progress changed
    paused_changed = Signal(bool)
    preview_changed = Signal(str)  # job id
    download_changed = Signal(object)  # DownloadProgress
    download_finished = Signal(object)  # ModelDownloadFinished
    models_changed = Signal()  # something on disk changed: refresh model statuses
    catalog_changed = Signal()  # ``catalog`` holds fresh statuses
    memory_changed = Signal(object)  # MemorySample
    loaded_changed = Signal()
    settings_changed = Signal(object)  # AppSettings
    dev_mode_changed = Signal(bool)
    notice = Signal(object)  # Notice
    use_settings = Signal(object)  # a Wan job's params, for the Generate panel
    explain_settings = Signal(object)  # an explainer job's params, for the Explainer page
    navigate = Signal(str)  # page name
    link_changed = Signal(object)  # LinkChanged: the link to a server's engine
    engine_requested = Signal(object)  # EngineChoice: drive this engine from now on

    def __init__(
        self,
        engine: EngineFace,
        settings_store: SettingsStore,
        settings: AppSettings,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.engine = engine
        self.settings_store = settings_store
        self.settings = settings
        self.background = Background(self)
        self.bridge = EngineBridge(engine, self)
        self.jobs: dict[str, Job] = {}
        self.previews: dict[str, tuple[int, QImage]] = {}
        self.downloads: dict[tuple[str, str], DownloadProgress] = {}
        self._download_jobs: dict[tuple[str, str], str] = {}  # downloads a job started
        self.memory: MemorySample | None = None
        self.loaded: list[LoadedModel] = []
        self.paused = engine.paused
        self.link: LinkChanged | None = None  # None: no word yet (a local engine never has one)
        self.catalog: list[ModelRow] = []
        self.disk: DiskUsage | None = None
        self.catalog_loaded = False
        self.loras = LoraLibrary(engine.info.loras_dir)
        self.fits = FitCache(engine)
        self._scanning = False
        self._rescan = False
        self._jobs_dirty = False
        self.models_changed.connect(self.refresh_catalog)
        b = self.bridge
        b.job_changed.connect(self._on_job_changed)
        b.job_stage.connect(self._on_stage)
        b.job_step.connect(self._on_step)
        b.job_preview.connect(self._on_preview)
        b.job_warning.connect(self._on_warning)
        b.queue_changed.connect(self._on_queue_changed)
        b.download_progress.connect(self._on_download)
        b.download_finished.connect(self._on_download_finished)
        b.memory_sampled.connect(self._on_memory)
        b.model_loaded.connect(self._on_loaded_changed)
        b.model_unloaded.connect(self._on_loaded_changed)
        b.alert.connect(self._on_alert)
        b.link_changed.connect(self._on_link)
        self.reload_jobs()
        self.refresh_catalog()

    # ---------------------------------------------------------------------------- queries

    @property
    def dev_mode(self) -> bool:
        return self.engine.info.dev_mode

    @property
    def mock(self) -> bool:
        return self.engine.info.mock

    def engine_status(self) -> tuple[str, str]:
        """Which engine the app is on and how its link is, for the status bar: (text, kind)."""
        where = self.engine.info.location
        link = self.link
        if link is None:
            if where == THIS_COMPUTER:
                return "Engine: this computer", "success"
            return f"Engine: {where}  ·  connecting…", "warning"
        if link.state == "up":
            return f"Engine: {where}  ·  connected", "success"
        if link.state == "reconnecting":
            return f"Engine: {where}  ·  reconnecting…", "warning"
        return f"Engine: {where}  ·  link down", "danger"

    def queued(self) -> list[Job]:
        return sorted(
            (j for j in self.jobs.values() if j.state is JobState.queued),
            key=lambda j: j.position,
        )

    def active(self) -> list[Job]:
        return sorted(
            (j for j in self.jobs.values() if j.state.active), key=lambda j: j.started_at or 0
        )

    def finished(self) -> list[Job]:
        return sorted(
            (j for j in self.jobs.values() if j.finished),
            key=lambda j: j.finished_at or j.created_at,
            reverse=True,
        )

    def outputs(self, kind: JobKind | None = None) -> list[Job]:
        return [
            j
            for j in self.finished()
            if j.state is JobState.completed and j.output and kind in (None, j.kind)
        ]

    # --------------------------------------------------------------------------- commands

    def submit(self, params: Mapping[str, Any], kind: JobKind = JobKind.wan) -> Job:
        """Queue a job and wait for the engine (blocking: scripts and tests; the forms use
        ``submit_later``); raises InvalidInputError naming every bad field."""
        job = self.engine.submit(JobSpec(kind=kind, params=dict(params), client=GUI_CLIENT))
        self._queued(job)
        return job

    def submit_later(
        self,
        params: Mapping[str, Any],
        kind: JobKind,
        *,
        on_done: Callable[[Job], None],
        on_error: Callable[[BaseException], None],
    ) -> Future[Job]:
        """Queue a job off the GUI thread, whichever the engine: a server's submit sends the
        form's image and LoRAs first, which may take minutes over a slow link. ``on_done``
        (the queued job, already in ``jobs``) or ``on_error`` run on the GUI thread."""

        def done(job: Job) -> None:
            self._queued(job)
            on_done(job)

        spec = JobSpec(kind=kind, params=dict(params), client=GUI_CLIENT)
        return self.background.run(self.engine.submit, spec, on_done=done, on_error=on_error)

    def _queued(self, job: Job) -> None:
        if job.id not in self.jobs:  # its events may have come first, and are newer
            self._store(job)
        self.jobs_changed.emit()

    def reload_jobs(self) -> None:
        jobs = self.engine.jobs(limit=HISTORY_LIMIT)
        active = self.engine.jobs(states=[JobState.queued, *(s for s in JobState if s.active)])
        self.jobs = {j.id: j for j in (*jobs, *active)}
        self.jobs_changed.emit()

    def save_settings(self, settings: AppSettings) -> None:
        self.settings_store.save(settings)
        old, self.settings = self.settings, settings
        if old.idle_unload_min != settings.idle_unload_min:
            # Read by the worker at each housekeeping tick: applies at once.
            self.engine.tune(idle_unload_s=settings.idle_unload_min * 60.0)
        if old.preview_every != settings.preview_every and not os.environ.get(ENV_PREVIEW_EVERY):
            # Read at each job (the preview decoder is fitted when a model loads).
            self.engine.tune(preview_every=settings.preview_every)
        self.settings_changed.emit(settings)

    def remember(self, kind: JobKind, params: Mapping[str, Any]) -> None:
        """Keep a form's last job for the next start (a failure to save only loses that)."""
        kept = {k: v for k, v in params.items() if k != "seed"}  # the next video: a new seed
        last = {**self.settings.last_params, str(kind): kept}
        try:
            self.save_settings(dataclasses.replace(self.settings, last_params=last))
        except (OSError, ValueError) as exc:
            log.warning("the form's last settings were not saved: %s", exc)

    def set_dev_mode(self, on: bool) -> None:
        self.engine.set_dev_mode(on)
        if self.settings.dev_mode != on:
            self.save_settings(dataclasses.replace(self.settings, dev_mode=on))
        self.dev_mode_changed.emit(on)
        self.models_changed.emit()

    @Slot()
    def refresh_catalog(self) -> None:
        """Re-read every model's status off the GUI thread; ``catalog_changed`` when done."""
        if self._scanning:
            self._rescan = True
            return
        self._scanning = True
        self.background.run(
            self.engine.models_view.catalog,
            on_done=self._catalog_done,
            on_error=self._catalog_failed,
        )

    def _catalog_done(self, found: Catalog) -> None:
        self._scanning = False
        self.catalog = list(found.rows)
        self.disk = found.disk
        self.catalog_loaded = True
        self.fits.clear()  # a model on disk gives its own figures
        self.catalog_changed.emit()
        if self._rescan:
            self._rescan = False
            self.refresh_catalog()

    def _catalog_failed(self, exc: BaseException) -> None:
        self._scanning = False
        self.post(Notice("error", "Could not read the models folder", str(exc), sticky=True))

    def row(self, model_id: str, variant: str | None = None) -> ModelRow | None:
        for r in self.catalog:
            if r.spec.id == model_id and (variant is None or r.variant.name == variant):
                return r
        return None

    def usable_rows(self) -> list[ModelRow]:
        """One row per model: the variant a job would use now."""
        out = []
        view = self.engine.models_view
        for spec in view.manifest:
            var = view.resolve(spec.id)[1]
            row = self.row(spec.id, var.name)
            if row is not None:
                out.append(row)
        return out

    def post(self, notice: Notice) -> None:
        self.notice.emit(notice)

    def job_command(self, name: str, job_id: str) -> None:
        """Cancel, retry or delete a job from a card; a refusal becomes an error notice."""
        try:
            if name == "cancel":
                self.engine.cancel(job_id)
            elif name == "retry":
                self.engine.retry(job_id)
                self.reload_jobs()
            elif name == "delete":
                self.engine.delete(job_id)
            else:
                raise ValueError(f"unknown job command {name!r}")
        except EngineError as exc:
            self.post(Notice("error", f"Could not {name} the job", str(exc)))

    def close(self) -> None:
        self.bridge.close()
        self.background.shutdown()

    # ----------------------------------------------------------------------------- events

    def _jobs_changed_soon(self) -> None:
        """``jobs_changed`` once per loop turn: ten jobs queued at once rebuild the lists once."""
        if not self._jobs_dirty:
            self._jobs_dirty = True
            QTimer.singleShot(0, self._emit_jobs_changed)

    @Slot()
    def _emit_jobs_changed(self) -> None:
        self._jobs_dirty = False
        self.jobs_changed.emit()

    def _store(self, job: Job) -> None:
        self.jobs[job.id] = job
        self.job_updated.emit(job)

    @Slot(object)
    def _on_job_changed(self, event: JobStateChanged) -> None:
        job = event.job
        known = self.jobs.get(job.id)
        self._store(job)
        # The lists only change when a job moves between waiting, running and finished;
        # steps inside "running" (loading, encoding…) are plain updates of its card.
        if known is None or _phase(known.state) != _phase(job.state):
            self._jobs_changed_soon()
        if job.state not in (JobState.queued, JobState.preparing):
            self._end_job_downloads(job.id, ok=job.state is not JobState.failed)
        if job.state is JobState.completed and event.previous is not JobState.completed:
            self.previews.pop(job.id, None)
            self.post(
                Notice(
                    "success",
                    "Explainer ready" if job.kind is JobKind.explainer else "Video ready",
                    _short(job.prompt) + (f"  ·  {job.label}" if job.label else ""),
                    job_id=job.id,
                )
            )
        elif job.state is JobState.failed and job.failure is not None:
            self.post(
                Notice(
                    "error",
                    "Explainer failed" if job.kind is JobKind.explainer else "Generation failed",
                    job.failure.message,
                    job.failure.suggestions,
                    job_id=job.id,
                    sticky=True,
                )
            )

    @Slot(object)
    def _on_stage(self, event: JobStage) -> None:
        job = self.jobs.get(event.job_id)
        if job is not None and not job.finished:
            changes: dict[str, Any] = {}
            if job.kind is JobKind.explainer and event.stage != job.stage:
                # An explainer counts scenes per stage: the last stage's count is not this one's.
                changes = {"step": None, "total_steps": None}
            self._store(
                dataclasses.replace(
                    job,
                    stage=event.stage,
                    stage_message=event.message,
                    progress=max(job.progress, event.progress),
                    **changes,
                )
            )

    @Slot(object)
    def _on_step(self, event: JobStep) -> None:
        job = self.jobs.get(event.job_id)
        if job is not None and not job.finished:
            self._store(
                dataclasses.replace(
                    job,
                    step=event.step,
                    total_steps=event.total_steps,
                    progress=event.progress,
                    eta_s=event.eta_s,
                )
            )

    @Slot(object)
    def _on_preview(self, event: JobPreview) -> None:
        image = QImage.fromData(event.jpeg)
        if not image.isNull():
            self.previews[event.job_id] = (event.step, image)
            self.preview_changed.emit(event.job_id)

    @Slot(object)
    def _on_warning(self, event: JobWarning) -> None:
        if event.job_id is None:
            self.post(Notice("warning", "Warning", event.message, event.suggestions))

    @Slot(object)
    def _on_queue_changed(self, event: QueueChanged) -> None:
        if event.paused != self.paused:
            self.paused = event.paused
            self.paused_changed.emit(self.paused)
        if event.reason in ("deleted", "cleared"):
            for jid in event.job_ids:
                self.jobs.pop(jid, None)
                self.previews.pop(jid, None)
            self._jobs_changed_soon()
        elif event.reason in ("reordered", "output_deleted"):
            ids = set(event.job_ids)
            try:
                fresh = [self.engine.get(jid) for jid in ids if jid in self.jobs]
                if event.reason == "reordered":
                    fresh += [j for j in self.engine.queue() if j.id not in ids]
            except EngineError as exc:  # gone meanwhile, or a server's link dropped
                log.info("the queue was not reread: %s", exc)
                return
            for job in fresh:
                self.jobs[job.id] = job
            self._jobs_changed_soon()

    @Slot(object)
    def _on_download(self, event: ModelDownload) -> None:
        p = event.progress
        key = (p.model_id, p.variant)
        self.downloads[key] = p
        if event.job_id is not None:
            self._download_jobs[key] = event.job_id
        self.download_changed.emit(p)

    def _end_job_downloads(self, job_id: str, *, ok: bool) -> None:
        """A job's own download ends with no finished event: when the job moves on."""
        done = [k for k, jid in self._download_jobs.items() if jid == job_id]
        for key in done:
            del self._download_jobs[key]
            if self.downloads.pop(key, None) is not None:
                self.download_finished.emit(
                    ModelDownloadFinished(model_id=key[0], variant=key[1], ok=ok)
                )
        if done:
            self.models_changed.emit()

    @Slot(object)
    def _on_download_finished(self, event: ModelDownloadFinished) -> None:
        self.downloads.pop((event.model_id, event.variant), None)
        self._download_jobs.pop((event.model_id, event.variant), None)
        self.download_finished.emit(event)
        self.models_changed.emit()
        if event.ok:
            self.post(Notice("success", "Model ready", f"{event.model_id} ({event.variant})"))
        elif event.code != "CANCELLED":
            self.post(
                Notice("error", "Download failed", event.error or "unknown error", sticky=True)
            )

    @Slot(object)
    def _on_memory(self, sample: MemorySample) -> None:
        self.memory = sample
        self.memory_changed.emit(sample)

    @Slot(object)
    def _on_loaded_changed(self, _event: object) -> None:
        self.loaded = self.engine.loaded_models()
        self.loaded_changed.emit()

    @Slot(object)
    def _on_link(self, event: LinkChanged) -> None:
        before, self.link = self.link, event
        if event.state == "up":
            # Whatever happened while the link was down, the server's state is the truth now.
            try:
                self.reload_jobs()
            except EngineError as exc:  # down again already: the next "up" reloads
                log.info("the jobs were not reloaded: %s", exc)
            if self.engine.paused != self.paused:
                self.paused = self.engine.paused
                self.paused_changed.emit(self.paused)
            self._on_loaded_changed(event)
            self.refresh_catalog()
            if before is not None and before.state == "down":
                self.post(Notice("success", "Server link restored", self.engine.info.location))
        elif event.state == "down" and (before is None or before.state != "down"):
            suggestions = (event.what_to_do,) if event.what_to_do else ()
            self.post(Notice("error", "Server link down", event.reason, suggestions))
        self.link_changed.emit(event)

    @Slot(object)
    def _on_alert(self, alert: Alert) -> None:
        kind = "error" if alert.severity == "critical" else "warning"
        title = "Job history" if alert.kind == "job_store" else "Memory"
        self.post(Notice(kind, title, alert.message, alert.suggestions))


def _phase(state: JobState) -> str:
    return "queued" if state is JobState.queued else ("active" if state.active else "finished")


def _short(text: str, n: int = 80) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"
