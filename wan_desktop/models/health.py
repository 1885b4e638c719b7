"""The negative cache: a source that just failed as unavailable is skipped for a while.

Keyed by what fails together (a Hub endpoint, an S3 endpoint and bucket, a web host), so a second
model from the same broken place does not wait through the same timeouts again. Per process: the
app and the API are long-lived; a CLI run starts fresh.
"""

from __future__ import annotations

import threading
import time
from urllib.parse import urlsplit

from .config import OrchestratorConfig
from .errors import ErrorCode, SourceAttempt

# Codes that mean "this source is down", worth remembering for a while.
NEGATIVE_CODES = frozenset({ErrorCode.source_unavailable, ErrorCode.rate_limit})
_cache: dict[str, tuple[float, SourceAttempt]] = {}
_lock = threading.Lock()


def _origin_key(uri: str, config: OrchestratorConfig) -> str:
    """What fails together (a Hub endpoint, an S3 endpoint and bucket, a web host)."""
    scheme = uri.partition("://")[0]
    if scheme == "hf":
        return f"hf:{config.hf.endpoint}"
    if scheme == "s3":
        bucket = uri.removeprefix("s3://").split("/", 1)[0]
        return f"s3:{config.s3.endpoint_url or 'aws'}/{bucket}"
    if scheme in ("http", "https"):
        u = urlsplit(uri)
        return f"{u.scheme}://{u.netloc}"
    return uri


def recent_failure(uri: str, config: OrchestratorConfig) -> SourceAttempt | None:
    """The attempt to report instead of trying ``uri`` again, or None to try it."""
    key = _origin_key(uri, config)
    with _lock:
        hit = _cache.get(key)
        if hit is None:
            return None
        until, attempt = hit
        if time.monotonic() >= until:
            del _cache[key]
            return None
    left = until - time.monotonic()
    return SourceAttempt(
        uri.split("?", 1)[0],
        attempt.code,
        f"skipped: it failed moments ago (retried in {left:.0f} s): {attempt.message}",
    )


def remember_failure(uri: str, config: OrchestratorConfig, attempt: SourceAttempt) -> None:
    if attempt.code in NEGATIVE_CODES and config.source_failure_ttl_s > 0:
        with _lock:
            _cache[_origin_key(uri, config)] = (
                time.monotonic() + config.source_failure_ttl_s,
                attempt,
            )


def clear() -> None:
    with _lock:
        _cache.clear()
