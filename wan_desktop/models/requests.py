"""One request to a source, retried: the transfer settings, the backoff gate that all requests to
one source share, and the loop around each request (``models/retry.py`` with HTTP's rules).

A failed request (connection lost, stalled or crawling, truncated, 5xx, 429) is asked again
after an exponential backoff with jitter that honours ``Retry-After``; a request that made
progress starts the count again. One 429 holds the source's gate, so it slows every part of
every file from that source, not just the request that got it. The final failure is mapped to
the source's own error (what it means for this source, and what to do).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, TypeVar

from . import metrics
from .cancel import CancelToken
from .logs import LOGGER_NAME, log_event
from .retry import Backoff
from .retry import with_retries as retry_loop
from .sources.http_errors import HttpError

if TYPE_CHECKING:
    from .config import OrchestratorConfig

log = logging.getLogger(LOGGER_NAME)
T = TypeVar("T")


@dataclass(frozen=True)
class TransferSettings:
    parts_per_file: int
    part_size_bytes: int
    max_retries: int
    retry_base_s: float
    retry_max_s: float
    verify_sha256: bool = True


def transfer_settings(config: OrchestratorConfig) -> TransferSettings:
    return TransferSettings(
        parts_per_file=config.parts_per_file,
        part_size_bytes=config.part_size_bytes,
        max_retries=config.max_retries,
        retry_base_s=config.retry_base_s,
        retry_max_s=config.retry_max_s,
        verify_sha256=config.verify_sha256,
    )


class SourceGate:
    """Backoff shared by every request to one source."""

    def __init__(self) -> None:
        self._not_before = 0.0
        self._lock = threading.Lock()

    def hold(self, seconds: float) -> None:
        with self._lock:
            self._not_before = max(self._not_before, time.monotonic() + seconds)

    def wait(self, cancel: CancelToken) -> None:
        with self._lock:
            left = self._not_before - time.monotonic()
        if left > 0:
            cancel.sleep(left)


class RetriedSource(Protocol):
    def describe(self) -> str: ...

    def map_error(self, exc: Exception, *, what: str) -> Exception: ...


def with_retries(
    call: Callable[[], T],
    *,
    source: RetriedSource,
    gate: SourceGate,
    settings: TransferSettings,
    cancel: CancelToken,
    what: str,
    progressed: Callable[[], bool] = lambda: False,
) -> T:
    """Run ``call`` until it succeeds, retrying transient :class:`HttpError` s.

    ``progressed`` tells whether the last failed attempt moved bytes; if so, the count restarts.
    A final failure is mapped to the source's :class:`ModelError`.
    """

    def on_retry(attempt: int, exc: Exception, delay: float) -> None:
        reason = exc.reason if isinstance(exc, HttpError) else type(exc).__name__
        if isinstance(exc, HttpError) and exc.status == 429:
            gate.hold(delay)
        metrics.retried(source.describe(), reason)
        log_event(
            log,
            logging.INFO,
            "retry",
            "retrying %s in %.1f s (attempt %d/%d): %s",
            what,
            delay,
            attempt,
            settings.max_retries,
            exc,
            source=source.describe(),
            reason=reason,
        )

    try:
        return retry_loop(
            call,
            backoff=Backoff(
                tries=settings.max_retries + 1,
                base_s=settings.retry_base_s,
                max_s=settings.retry_max_s,
            ),
            transient=lambda e: isinstance(e, HttpError) and e.transient,
            retry_after=lambda e: e.retry_after if isinstance(e, HttpError) else None,
            cancel=cancel,
            progressed=progressed,
            before_try=lambda: gate.wait(cancel),
            on_retry=on_retry,
        )
    except HttpError as exc:
        raise source.map_error(exc, what=what) from None
