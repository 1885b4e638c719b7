"""Retry recoverable errors with exponential backoff (1 s, 2 s, 4 s… by default)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class StoppedError(Exception):
    """The job was cancelled while waiting or working."""


def backoff_delays(attempts: int, base_s: float) -> list[float]:
    """Delays before attempt 2, 3, …: base, 2·base, 4·base…"""
    return [base_s * 2**i for i in range(max(0, attempts - 1))]


def with_retries(
    fn: Callable[[], T],
    *,
    attempts: int,
    base_s: float,
    recoverable: Callable[[Exception], bool],
    on_retry: Callable[[int, Exception, float], None] | None = None,
    cancel: threading.Event | None = None,
) -> T:
    """Call ``fn``; on a recoverable error wait and call again, up to ``attempts`` calls.

    ``on_retry(attempt, error, delay)`` is told before each wait. The last error is raised.
    """
    delays = backoff_delays(attempts, base_s)
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except Exception as exc:
            if attempt == attempts or not recoverable(exc):
                raise
            delay = delays[attempt - 1]
            if on_retry is not None:
                on_retry(attempt, exc, delay)
            if cancel is not None:
                if cancel.wait(delay):
                    raise StoppedError() from exc
            else:
                threading.Event().wait(delay)
    raise AssertionError("unreachable")
