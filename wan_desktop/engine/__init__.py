"""The generation engine: jobs in a persistent queue, run one at a time, events out.

Imports ``models``; never ``ui`` or ``api``. Knows no Qt and no HTTP. Heavy libraries (torch,
diffusers) load inside the pipelines that need them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Name -> module: loaded on first use, so `wan --help` and the CLI stay fast (PEP 562). The
# imports under TYPE_CHECKING repeat them for type checkers, which cannot follow __getattr__.
_EXPORTS = {
    "Alert": ".events",
    "Engine": ".engine",
    "EngineError": ".errors",
    "EngineSettings": ".settings",
    "Event": ".events",
    "FailureCategory": ".jobs",
    "HardwareProfile": ".hardware",
    "InvalidInputError": ".errors",
    "Job": ".jobs",
    "JobFailedError": ".errors",
    "JobFailure": ".jobs",
    "JobKind": ".jobs",
    "JobLog": ".events",
    "JobNotFoundError": ".errors",
    "JobOutput": ".jobs",
    "JobPreview": ".events",
    "JobSpec": ".jobs",
    "JobStage": ".events",
    "JobState": ".jobs",
    "JobStateChanged": ".events",
    "JobStateError": ".errors",
    "JobStep": ".events",
    "JobWarning": ".events",
    "MemorySample": ".events",
    "ModelDownload": ".events",
    "ModelDownloadFinished": ".events",
    "ModelLoaded": ".events",
    "ModelUnloaded": ".events",
    "Priority": ".jobs",
    "QueueChanged": ".events",
    "Subscription": ".events",
    "simulated_profile": ".hardware",
}

if TYPE_CHECKING:
    from .engine import Engine
    from .errors import (
        EngineError,
        InvalidInputError,
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

__all__ = sorted(_EXPORTS)  # noqa: PLE0605 - derived from the one list above


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value
