"""Prometheus metrics of the API and the engine, in the default registry.

Created once per process (several apps in one process share them), so other parts of the program
that register with ``prometheus_client`` appear on the same ``/metrics`` page. The model
orchestrator keeps its download metrics in a registry of its own (``models.metrics``); ``/metrics``
serves both as one exposition, each metric family once.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from wan_desktop.engine import Engine
from wan_desktop.models import metrics_exposition

from .settings import API_BASE

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass(frozen=True)
class Metrics:
    requests: Counter
    latency: Histogram
    ws_clients: Gauge
    ws_messages: Counter
    ws_dropped: Counter
    ws_disconnected_slow: Counter
    events: Counter
    rate_limited: Counter
    jobs: Gauge
    queue_paused: Gauge


@lru_cache(maxsize=1)
def metrics() -> Metrics:
    return Metrics(
        requests=Counter(
            "wan_api_requests", "HTTP requests answered", ["method", "route", "status"]
        ),
        latency=Histogram(
            "wan_api_request_seconds",
            "HTTP request latency",
            ["method", "route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
        ),
        ws_clients=Gauge("wan_api_websocket_clients", "WebSocket clients connected"),
        ws_messages=Counter("wan_api_websocket_messages", "WebSocket messages queued", ["type"]),
        ws_dropped=Counter(
            "wan_api_websocket_dropped", "progress messages dropped for lagging clients"
        ),
        ws_disconnected_slow=Counter(
            "wan_api_websocket_slow_disconnects", "clients disconnected for falling too far behind"
        ),
        events=Counter("wan_engine_events", "engine events seen by the API", ["type"]),
        rate_limited=Counter("wan_api_rate_limited", "submissions refused with 429"),
        jobs=Gauge("wan_jobs", "jobs in the store by engine state", ["state"]),
        queue_paused=Gauge("wan_queue_paused", "1 while the queue is paused"),
    )


class _Combined(Collector):
    """The default registry's families, then the orchestrator's (read back from its text)."""

    def __init__(self, extra: str) -> None:
        self.extra = extra

    def collect(self) -> Iterator[Metric]:
        seen: set[str] = set()
        for family in REGISTRY.collect():
            seen |= _exposed(family)
            yield family
        for family in text_string_to_metric_families(self.extra):
            # A family registered in both places is served once (the default registry's).
            names = _exposed(family)
            if not names & seen:
                seen |= names
                yield family


def _exposed(family: Metric) -> set[str]:
    """The names a family writes: its own, its samples' (``_total``, ``_created``, ``_bucket``…)."""
    names = {family.name, *(s.name for s in family.samples)}
    if family.type == "counter":
        names.add(family.name + "_total")
    return names


def render(engine: Engine) -> bytes:
    m = metrics()
    for state, n in engine.counts().items():
        m.jobs.labels(state=str(state)).set(n)
    m.queue_paused.set(1 if engine.paused else 0)
    return generate_latest(_Combined(metrics_exposition().decode("utf-8")))


def route_template(scope: Scope) -> str:
    """The matched route's template (/api/v1/queue/{task_id}), never the raw path."""
    template = getattr(scope.get("route"), "path", None)
    if not template:
        return "unmatched"
    # Routers included with a prefix may report their path without it.
    if scope["path"].startswith(API_BASE) and not template.startswith(API_BASE):
        template = API_BASE + template
    return str(template)


class MetricsMiddleware:
    """Counts and times HTTP requests by route template (not by raw path: ids stay out)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.m = metrics()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = 500

        async def wrapped(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, wrapped)
        finally:
            name = route_template(scope)
            method = scope.get("method", "")
            self.m.requests.labels(method=method, route=name, status=str(status)).inc()
            self.m.latency.labels(method=method, route=name).observe(time.perf_counter() - t0)
