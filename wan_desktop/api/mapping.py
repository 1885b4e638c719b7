"""Engine jobs in the contract's words: statuses, Task objects, progress percentages.

Pure functions over frozen jobs, cheap enough to run for a thousand jobs per request.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from wan_desktop.engine.jobs import Job, JobKind, JobState
from wan_desktop.engine.lora_library import REF_PREFIX
from wan_desktop.models import Manifest, ModelError

from .settings import API_BASE

# Contract statuses: pending|processing|completed|failed|cancelled.
STATUS = {
    JobState.queued: "pending",
    JobState.preparing: "processing",
    JobState.loading: "processing",
    JobState.running: "processing",
    JobState.encoding: "processing",
    JobState.completed: "completed",
    JobState.failed: "failed",
    JobState.cancelled: "cancelled",
    JobState.interrupted: "failed",
}
STATES_OF = {
    status: frozenset(s for s, st in STATUS.items() if st == status) for status in STATUS.values()
}
CONTRACT_STATUSES = ("pending", "processing", "completed", "failed", "cancelled")
STAGES = (
    "initializing",
    "downloading_model",
    "loading_model",
    "preparing_inputs",
    "applying_lora",
    "generating",
    "post_processing",
    "saving",
    "completed",
    "failed",
)
# Engine stage names that are not contract stages, in contract words.
_STAGE_ALIASES = {
    "cancelled": "failed",
    "interrupted": "failed",
    "downloading": "downloading_model",
    "loading": "loading_model",
    "encoding": "post_processing",
}


def iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, tz=UTC).isoformat()


def now_iso() -> str:
    return datetime.now(tz=UTC).isoformat()


def percent(progress: float) -> int:
    return max(0, min(100, int(progress * 100)))


def stage_name(stage: str, kind: JobKind = JobKind.wan) -> str:
    """A stage in the WebSocket's words. Wan jobs: ``STAGES``. Explainer jobs keep their own
    (initializing, planning, scenario_creation, code_generation, rendering, combining, storage,
    completed), and end in ``failed`` like Wan jobs when cancelled or interrupted."""
    if kind is JobKind.explainer:
        return "failed" if stage in ("cancelled", "interrupted") else stage
    if stage in STAGES:
        return stage
    return _STAGE_ALIASES.get(stage, "generating")


def step_message(kind: JobKind, stage: str | None, step: int, total: int) -> str:
    """ "step 3/50" for a Wan job; "rendering: scene 2/4" for an explainer job."""
    if kind is JobKind.explainer and stage:
        return f"{stage.replace('_', ' ')}: scene {step}/{total}"
    return f"step {step}/{total}"


class Mapper:
    """Turns jobs into contract dicts; knows the model types and the upload folders."""

    def __init__(self, manifest: Manifest, *, loras_dir: Path, uploads_dir: Path) -> None:
        self._manifest = manifest
        self._types: dict[str, str] = {}
        # Job parameters hold resolved paths (the engine resolves them at submit).
        self._loras_dir = loras_dir.resolve()
        self._uploads_dir = uploads_dir.resolve()

    def model_type(self, model_id: str | None) -> str | None:
        if not model_id:
            return None
        cached = self._types.get(model_id)
        if cached is None:
            try:
                cached = self._manifest.get(model_id).model_type
            except ModelError:
                cached = model_id
            self._types[model_id] = cached
        return cached

    def _rel(self, path: str | None, folder: Path, prefix: str) -> str | None:
        if not path:
            return None
        p = Path(path)
        return f"{prefix}{p.name}" if p.parent == folder else path

    def lora(self, params: Mapping[str, Any]) -> tuple[str | None, float]:
        loras = params.get("loras") or ()
        if not loras:
            return None, 1.0
        first = loras[0]
        return self._rel(first.get("path"), self._loras_dir, REF_PREFIX), float(
            first.get("strength", 1.0)
        )

    def resolution(self, params: Mapping[str, Any]) -> str:
        asked = params.get("requested_resolution")
        if asked:
            return str(asked)
        return f"{params.get('width')}x{params.get('height')}"

    def message(self, job: Job) -> str:
        """What the job is doing, with its label (mock, development variant) when it has one."""
        if job.failure is not None:
            text = job.failure.message
            if job.failure.suggestions:
                text += " — " + "; ".join(job.failure.suggestions)
        elif job.state is JobState.queued:
            text = "waiting in the queue"
        elif job.state is JobState.completed:
            text = "video ready"
        elif job.state is JobState.cancelled:
            text = "cancelled"
        else:
            text = job.stage_message or str(job.state)
            if job.step and job.total_steps and job.state is JobState.running:
                text = step_message(job.kind, job.stage, job.step, job.total_steps)
        return f"{text} [{job.label}]" if job.label else text

    def output_path(self, job: Job) -> str | None:
        if job.output is None:
            return None
        if job.kind is JobKind.explainer:
            return f"{API_BASE}/videos/jobs/{job.id}/download"
        return f"{API_BASE}/outputs/{job.id}/download"

    def task(self, job: Job) -> dict[str, Any]:
        """The contract's Task: required keys always, optional keys only when set."""
        p = job.params
        lora_path, lora_strength = self.lora(p)
        task: dict[str, Any] = {
            "id": job.id,
            "model_type": self.model_type(job.model_id),
            "prompt": job.prompt,
            "resolution": self.resolution(p),
            "steps": p.get("steps"),
            "lora_strength": lora_strength,
            "status": STATUS[job.state],
            "progress": percent(job.progress),
            "created_at": iso(job.created_at),
        }
        optional = {
            "image_path": self._rel(p.get("image"), self._uploads_dir, "uploads/"),
            "end_image_path": self._rel(p.get("end_image"), self._uploads_dir, "uploads/"),
            "lora_path": lora_path,
            "started_at": iso(job.started_at),
            "completed_at": iso(job.finished_at),
            "output_path": self.output_path(job),
            "error_message": self.message(job) if job.failure is not None else None,
            "estimated_time_minutes": job.estimate.get("minutes"),
            # Additions (the contract allows extra fields).
            "engine_state": str(job.state),
            "stage": job.stage,
            "current_step": job.step,
            "total_steps": job.total_steps,
            "eta_seconds": job.eta_s,
            "seed": p.get("seed"),
            "mock": job.mock or None,
            "development": job.development or None,
            "model_label": job.label,
            "priority": job.priority.name,
        }
        task.update((k, v) for k, v in optional.items() if v is not None)
        return task

    def task_update(self, job: Job) -> dict[str, Any]:
        data: dict[str, Any] = {
            "task_id": job.id,
            "status": STATUS[job.state],
            "progress": percent(job.progress),
            "message": self.message(job),
            "engine_state": str(job.state),
        }
        out = self.output_path(job)
        if out:
            data["output_path"] = out
        if job.label:
            data["model_label"] = job.label
        return data
