"""Jobs: what was asked, where it stands, what came out. Frozen snapshots, safe to hand around."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


class JobKind(enum.StrEnum):
    wan = "wan"  # a Wan2.2 video (T2V, I2V, TI2V)
    explainer = "explainer"  # a planned multi-scene Manim video


class JobState(enum.StrEnum):
    queued = "queued"
    preparing = "preparing"  # ensuring the model (may download)
    loading = "loading"
    running = "running"
    encoding = "encoding"
    completed = "completed"
    failed = "failed"
    cancelled = "cancelled"
    interrupted = "interrupted"  # the app stopped while it ran

    @property
    def active(self) -> bool:
        return self in ACTIVE_STATES

    @property
    def finished(self) -> bool:
        return self in FINISHED_STATES


ACTIVE_STATES = frozenset(
    {JobState.preparing, JobState.loading, JobState.running, JobState.encoding}
)
FINISHED_STATES = frozenset(
    {JobState.completed, JobState.failed, JobState.cancelled, JobState.interrupted}
)


class Priority(enum.IntEnum):
    low = 0
    normal = 1
    high = 2
    urgent = 3

    @classmethod
    def parse(cls, value: str | int | Priority | None) -> Priority:
        if value is None:
            return cls.normal
        if isinstance(value, str):
            try:
                return cls[value.strip().lower()]
            except KeyError:
                raise ValueError(
                    f"priority {value!r} is not one of: {', '.join(p.name for p in cls)}"
                ) from None
        return cls(int(value))


class FailureCategory(enum.StrEnum):
    model_unavailable = "model_unavailable"
    download_failed = "download_failed"
    out_of_memory = "out_of_memory"
    invalid_input = "invalid_input"
    cuda_error = "cuda_error"
    cancelled = "cancelled"
    interrupted = "interrupted"
    render_failed = "render_failed"
    storage_failed = "storage_failed"
    storage_full = "storage_full"
    internal = "internal"


@dataclass(frozen=True)
class JobFailure:
    category: FailureCategory
    message: str
    suggestions: tuple[str, ...] = ()
    code: str | None = None  # a finer error code (e.g. the orchestrator's NO_SPACE)
    stage: str | None = None
    detail: str | None = None  # traceback or log excerpt, for the log view

    def to_dict(self) -> dict[str, Any]:
        return {
            "category": str(self.category),
            "message": self.message,
            "suggestions": list(self.suggestions),
            "code": self.code,
            "stage": self.stage,
            "detail": self.detail,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> JobFailure:
        return cls(
            category=FailureCategory(d["category"]),
            message=d["message"],
            suggestions=tuple(d.get("suggestions") or ()),
            code=d.get("code"),
            stage=d.get("stage"),
            detail=d.get("detail"),
        )


@dataclass(frozen=True)
class JobOutput:
    """What a finished job produced. Paths are absolute."""

    video: str
    thumbnail: str | None = None
    sidecar: str | None = None
    subtitles: str | None = None
    duration_s: float | None = None
    width: int | None = None
    height: int | None = None
    frames: int | None = None
    fps: float | None = None
    size_bytes: int | None = None
    urls: Mapping[str, str] = field(default_factory=dict)  # e.g. remote copies (S3)

    def to_dict(self) -> dict[str, Any]:
        return {
            "video": self.video,
            "thumbnail": self.thumbnail,
            "sidecar": self.sidecar,
            "subtitles": self.subtitles,
            "duration_s": self.duration_s,
            "width": self.width,
            "height": self.height,
            "frames": self.frames,
            "fps": self.fps,
            "size_bytes": self.size_bytes,
            "urls": dict(self.urls),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> JobOutput:
        return cls(**{**d, "urls": dict(d.get("urls") or {})})


@dataclass(frozen=True)
class JobSpec:
    """A request: the kind of job and its parameters (validated by the kind's pipeline)."""

    kind: JobKind
    params: Mapping[str, Any]
    priority: Priority = Priority.normal
    client: str | None = None  # who asked (GUI, API client id), for rate limits and logs
    warnings: tuple[str, ...] = ()  # what the caller already knows (an input it will not use)


@dataclass(frozen=True)
class Job:
    id: str
    kind: JobKind
    state: JobState
    params: Mapping[str, Any]
    created_at: float
    priority: Priority = Priority.normal
    position: float = 0.0
    mock: bool = False
    model_id: str | None = None
    variant: str | None = None
    development: bool = False
    label: str | None = None  # shown wherever the job is ("mock", "development variant: …")
    started_at: float | None = None
    finished_at: float | None = None
    updated_at: float | None = None
    stage: str | None = None
    stage_message: str | None = None
    progress: float = 0.0  # 0..1
    step: int | None = None
    total_steps: int | None = None
    eta_s: float | None = None
    estimate: Mapping[str, Any] = field(default_factory=dict)  # vram_gb, minutes, strategy…
    memory_plan: Mapping[str, Any] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    failure: JobFailure | None = None
    output: JobOutput | None = None
    stages_completed: tuple[str, ...] = ()
    retry_of: str | None = None
    client: str | None = None

    @property
    def finished(self) -> bool:
        return self.state.finished

    @property
    def prompt(self) -> str:
        return str(self.params.get("prompt") or self.params.get("topic") or "")
