"""The one retry loop: exponential backoff with jitter, ``Retry-After``, cancellation.

Used by transfers (per request), the explainer's language-model calls, its S3 uploads and its
scene renders. A caller says which errors are worth another try (``transient``), may read a
server's ``Retry-After`` from an error, and may say that a failed try still made progress (a
download that moved bytes), which starts the count again.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from .cancel import CancelToken

T = TypeVar("T")


@dataclass(frozen=True)
class Backoff:
    """``tries`` calls at most; the n-th wait is up to ``base_s``·2ⁿ⁻¹, capped at ``max_s``."""

    tries: int = 3
    base_s: float = 1.0
    max_s: float = 60.0
    jitter: bool = True  # "equal jitter": between half and all of the exponential delay

    def delay(
        self, retry: int, retry_after: float | None = None, *, rng: random.Random | None = None
    ) -> float:
        """Seconds to wait before retry number ``retry`` (1, 2, …)."""
        ceiling = min(self.max_s, self.base_s * 2 ** (retry - 1))
        delay = ceiling / 2 + (rng or random).uniform(0, ceiling / 2) if self.jitter else ceiling
        if retry_after is not None:
            # The server knows best, but a huge Retry-After must not hang a job for hours.
            delay = max(delay, min(retry_after, self.max_s * 4))
        return delay


def with_retries(
    call: Callable[[], T],
    *,
    backoff: Backoff,
    transient: Callable[[Exception], bool],
    retry_after: Callable[[Exception], float | None] = lambda _: None,
    cancel: CancelToken | None = None,
    progressed: Callable[[], bool] = lambda: False,
    before_try: Callable[[], None] | None = None,
    on_retry: Callable[[int, Exception, float], None] | None = None,
) -> T:
    """Call ``call`` until it returns; retry transient errors; raise the last one.

    ``on_retry(retry, error, delay)`` is told before each wait; ``before_try`` runs before each
    call (a shared rate gate, say). A cancelled ``cancel`` raises ``CancelledError`` before a
    call and during a wait.
    """
    failures = 0
    while True:
        if cancel is not None:
            cancel.raise_if_cancelled()
        if before_try is not None:
            before_try()
        try:
            return call()
        except Exception as exc:
            if not transient(exc):
                raise
            failures = 1 if progressed() else failures + 1
            if failures >= backoff.tries:
                raise
            delay = backoff.delay(failures, retry_after(exc))
            if on_retry is not None:
                on_retry(failures, exc, delay)
            if cancel is not None:
                cancel.sleep(delay)
            else:
                time.sleep(delay)


def parse_retry_after(raw: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date); None if unusable."""
    if raw is None:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            return max(0.0, parsedate_to_datetime(raw).timestamp() - time.time())
        except (TypeError, ValueError):
            return None
