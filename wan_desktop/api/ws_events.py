"""Engine events translated into ``/ws`` messages: which topic each goes to, its ``{type, data}``
envelope, and whether a slow client may miss it (progress samples; a later one replaces them).

``EventTranslator`` is the part of the ``Hub`` (``api/ws.py``) that runs on the bus's subscriber
thread; it remembers each running job's kind and label and the downloads' last progress.
"""

from __future__ import annotations

import json
from typing import Any

from wan_desktop.engine import (
    Alert,
    Engine,
    Event,
    JobKind,
    JobNotFoundError,
    JobStage,
    JobStateChanged,
    JobStep,
    JobWarning,
    MemorySample,
    ModelDownload,
    ModelLoaded,
    ModelUnloaded,
    QueueChanged,
)
from wan_desktop.engine.events import ModelDownloadFinished

from .mapping import Mapper, now_iso, percent, stage_name, step_message
from .stats import SystemStats

ALL = None  # a message for every client
_QUEUE_REASONS = {
    "submitted": "Task added to the queue",
    "cancelled": "Task cancelled",
    "deleted": "Task deleted",
    "reordered": "Queue reordered",
    "cleared": "Finished tasks cleared",
    "paused": "Queue paused",
    "resumed": "Queue resumed",
    "output_deleted": "Video deleted",
}
Outgoing = tuple[str | None, str, str, bool]  # topic (None = all), type, text, droppable


def envelope(kind: str, data: dict[str, Any]) -> str:
    return json.dumps({"type": kind, "data": {**data, "timestamp": now_iso()}}, default=str)


class EventTranslator:
    """Mixed into the Hub, which sets the attributes below."""

    engine: Engine
    mapper: Mapper
    stats: SystemStats
    downloads: dict[tuple[str, str], dict[str, Any]]
    _jobs: dict[str, tuple[JobKind, str | None]]

    def translate(self, event: Event) -> list[Outgoing]:
        if isinstance(event, JobStateChanged):
            job = event.job
            if job.finished:
                self._jobs.pop(job.id, None)  # its last stage event came before this one
            else:
                self._jobs[job.id] = (job.kind, job.label)
            return [
                (ALL, "task_update", envelope("task_update", self.mapper.task_update(job)), False)
            ]
        if isinstance(event, JobStep):
            pct = percent(event.progress)
            eta = None if event.eta_s is None else round(event.eta_s, 1)
            kind, label = self._job(event.job_id)
            message = step_message(kind, event.expert, event.step, event.total_steps)
            progress = {
                "task_id": event.job_id,
                "progress": pct,
                "status": "processing",
                "current_step": event.step,
                "total_steps": event.total_steps,
                "eta_seconds": eta,
                "step_time_seconds": round(event.step_time_s, 3),
                "expert": event.expert,
                "kind": str(kind),
            }
            update = {
                "task_id": event.job_id,
                "status": "processing",
                "progress": pct,
                "message": f"{message} [{label}]" if label else message,
                "current_step": event.step,
                "total_steps": event.total_steps,
                "eta_seconds": eta,
                "kind": str(kind),
            }
            if kind is JobKind.explainer and event.expert:
                progress["stage"] = update["stage"] = event.expert
            return [
                (ALL, "task_update", envelope("task_update", update), True),
                (
                    "generation_progress",
                    "generation_progress",
                    envelope("generation_progress", progress),
                    True,
                ),
            ]
        if isinstance(event, JobStage):
            kind, _ = self._job(event.job_id)
            data = {
                "task_id": event.job_id,
                "stage": stage_name(event.stage, kind),
                "engine_stage": event.stage,
                "kind": str(kind),
                "progress": percent(event.progress),
                "message": event.message or event.stage.replace("_", " "),
            }
            return [
                (
                    "generation_progress",
                    "detailed_generation_progress",
                    envelope("detailed_generation_progress", data),
                    False,
                )
            ]
        if isinstance(event, QueueChanged):
            data = {
                "message": _QUEUE_REASONS.get(event.reason, f"Queue changed: {event.reason}"),
                "reason": event.reason,
                "task_ids": list(event.job_ids),
                "paused": event.paused,
            }
            text = envelope("queue_update", data)
            return [(ALL, "queue_update", text, False)]
        if isinstance(event, ModelDownload):
            p = event.progress
            data = {
                "model_id": p.model_id,
                "variant": p.variant,
                "file": p.file,
                "bytes_done": p.bytes_done,
                "bytes_total": p.bytes_total,
                "speed_bps": round(p.speed_bps, 1),
                "eta_seconds": None if p.eta_s is None else round(p.eta_s, 1),
                "phase": str(p.phase),
                "files_done": p.files_done,
                "files_total": p.files_total,
                "task_id": event.job_id,
            }
            self.downloads[(p.model_id, p.variant)] = {**data, "active": True}
            text = envelope("download_progress_update", data)
            return [("download_progress", "download_progress_update", text, True)]
        if isinstance(event, ModelDownloadFinished):
            key = (event.model_id, event.variant)
            previous = self.downloads.get(key, {})
            data = {
                **previous,
                "model_id": event.model_id,
                "variant": event.variant,
                "phase": "complete" if event.ok else "failed",
                "error": event.error,
                "active": False,
            }
            self.downloads[key] = data
            status = {
                "model_id": event.model_id,
                "variant": event.variant,
                "status": "downloaded" if event.ok else "download_failed",
                "message": event.error or "download complete",
            }
            return [
                (
                    "download_progress",
                    "download_progress_update",
                    envelope("download_progress_update", data),
                    False,
                ),
                (
                    "model_status",
                    "model_status_update",
                    envelope("model_status_update", status),
                    False,
                ),
            ]
        if isinstance(event, ModelLoaded | ModelUnloaded):
            loaded = isinstance(event, ModelLoaded)
            status = {
                "model_id": event.model_id,
                "variant": event.variant,
                "status": "loaded" if loaded else "unloaded",
                "message": (
                    f"loaded with {event.strategy} in {event.seconds:.1f} s"
                    if isinstance(event, ModelLoaded)
                    else f"unloaded ({event.reason})"
                ),
            }
            return [
                (
                    "model_status",
                    "model_status_update",
                    envelope("model_status_update", status),
                    False,
                )
            ]
        if isinstance(event, Alert):
            data = {
                "alert_type": event.kind,
                "message": event.message,
                "severity": event.severity,
                "suggestions": list(event.suggestions),
            }
            return [("alerts", "alert", envelope("alert", data), False)]
        if isinstance(event, JobWarning):
            data = {
                "alert_type": event.code or "job_warning",
                "message": event.message,
                "severity": "warning",
                "suggestions": list(event.suggestions),
                "task_id": event.job_id,
            }
            return [("alerts", "alert", envelope("alert", data), False)]
        if isinstance(event, MemorySample):
            self.stats.record(event)
        return []

    def _job(self, job_id: str) -> tuple[JobKind, str | None]:
        """Kind and label of a job (read from the store for one submitted before we started)."""
        known = self._jobs.get(job_id)
        if known is None:
            try:
                job = self.engine.get(job_id)
            except JobNotFoundError:
                return JobKind.wan, None
            known = (job.kind, job.label)
            if not job.finished:
                self._jobs[job_id] = known
        return known
