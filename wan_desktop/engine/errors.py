"""Engine errors. Commands raise these; pipelines raise JobFailedError to fail a job cleanly."""

from __future__ import annotations

from collections.abc import Mapping

from .jobs import FailureCategory, JobFailure, JobState


class EngineError(Exception):
    """Base of the engine's command errors."""


class InvalidInputError(EngineError, ValueError):
    """A request's parameters are wrong; ``errors`` maps each field to what to fix."""

    def __init__(self, errors: Mapping[str, str]) -> None:
        self.errors = dict(errors)
        super().__init__("; ".join(f"{k}: {v}" for k, v in self.errors.items()))


class JobNotFoundError(EngineError, LookupError):
    def __init__(self, job_id: str) -> None:
        super().__init__(f"no job with id {job_id!r}")
        self.job_id = job_id


class JobStateError(EngineError):
    """The job's state forbids the action (cancel a finished job, delete a running one…)."""

    def __init__(self, job_id: str, state: JobState, action: str, hint: str = "") -> None:
        msg = f"cannot {action} job {job_id}: it is {state}"
        super().__init__(f"{msg}; {hint}" if hint else msg)
        self.job_id = job_id
        self.state = state
        self.action = action


class JobFailedError(Exception):
    """A pipeline failed in a known way: the job fails with this category and advice."""

    def __init__(
        self,
        category: FailureCategory,
        message: str,
        suggestions: tuple[str, ...] = (),
        *,
        code: str | None = None,
        detail: str | None = None,
    ) -> None:
        super().__init__(message)
        self.failure = JobFailure(category, message, suggestions, code=code, detail=detail)


class JobStoreError(EngineError, RuntimeError):
    """The job store cannot be opened (written by a newer app, damaged beyond recovery…)."""


class StoreUnavailableError(EngineError):
    """The job store cannot take this change now; ``reason`` says why, ``suggestions`` what to do.

    Reasons: ``storage_full`` (the data folder's disk is full), ``read_only`` (the file or folder
    is write-protected), ``damaged`` (damage found while running), ``busy`` (anything else).
    """

    def __init__(self, message: str, *, reason: str, suggestions: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.reason = reason
        self.suggestions = suggestions
