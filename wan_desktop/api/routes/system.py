"""``/system``: stats, stats history, health (also ``/health``), and ``/metrics``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from ..context import ApiContext, Ctx
from ..mapping import now_iso
from ..metrics import CONTENT_TYPE, render
from ..settings import API_BASE, API_VERSION

router = APIRouter(tags=["system"])
root_router = APIRouter(tags=["system"])


@router.get("/system/stats", summary="CPU, RAM, GPU and VRAM now")
def stats(ctx: Ctx) -> dict[str, Any]:
    return ctx.stats.stats(ctx.stats.sample())


@router.get("/system/stats/history", summary="Samples of the last N hours (one every 5 s)")
def history(
    ctx: Ctx,
    hours: float = Query(1.0, gt=0, le=168, description="how far back, in hours (≤ 168)"),
) -> dict[str, Any]:
    samples = ctx.stats.history(hours)
    return {
        "stats": [{k: v for k, v in s.items() if k != "at"} for s in samples],
        "total_samples": len(samples),
        "time_range": {"hours": hours},
    }


@router.get("/system/workers", summary="Who runs jobs: node, GPU, VRAM, loaded model, current job")
def workers(ctx: Ctx) -> dict[str, Any]:
    """One worker for a local engine; one per Ray actor for a pool (``wan serve --pool``)."""
    items = [w.to_dict() for w in ctx.engine.workers()]
    return {"workers": items, "total": len(items), "timestamp": now_iso()}


def _health(request: Request, ctx: ApiContext) -> dict[str, Any]:
    server = request.scope.get("server")
    port = server[1] if server else ctx.settings.port
    store = ctx.engine.store_health
    unreadable = sorted(ctx.engine.store.unreadable)
    healthy = store.ok and not unreadable
    problems = [] if store.ok else [store.summary]
    if unreadable:
        problems.append(
            f"{len(unreadable)} stored job(s) cannot be read and are left out of listings; "
            "delete them (DELETE /api/v1/jobs/{id})"
        )
    return {
        "status": "ok" if healthy else "degraded",
        "port": port,
        "timestamp": now_iso(),
        "api_version": API_VERSION,
        "system": "operational" if healthy else "degraded",
        "problems": problems,
        "job_store": {
            "ok": store.ok,
            "read_only": store.read_only,
            "message": store.summary,
            "unreadable_jobs": unreadable,
        },
        "service": "wan-desktop",
        "endpoints": {
            "health": f"{API_BASE}/system/health",
            "docs": "/docs",
            "websocket": "/ws",
            "api_base": API_BASE,
        },
        "mock_mode": ctx.engine.settings.mock,
        "development_mode": ctx.engine.settings.dev_mode,
        "queue_paused": ctx.engine.paused,
    }


@router.get("/system/health", summary="Is the server up")
def health(request: Request, ctx: Ctx) -> dict[str, Any]:
    return _health(request, ctx)


@root_router.get("/health", summary="Is the server up (same as /api/v1/system/health)")
def root_health(request: Request, ctx: Ctx) -> dict[str, Any]:
    return _health(request, ctx)


@root_router.get("/metrics", summary="Prometheus metrics (text format)", response_class=Response)
def prometheus(ctx: Ctx) -> Response:
    return Response(render(ctx.engine), media_type=CONTENT_TYPE)
