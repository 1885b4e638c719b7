"""What an HTTP failure means: whether a retry may cure it, and, once retries did not, the
orchestrator's error for it (whose text never carries a URL's query).
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping

from ..redact import strip_query


class HttpError(Exception):
    """A request failed. ``transient`` errors are worth retrying (the engine decides how often)."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        headers: Mapping[str, str] | None = None,
        body: bytes = b"",
        transient: bool = False,
        reason: str = "error",
    ) -> None:
        super().__init__(message)
        self.status = status
        self.headers = {k.lower(): v for k, v in (headers or {}).items()}
        self.body = body
        self.transient = transient
        self.reason = reason  # metrics label: connection, timeout, status_5xx, rate_limit…

    @property
    def retry_after(self) -> float | None:
        from ..retry import parse_retry_after

        return parse_retry_after(self.headers.get("retry-after"))

    @property
    def error_code(self) -> str | None:
        return self.headers.get("x-error-code")


class RangeNotHonouredError(HttpError):
    """The server answered a ranged request with the whole file."""


def transport_error(exc: BaseException, url: str) -> HttpError:
    import socket

    if isinstance(exc, socket.gaierror):
        # No such host, or no network at all: retrying in seconds does not help.
        host = urllib.parse.urlsplit(url).hostname
        return HttpError(
            f"cannot resolve {host}: no network, or the name is wrong",
            transient=False,
            reason="dns",
        )
    if isinstance(exc, TimeoutError):
        return HttpError(
            f"no data from {strip_query(url)} for too long (stalled)",
            transient=True,
            reason="stall",
        )
    kind = type(exc).__name__
    return HttpError(
        f"connection to {strip_query(url)} failed ({kind})", transient=True, reason="connection"
    )


def http_error_to_model_error(exc: Exception, *, what: str, source: str) -> Exception:
    """The orchestrator's error for an HTTP failure that retries did not cure."""
    from ..errors import AuthError, ErrorCode, ModelError, RateLimitError, SourceError

    if isinstance(exc, ModelError) or not isinstance(exc, HttpError):
        return exc
    details = {"source": source, "status": exc.status, "what": what}
    if exc.status in (401, 403):
        return AuthError(
            f"{source} refused access to {what} (HTTP {exc.status})",
            fix="check the credentials for this source",
            details=details,
        )
    if exc.status == 429:
        return RateLimitError(
            f"{source} kept answering 'too many requests' for {what}",
            retry_after=exc.retry_after,
            fix="wait a few minutes and run ensure again; it resumes where it stopped",
            details=details,
        )
    if exc.status == 404:
        return SourceError(
            f"{source} does not have {what} (HTTP 404)",
            fix="check the source's address; another source may have the file",
            details=details,
        )
    if exc.reason == "truncated":
        return SourceError(
            f"{source} kept ending {what} early (truncated answers)",
            code=ErrorCode.incomplete_download,
            fix="try again later; what arrived is kept and the download resumes from there",
            details=details,
        )
    if exc.status == 416:
        return SourceError(
            f"{source} changed {what} while it was downloading (HTTP 416)",
            code=ErrorCode.incomplete_download,
            fix="run ensure again; the file is fetched anew",
            details=details,
        )
    return SourceError(
        f"{source} failed for {what}: {exc}",
        fix="check the network or try again later; the download resumes where it stopped",
        details=details,
    )
