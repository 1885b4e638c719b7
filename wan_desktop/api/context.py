"""What every route needs, built once per app and kept on ``app.state.ctx``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from wan_desktop.engine import Engine
from wan_desktop.engine.lora_library import LoraLibrary

from .blobs import BlobStore
from .estimates import Estimates
from .event_log import EventLog
from .mapping import Mapper
from .prompt import PromptEnhancer
from .queue_view import QueueView
from .ratelimit import RateLimiter
from .remote import RemoteLinks
from .settings import ApiSettings
from .stats import SystemStats
from .ws import Hub


@dataclass
class ApiContext:
    engine: Engine
    settings: ApiSettings
    mapper: Mapper
    loras: LoraLibrary
    stats: SystemStats
    hub: Hub
    limiter: RateLimiter
    enhancer: PromptEnhancer
    queue: QueueView
    remote: RemoteLinks
    estimates: Estimates
    events: EventLog
    blobs: BlobStore


def get_ctx(request: Request) -> ApiContext:
    ctx: ApiContext = request.app.state.ctx
    return ctx


Ctx = Annotated[ApiContext, Depends(get_ctx)]
