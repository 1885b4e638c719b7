"""What the server's two WebSocket endpoints share: the frontend's ``/ws`` (``ws.py``) and the
engine event stream for programs (``event_log.py``).

Engine events arrive on the bus's subscriber thread; a subclass serialises them there and hands
them to the asyncio loop (``hand_over``), in order, where it fans them out to its clients. Each
client has a bounded queue and its own sender task, so a slow client never slows the engine or
the others: progress messages are dropped for it past three quarters of its queue, and a client
whose queue is full is closed with 1013 (it reconnects). What clients send is rate-limited per
client (a burst, then a steady rate; past it the client is closed with 1008). A periodic task
(stats, pings) runs while the endpoint does; ``stop`` closes every client so that handlers end
and the server's shutdown cannot hang. The token is checked before any of this, for both, by
``security.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any, Generic, Literal, TypeVar

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from wan_desktop.engine import Engine, Event, Subscription

from .metrics import metrics
from .ratelimit import RateLimiter
from .settings import ApiSettings

log = logging.getLogger("wan_desktop.api.sockets")

CLOSE_GOING_AWAY = 1001
CLOSE_POLICY = 1008
CLOSE_TRY_AGAIN_LATER = 1013

Put = Literal["queued", "dropped", "full"]


class SocketClient:
    def __init__(self, ws: WebSocket, maxsize: int) -> None:
        self.id = uuid.uuid4().hex[:16]
        self.ws = ws
        self.maxsize = maxsize
        self.queue: asyncio.Queue[str | None] = asyncio.Queue(maxsize)
        self.dropped = 0

    def put(self, text: str, droppable: bool) -> Put:
        """Queue a message: ``full`` when the client is hopelessly behind, ``dropped`` when a
        progress message was left out for a client falling behind."""
        size = self.queue.qsize()
        if size >= self.maxsize:
            return "full"
        if droppable and size >= self.maxsize * 3 // 4:
            self.dropped += 1
            return "dropped"
        self.queue.put_nowait(text)
        return "queued"


C = TypeVar("C", bound=SocketClient)
OnMessage = Callable[[Any, MutableMapping[str, Any]], Awaitable[None]]


class Sockets(Generic[C]):
    """One WebSocket endpoint's clients and plumbing; subclasses name their tasks and say what
    an engine event becomes (``on_event``, on the bus's thread), how it reaches the clients
    (``fanout``, on the loop) and what runs periodically (``periodic``)."""

    SUBSCRIBER = "api-sockets"
    PERIODIC = "sockets-periodic"
    SENDER = "sockets-send"

    def __init__(self, engine: Engine, settings: ApiSettings) -> None:
        self.engine = engine
        self.settings = settings
        self.clients: dict[str, C] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sub: Subscription | None = None
        self._periodic: asyncio.Task[None] | None = None
        self._closing = False
        self._closers: set[asyncio.Future[None]] = set()
        self._limiter = RateLimiter(settings.ws_message_burst, settings.ws_messages_per_s)

    # ------------------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._closing = False
        self._sub = self.engine.subscribe(self.on_event, name=self.SUBSCRIBER)
        self._periodic = asyncio.create_task(self.periodic(), name=self.PERIODIC)

    async def stop(self) -> None:
        """Unsubscribe and close every client (so their handlers end and shutdown does not hang)."""
        self._closing = True
        if self._sub is not None:
            self._sub.close(wait=False)
            self._sub = None
        if self._periodic is not None:
            self._periodic.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._periodic
            self._periodic = None
        for client in list(self.clients.values()):
            await self._close(client, CLOSE_GOING_AWAY, "server shutting down")

    # ------------------------------------------------------------------- for subclasses

    def on_event(self, event: Event) -> None:
        raise NotImplementedError

    def fanout(self, item: Any) -> None:
        raise NotImplementedError

    async def periodic(self) -> None:
        raise NotImplementedError

    def clients_changed(self) -> None:
        """Called when a client came or went."""

    # --------------------------------------------------------------------------- plumbing

    def hand_over(self, item: Any) -> None:
        """From the bus's thread: ``fanout(item)`` on the loop, in order (nothing once closing)."""
        loop = self._loop
        if loop is not None and not self._closing:
            with contextlib.suppress(RuntimeError):  # the loop closed under us
                loop.call_soon_threadsafe(self.fanout, item)

    def drop_slow(self, client: C) -> None:
        """Close a client whose queue is full: it reconnects (and catches up its own way)."""
        metrics().ws_disconnected_slow.inc()
        task = asyncio.ensure_future(
            self._close(client, CLOSE_TRY_AGAIN_LATER, "too far behind; reconnect")
        )
        self._closers.add(task)
        task.add_done_callback(self._closers.discard)

    async def run_client(
        self, client: C, first: Iterable[str], on_message: OnMessage, refusal: str
    ) -> None:
        """Serve an accepted client until it goes: ``first`` sent before anything queued, each
        message it sends to ``on_message`` (within the rate limit; past it, closed with
        ``refusal``)."""
        self.clients[client.id] = client
        self.clients_changed()
        sender = asyncio.create_task(
            self._send_loop(client, list(first)), name=f"{self.SENDER}-{client.id}"
        )
        try:
            while not self._closing:
                message = await client.ws.receive()
                if message["type"] == "websocket.disconnect":
                    break
                if self._limiter.take(client.id):
                    await self._close(client, CLOSE_POLICY, refusal)
                    break
                await on_message(client, message)
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            self.clients.pop(client.id, None)
            self._limiter.forget(client.id)
            self.clients_changed()
            with contextlib.suppress(asyncio.QueueFull):
                client.queue.put_nowait(None)
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await sender

    async def _send_loop(self, client: C, first: list[str]) -> None:
        try:
            for text in first:
                await client.ws.send_text(text)
            while True:
                queued = await client.queue.get()
                if queued is None:
                    return
                await client.ws.send_text(queued)
        except (WebSocketDisconnect, RuntimeError, OSError):
            return  # gone; the receive side notices too

    async def _close(self, client: C, code: int, reason: str) -> None:
        self.clients.pop(client.id, None)
        self.clients_changed()
        if client.ws.application_state is WebSocketState.CONNECTED:
            with contextlib.suppress(Exception):
                await client.ws.close(code, reason)
