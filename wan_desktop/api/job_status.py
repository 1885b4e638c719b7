"""Jobs in the words of the explainer-video API (``/api/v1/videos`` and ``/api/v1/jobs``).

These routes serve every kind of job (explainer and Wan alike: one queue), with the statuses
``queued|processing|completed|failed|cancelled`` (the React routes say ``pending`` for queued).
Where each field comes from is documented in docs/explainer.md ("What the API layer reads").
Pure functions over frozen jobs.
"""

from __future__ import annotations

import time
from typing import Any

from wan_desktop.engine import Job, JobKind, JobState

from .mapping import STATUS as REACT_STATUS
from .mapping import iso
from .settings import API_BASE

# The React routes' statuses, with "queued" for their "pending".
STATUS = {state: "queued" if v == "pending" else v for state, v in REACT_STATUS.items()}
STATUSES = ("queued", "processing", "completed", "failed", "cancelled")
STATES_OF = {status: frozenset(s for s, v in STATUS.items() if v == status) for status in STATUSES}


def video_path(job_id: str, what: str) -> str:
    return f"{API_BASE}/videos/jobs/{job_id}/{what}"


def current_stage(job: Job) -> str:
    if job.state is JobState.queued:
        return "queued"
    return job.stage or str(job.state)


def estimated_completion(job: Job, now: float | None = None) -> str | None:
    """Queued: submit time + the estimate; running: now + the measured time left; done: when."""
    minutes = job.estimate.get("minutes")
    seconds = float(minutes) * 60 if isinstance(minutes, int | float) else None
    if job.state is JobState.queued:
        return iso(job.created_at + seconds) if seconds is not None else None
    if job.state.active:
        if job.eta_s is not None:
            return iso((now or time.time()) + job.eta_s)
        if job.started_at is not None and seconds is not None:
            return iso(job.started_at + seconds)
        return None
    return iso(job.finished_at) if job.state is JobState.completed else None


def processing_seconds(job: Job, now: float | None = None) -> float | None:
    if job.started_at is None:
        return None
    end = job.finished_at if job.finished_at is not None else (now or time.time())
    return round(max(0.0, end - job.started_at), 2)


def stages_completed(job: Job) -> list[str]:
    done = list(job.stages_completed)
    if done and job.finished and job.state is not JobState.completed:
        # The engine closes the stage a job stopped in (for its timings); it did not complete.
        done.pop()
    return done


def progress(job: Job, now: float | None = None) -> dict[str, Any]:
    return {
        "percentage": round(max(0.0, min(1.0, job.progress)) * 100, 1),
        "current_stage": current_stage(job),
        "stages_completed": stages_completed(job),
        "estimated_completion": estimated_completion(job, now),
        "processing_time_seconds": processing_seconds(job, now),
        "message": job.stage_message,
    }


def error(job: Job) -> dict[str, Any] | None:
    f = job.failure
    if f is None:
        return None
    return {
        "error_code": f.code or str(f.category).upper(),
        "error_message": f.message,
        "stage": f.stage,
        "category": str(f.category),
        "suggestions": list(f.suggestions),
    }


def status(job: Job, now: float | None = None) -> dict[str, Any]:
    """The ``GET /videos/jobs/{id}/status`` answer (also each item of ``GET /jobs``)."""
    now = now or time.time()
    answer: dict[str, Any] = {
        "job_id": job.id,
        "status": STATUS[job.state],
        "progress": progress(job, now),
        "created_at": iso(job.created_at),
        "updated_at": iso(job.updated_at or job.created_at),
        "completed_at": iso(job.finished_at) if job.finished else None,
        # Additions (the contract allows extra fields).
        "kind": str(job.kind),
        "title": job.prompt,
        "priority": job.priority.name,
        "engine_state": str(job.state),
        "label": job.label,
        "mock": job.mock,
    }
    err = error(job)
    if err is not None:
        answer["error"] = err
    return answer


def links(job: Job) -> dict[str, str | None]:
    """Where a finished job's files are served (relative to the server)."""
    out = job.output
    if job.state is not JobState.completed or out is None:
        return {}
    return {
        "video_url": video_path(job.id, "stream"),
        "download_url": video_path(job.id, "download"),
        "thumbnail_url": video_path(job.id, "thumbnail") if out.thumbnail else None,
        "subtitles_url": video_path(job.id, "subtitles") if out.subtitles else None,
        "metadata_url": video_path(job.id, "metadata"),
    }


def metadata(job: Job) -> dict[str, Any]:
    """The contract's ``metadata`` object of a finished video, with a few additions."""
    out = job.output
    p = job.params
    return {
        "duration": out.duration_s if out else None,
        "quality": p.get("quality") if job.kind is JobKind.explainer else None,
        "format": p.get("output_format", "mp4") if job.kind is JobKind.explainer else "mp4",
        "file_size": out.size_bytes if out else None,
        "created_at": iso(job.created_at),
        "completed_at": iso(job.finished_at),
        "width": out.width if out else None,
        "height": out.height if out else None,
        "fps": out.fps if out else None,
        "frames": out.frames if out else None,
        "subtitles": bool(out and out.subtitles),
        "storage_mode": p.get("storage_mode") if job.kind is JobKind.explainer else "local_only",
    }
