"""``create_app(engine, settings)``: the FastAPI app over one engine.

Routes follow CONTRACT.md (``/api/v1``, ``/ws``, ``/health``, ``/metrics``); OpenAPI docs at
``/docs`` (Swagger UI) and ``/redoc``, their assets served locally under ``/docs-assets``. The
app does not own the engine: whoever made the engine shuts it down.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, WebSocket
from fastapi_offline import FastAPIOffline
from starlette.middleware.cors import CORSMiddleware

from wan_desktop import __version__, explainer
from wan_desktop.engine import Engine
from wan_desktop.engine.lora_library import LoraLibrary

from .blobs import BlobStore
from .context import ApiContext
from .edge import EdgeGuard
from .errors import install_handlers
from .estimates import Estimates
from .event_log import EventLog
from .mapping import Mapper
from .metrics import MetricsMiddleware
from .prompt import PromptEnhancer, RuleEnhancer
from .queue_view import QueueView
from .ratelimit import RateLimiter
from .remote import RemoteLinks
from .routes import engine as engine_routes
from .routes import generation, jobs, lora, models, outputs, prompt, queue, system, videos
from .security import AccessGuard
from .settings import API_BASE, ApiSettings
from .stats import SystemStats
from .ws import Hub

DOCS_ASSETS = "/docs-assets"


def create_app(
    engine: Engine,
    settings: ApiSettings | None = None,
    *,
    enhancer: PromptEnhancer | None = None,
) -> FastAPI:
    settings = settings or ApiSettings()
    settings.check()
    explainer.register()  # the /videos routes submit explainer jobs
    es = engine.settings
    mapper = Mapper(engine.models.manifest, loras_dir=es.loras_dir, uploads_dir=es.uploads_dir)
    stats = SystemStats(engine, settings)
    hub = Hub(engine, mapper, stats, settings)
    events = EventLog(engine, settings)
    ctx = ApiContext(
        engine=engine,
        settings=settings,
        mapper=mapper,
        loras=LoraLibrary(es.loras_dir),
        stats=stats,
        hub=hub,
        limiter=RateLimiter(settings.submit_burst, settings.submit_per_s),
        enhancer=enhancer or RuleEnhancer(),
        queue=QueueView(engine, mapper),
        remote=RemoteLinks(engine),
        estimates=Estimates(engine),
        events=events,
        blobs=BlobStore(
            es.data_dir / "blobs",
            max_blob=max(settings.max_image_bytes, settings.max_lora_bytes),
            max_total=settings.max_blob_store_bytes,
        ),
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await hub.start()
        await events.start()
        try:
            yield
        finally:
            await events.stop()
            await hub.stop()

    # /docs and /redoc with their scripts served from here, not a CDN: the docs page is
    # same-origin for the API, so a script it loads could call every route.
    app = FastAPIOffline(
        static_url=DOCS_ASSETS,
        title="Wan Desktop API",
        version=__version__,
        description="Local API of Wan Desktop: Wan2.2 generation queue, outputs, LoRAs, "
        "prompt help, system and models; explainer videos (/videos) and every job of the "
        "queue (/jobs). WebSocket at /ws. Programs drive the engine itself under /api/v1/engine "
        "(events at /api/v1/engine/events).",
        lifespan=lifespan,
    )
    app.state.ctx = ctx
    install_handlers(app)
    for module in (generation, queue, outputs, lora, prompt, system, models, videos, jobs):
        app.include_router(module.router, prefix=API_BASE)
    app.include_router(system.root_router)
    app.include_router(engine_routes.router, prefix=API_BASE)

    @app.websocket("/ws")
    async def websocket(ws: WebSocket) -> None:
        await hub.serve(ws)

    # For programs (the desktop app's remote engine): every engine event, numbered.
    @app.websocket(f"{API_BASE}/engine/events")
    async def engine_events(ws: WebSocket) -> None:
        await events.serve(ws)

    # Added last = outermost: metrics see every answer, CORS answers preflights first, the
    # token is checked before a body is read.
    app.add_middleware(
        EdgeGuard, max_json_bytes=settings.max_json_bytes, max_headers=settings.max_headers
    )
    app.add_middleware(AccessGuard, token=settings.token, origins=settings.origins)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=list(settings.origins),
        allow_credentials=True,
        allow_methods=["*"],
        allow_headers=["*"],
    )
    app.add_middleware(MetricsMiddleware)
    return app
