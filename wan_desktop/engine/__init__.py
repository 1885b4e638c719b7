"""The generation engine: jobs in a persistent queue, run one at a time, events out.

Imports ``models``; never ``ui`` or ``api``. Knows no Qt and no HTTP. Heavy libraries (torch,
diffusers) load inside the pipelines that need them.
"""

from __future__ import annotations

from .engine import Engine
from .errors import (
    EngineError,
    InvalidInputError,
    JobCancelledError,
    JobFailedError,
    JobNotFoundError,
    JobStateError,
)
from .events import (
    Alert,
    Event,
    JobLog,
    JobPreview,
    JobStage,
    JobStateChanged,
    JobStep,
    JobWarning,
    MemorySample,
    ModelDownload,
    ModelDownloadFinished,
    ModelLoaded,
    ModelUnloaded,
    QueueChanged,
    Subscription,
)
from .hardware import HardwareProfile, simulated_profile
from .jobs import (
    FailureCategory,
    Job,
    JobFailure,
    JobKind,
    JobOutput,
    JobSpec,
    JobState,
    Priority,
)
from .settings import EngineSettings

__all__ = [
    "Alert",
    "Engine",
    "EngineError",
    "EngineSettings",
    "Event",
    "FailureCategory",
    "HardwareProfile",
    "InvalidInputError",
    "Job",
    "JobCancelledError",
    "JobFailedError",
    "JobFailure",
    "JobKind",
    "JobLog",
    "JobNotFoundError",
    "JobOutput",
    "JobPreview",
    "JobSpec",
    "JobStage",
    "JobState",
    "JobStateChanged",
    "JobStateError",
    "JobStep",
    "JobWarning",
    "MemorySample",
    "ModelDownload",
    "ModelDownloadFinished",
    "ModelLoaded",
    "ModelUnloaded",
    "Priority",
    "QueueChanged",
    "Subscription",
    "simulated_profile",
]
