"""Prometheus metrics of model downloads, in a registry of their own.

``prometheus_client`` is imported on first use; without it (a core install) every call is a no-op
and :func:`exposition` says so. Labels stay few and bounded: ``source`` is the scheme (``hf``,
``s3``, ``https``, ``local``, ``builtin``), ``code`` an :class:`~.errors.ErrorCode`.
"""

from __future__ import annotations

import threading
from typing import Any

_lock = threading.Lock()
_metrics: dict[str, Any] | None = None
_unavailable = False

DURATION_BUCKETS = (1, 5, 15, 60, 300, 900, 1800, 3600, 7200, 14400, float("inf"))


def _get() -> dict[str, Any] | None:
    global _metrics, _unavailable  # noqa: PLW0603 - one registry per process, made on first use
    ready = _metrics
    if ready is not None:
        return ready  # the common case, once per chunk: no lock
    with _lock:
        if _metrics is not None or _unavailable:
            return _metrics
        try:
            import prometheus_client as prom
        except ImportError:
            _unavailable = True
            return None
        registry = prom.CollectorRegistry(auto_describe=True)
        _metrics = {
            "registry": registry,
            "started": prom.Counter(
                "wan_downloads_started",
                "Model downloads started, per source",
                ["source"],
                registry=registry,
            ),
            "completed": prom.Counter(
                "wan_downloads_completed",
                "Model downloads completed and verified, per source",
                ["source"],
                registry=registry,
            ),
            "failed": prom.Counter(
                "wan_downloads_failed",
                "Model downloads that failed, per source and error code",
                ["source", "code"],
                registry=registry,
            ),
            "bytes": prom.Counter(
                "wan_download_bytes",
                "Bytes received from sources (resumed bytes excluded)",
                ["source"],
                registry=registry,
            ),
            "duration": prom.Histogram(
                "wan_download_duration_seconds",
                "Wall time of a model download from one source",
                ["source"],
                buckets=DURATION_BUCKETS,
                registry=registry,
            ),
            "retries": prom.Counter(
                "wan_download_retries",
                "Requests retried, per source and reason",
                ["source", "reason"],
                registry=registry,
            ),
        }
        return _metrics


def scheme_of(uri: str) -> str:
    return uri.partition("://")[0] or "unknown"


def download_started(source: str) -> None:
    if m := _get():
        m["started"].labels(scheme_of(source)).inc()


def download_completed(source: str, seconds: float) -> None:
    if m := _get():
        m["completed"].labels(scheme_of(source)).inc()
        m["duration"].labels(scheme_of(source)).observe(seconds)


def download_failed(source: str, code: str, seconds: float) -> None:
    if m := _get():
        m["failed"].labels(scheme_of(source), code).inc()
        m["duration"].labels(scheme_of(source)).observe(seconds)


def bytes_received(source: str, n: int) -> None:
    if n and (m := _get()):
        m["bytes"].labels(scheme_of(source)).inc(n)


def retried(source: str, reason: str) -> None:
    if m := _get():
        m["retries"].labels(scheme_of(source), reason).inc()


def exposition() -> bytes:
    """The metrics in Prometheus' text format, for the API's ``/metrics``."""
    m = _get()
    if m is None:
        return b"# prometheus_client is not installed: pip install 'wan-desktop[remote]'\n"
    from prometheus_client import generate_latest

    data: bytes = generate_latest(m["registry"])
    return data


CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
