"""Error codes and exception types of the model orchestrator.

Every failure carries an :class:`ErrorCode`, a message that says what happened and a ``fix`` that
says what to do. The exception classes also subclass the matching builtin so callers can catch
broadly (``OSError``) or precisely (``NoSpaceError``).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


class ErrorCode(enum.StrEnum):
    no_space = "NO_SPACE"
    auth_fail = "AUTH_FAIL"
    checksum_fail = "CHECKSUM_FAIL"
    size_mismatch = "SIZE_MISMATCH"
    lock_timeout = "LOCK_TIMEOUT"
    rate_limit = "RATE_LIMIT"
    source_unavailable = "SOURCE_UNAVAILABLE"
    all_sources_failed = "ALL_SOURCES_FAILED"
    model_not_found = "MODEL_NOT_FOUND"
    variant_not_found = "VARIANT_NOT_FOUND"
    invalid_model_id = "INVALID_MODEL_ID"
    manifest_invalid = "MANIFEST_INVALID"
    manifest_signature_error = "MANIFEST_SIGNATURE_ERROR"
    schema_version_mismatch = "SCHEMA_VERSION_MISMATCH"
    path_invalid = "PATH_INVALID"
    incomplete_download = "INCOMPLETE_DOWNLOAD"
    not_present = "NOT_PRESENT"
    corrupt = "CORRUPT"
    cancelled = "CANCELLED"
    quota_exceeded = "QUOTA_EXCEEDED"
    in_use = "IN_USE"
    missing_dependency = "MISSING_DEPENDENCY"
    settings_invalid = "SETTINGS_INVALID"


class ModelError(Exception):
    """Base of every orchestrator error."""

    code: ErrorCode = ErrorCode.source_unavailable

    def __init__(
        self,
        message: str,
        *,
        code: ErrorCode | None = None,
        fix: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        from .redact import redact, redact_value

        # Errors travel to logs, the CLI's --json and the API: no secret may ride along.
        message = redact(message)
        super().__init__(message)
        if code is not None:
            self.code = code
        self.message = message
        self.fix = None if fix is None else redact(fix)
        self.details: dict[str, Any] = redact_value(dict(details or {}))

    def __str__(self) -> str:
        if self.fix:
            return f"{self.message} — {self.fix}"
        return self.message

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": str(self.code),
            "message": self.message,
            "fix": self.fix,
            "details": self.details,
        }


class ManifestError(ModelError, ValueError):
    code = ErrorCode.manifest_invalid


class SchemaVersionError(ManifestError):
    code = ErrorCode.schema_version_mismatch


class InvalidModelIdError(ModelError, ValueError):
    code = ErrorCode.invalid_model_id


class ModelNotFoundError(ModelError, LookupError):
    code = ErrorCode.model_not_found


class VariantNotFoundError(ModelError, LookupError):
    code = ErrorCode.variant_not_found


class PathInvalidError(ModelError, ValueError):
    code = ErrorCode.path_invalid


class NoSpaceError(ModelError, OSError):
    code = ErrorCode.no_space


class LockTimeoutError(ModelError, TimeoutError):
    code = ErrorCode.lock_timeout


class IntegrityError(ModelError, OSError):
    """A file's size or sha256 does not match what the manifest or source promised."""

    code = ErrorCode.checksum_fail


class SourceError(ModelError, ConnectionError):
    """One source could not deliver; the store may go on to the next source."""

    code = ErrorCode.source_unavailable


class AuthError(SourceError):
    code = ErrorCode.auth_fail


class RateLimitError(SourceError):
    code = ErrorCode.rate_limit

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after


class CancelledError(ModelError):
    code = ErrorCode.cancelled


class MissingDependencyError(ModelError, ImportError):
    code = ErrorCode.missing_dependency


class ModelNotPresentError(ModelError, FileNotFoundError):
    code = ErrorCode.not_present


class ManifestSignatureError(ManifestError):
    code = ErrorCode.manifest_signature_error


class SettingsError(ModelError, ValueError):
    code = ErrorCode.settings_invalid


class QuotaExceededError(ModelError, OSError):
    code = ErrorCode.quota_exceeded


class InUseError(ModelError, OSError):
    code = ErrorCode.in_use


@dataclass(frozen=True)
class SourceAttempt:
    source: str  # resolved and readable: never a manifest template
    code: ErrorCode
    message: str
    configured: bool = True  # False: skipped, the setting it needs is not set

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "code": str(self.code),
            "message": self.message,
            "configured": self.configured,
        }

    def line(self) -> str:
        if not self.configured:
            return f"{self.source}: {self.message}"
        return f"{self.source}: [{self.code}] {self.message}"


class AllSourcesFailedError(ModelError, ConnectionError):
    """Every source of a model failed; ``attempts`` says which and why."""

    code = ErrorCode.all_sources_failed

    def __init__(self, model: str, attempts: Sequence[SourceAttempt], **kw: Any) -> None:
        lines = "; ".join(a.line() for a in attempts)
        super().__init__(
            f"could not get {model} from any source ({lines or 'no sources configured'})",
            details={"attempts": [a.to_dict() for a in attempts]},
            **kw,
        )
        self.attempts = tuple(attempts)
        # The most telling code wins, so callers can branch on auth or space problems.
        for preferred in (
            ErrorCode.auth_fail,
            ErrorCode.no_space,
            ErrorCode.checksum_fail,
            ErrorCode.rate_limit,
        ):
            if any(a.code == preferred for a in attempts):
                self.code = preferred
                break
