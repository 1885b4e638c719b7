"""A per-client token bucket (submissions, WebSocket messages): a burst, then a steady rate;
over it is 429 for submissions."""

from __future__ import annotations

import threading
import time

from fastapi import HTTPException, Request


class RateLimiter:
    def __init__(self, burst: int, per_s: float, *, max_clients: int = 10_000) -> None:
        self.burst = float(burst)
        self.per_s = per_s
        self._buckets: dict[str, tuple[float, float]] = {}  # client -> (tokens, at)
        self._lock = threading.Lock()
        self._max_clients = max_clients

    def take(self, client: str) -> float:
        """0 when allowed (and counted); otherwise the seconds to wait."""
        now = time.monotonic()
        with self._lock:
            tokens, at = self._buckets.get(client, (self.burst, now))
            tokens = min(self.burst, tokens + (now - at) * self.per_s)
            if tokens >= 1.0:
                if len(self._buckets) >= self._max_clients and client not in self._buckets:
                    self._buckets.clear()  # bounded memory; forgetting only forgives
                self._buckets[client] = (tokens - 1.0, now)
                return 0.0
            self._buckets[client] = (tokens, now)
            return (1.0 - tokens) / self.per_s if self.per_s > 0 else 60.0

    def forget(self, client: str) -> None:
        with self._lock:
            self._buckets.pop(client, None)


def client_key(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def refuse_if_limited(limiter: RateLimiter, request: Request) -> None:
    """Count a submission; 429 with ``Retry-After`` when the client is over its rate."""
    wait = limiter.take(client_key(request))
    if wait:
        from .metrics import metrics

        metrics().rate_limited.inc()
        raise HTTPException(
            429,
            detail=f"too many submissions; wait {wait:.1f} s and try again",
            headers={"Retry-After": str(max(1, round(wait)))},
        )
