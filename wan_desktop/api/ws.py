"""The ``/ws`` protocol: engine events in, ``{type, data}`` messages out.

Engine events arrive on the bus's subscriber thread; they are translated and serialised there,
then handed to the asyncio loop with ``call_soon_threadsafe``. Each client has a bounded queue
and its own sender task, so a slow client never slows the engine or the others: when its queue
fills past three quarters, progress messages are dropped for it; when it is full, it is
disconnected (it reconnects and refetches). Handlers end on disconnect and on shutdown.

What clients send is rate-limited per client (a burst, then a steady rate; past it the client is
closed with 1008), and no message is answered with blocking work on the loop: ``get_status`` reads
the store's counts in a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Callable
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from wan_desktop.engine import Engine, Event, JobKind, Subscription

from .mapping import STATES_OF, Mapper
from .metrics import metrics
from .ratelimit import RateLimiter
from .settings import ApiSettings
from .stats import SystemStats
from .ws_events import ALL, EventTranslator, Outgoing, envelope

log = logging.getLogger("wan_desktop.api.ws")

TOPICS = (
    "system_stats",
    "generation_progress",
    "queue_updates",
    "alerts",
    "model_status",
    "download_progress",
)
CLOSE_GOING_AWAY = 1001
CLOSE_POLICY = 1008
CLOSE_TRY_AGAIN_LATER = 1013

STATUS = "\0status"  # handle()'s marker for a get_status, answered off the loop


class Client:
    def __init__(self, ws: WebSocket, maxsize: int) -> None:
        self.id = uuid.uuid4().hex[:16]
        self.ws = ws
        self.topics: set[str] = set()
        self.queue: asyncio.Queue[str | None] = asyncio.Queue(maxsize)
        self.maxsize = maxsize
        self.dropped = 0

    def offer(self, text: str, droppable: bool = False) -> bool:
        """Queue a message; False when the client is hopelessly behind."""
        size = self.queue.qsize()
        if size >= self.maxsize:
            return False
        if droppable and size >= self.maxsize * 3 // 4:
            self.dropped += 1
            metrics().ws_dropped.inc()
            return True
        self.queue.put_nowait(text)
        return True


class Hub(EventTranslator):
    def __init__(
        self,
        engine: Engine,
        mapper: Mapper,
        stats: SystemStats,
        settings: ApiSettings,
    ) -> None:
        self.engine = engine
        self.mapper = mapper
        self.stats = stats
        self.settings = settings
        self.clients: dict[str, Client] = {}
        self.downloads: dict[tuple[str, str], dict[str, Any]] = {}
        # Kind and label of each job seen, for its step and stage events (which carry only the
        # id); kept while the job may still send events.
        self._jobs: dict[str, tuple[JobKind, str | None]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sub: Subscription | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._closing = False
        self._closers: set[asyncio.Future[None]] = set()
        self._m = metrics()
        self._limiter = RateLimiter(settings.ws_message_burst, settings.ws_messages_per_s)
        # Test and benchmark hook: called on the loop with each batch just queued.
        self.on_fanout: Callable[[list[Outgoing]], None] | None = None

    # ------------------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._closing = False
        self._sub = self.engine.subscribe(self._on_event, name="api-ws")
        self._ticker = asyncio.create_task(self._tick_stats(), name="ws-stats")

    async def stop(self) -> None:
        """Unsubscribe and close every client (so their handlers end and shutdown does not hang)."""
        self._closing = True
        if self._sub is not None:
            self._sub.close(wait=False)
            self._sub = None
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        for client in list(self.clients.values()):
            await self._close(client, CLOSE_GOING_AWAY, "server shutting down")

    # --------------------------------------------------------------------- engine events

    def _on_event(self, event: Event) -> None:
        """On the subscriber thread: translate and serialise, then hand to the loop."""
        self._m.events.labels(type=type(event).__name__).inc()
        try:
            out = self.translate(event)
        except Exception:
            log.exception("could not translate %s", type(event).__name__)
            return
        loop = self._loop
        if out and loop is not None and not self._closing:
            with contextlib.suppress(RuntimeError):  # the loop closed under us
                loop.call_soon_threadsafe(self._fanout, out)

    def _fanout(self, out: list[Outgoing]) -> None:
        for client in list(self.clients.values()):
            for topic, kind, text, droppable in out:
                if topic is not ALL and topic not in client.topics:
                    continue
                if not client.offer(text, droppable):
                    self._m.ws_disconnected_slow.inc()
                    task = asyncio.ensure_future(
                        self._close(client, CLOSE_TRY_AGAIN_LATER, "too far behind; reconnect")
                    )
                    self._closers.add(task)
                    task.add_done_callback(self._closers.discard)
                    break
                self._m.ws_messages.labels(type=kind).inc()
        if self.on_fanout is not None:
            self.on_fanout(out)

    async def _tick_stats(self) -> None:
        interval = self.settings.stats_interval_s
        while True:
            await asyncio.sleep(interval)
            if not any("system_stats" in c.topics for c in self.clients.values()):
                continue
            try:
                sample = await asyncio.to_thread(self.stats.sample)
                stats = await asyncio.to_thread(self.stats.stats, sample)
            except Exception:
                log.exception("system stats failed")
                continue
            self._fanout(
                [
                    (
                        "system_stats",
                        "system_stats_update",
                        envelope("system_stats_update", stats),
                        True,
                    ),
                    (
                        "system_stats",
                        "vram_monitoring",
                        envelope("vram_monitoring", self.stats.vram(sample)),
                        True,
                    ),
                ]
            )

    # --------------------------------------------------------------------------- clients

    async def serve(self, ws: WebSocket) -> None:
        await ws.accept()
        client = Client(ws, self.settings.client_queue)
        self.clients[client.id] = client
        self._m.ws_clients.set(len(self.clients))
        sender = asyncio.create_task(self._send_loop(client), name=f"ws-send-{client.id}")
        client.offer(
            envelope(
                "connection_established",
                {
                    "connection_id": client.id,
                    "available_topics": list(TOPICS),
                    "message": "connected to Wan Desktop; subscribe to topics for more updates",
                },
            )
        )
        try:
            while not self._closing:
                message = await ws.receive()
                if message["type"] == "websocket.disconnect":
                    break
                if self._limiter.take(client.id):
                    await self._close(
                        client,
                        CLOSE_POLICY,
                        f"over {self.settings.ws_messages_per_s:g} messages a second; slow down",
                    )
                    break
                raw = message.get("text")
                if raw is None:
                    raw = (message.get("bytes") or b"").decode("utf-8", "replace")
                reply = self.handle(client, raw)
                if reply == STATUS:
                    reply = await self._status(client)
                client.offer(reply)
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            self.clients.pop(client.id, None)
            self._limiter.forget(client.id)
            self._m.ws_clients.set(len(self.clients))
            with contextlib.suppress(asyncio.QueueFull):
                client.queue.put_nowait(None)
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await sender

    async def _send_loop(self, client: Client) -> None:
        try:
            while True:
                text = await client.queue.get()
                if text is None:
                    return
                await client.ws.send_text(text)
        except (WebSocketDisconnect, RuntimeError, OSError):
            return  # gone; the receive side notices too

    async def _close(self, client: Client, code: int, reason: str) -> None:
        self.clients.pop(client.id, None)
        self._m.ws_clients.set(len(self.clients))
        if client.ws.application_state is WebSocketState.CONNECTED:
            with contextlib.suppress(Exception):
                await client.ws.close(code, reason)

    # -------------------------------------------------------------------------- messages

    def handle(self, client: Client, raw: str) -> str:
        """One client message to its reply (always an envelope, never an echo); ``STATUS`` for
        ``get_status``, whose answer needs the store (``_status``)."""
        try:
            msg = json.loads(raw)
        except ValueError:
            return envelope("error", {"message": 'messages must be JSON: {"type": …, "data": {…}}'})
        if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
            return envelope("error", {"message": 'a message needs a string "type"'})
        kind = msg["type"]
        data: dict[str, Any] = msg["data"] if isinstance(msg.get("data"), dict) else {}
        topic = data.get("topic", msg.get("topic"))
        if kind in ("subscribe", "unsubscribe"):
            reply = "subscription_response" if kind == "subscribe" else "unsubscription_response"
            if topic not in TOPICS:
                return envelope(
                    "error",
                    {
                        "message": f"unknown topic {topic!r}; topics: {', '.join(TOPICS)}",
                        "topic": topic,
                    },
                )
            if kind == "subscribe":
                client.topics.add(topic)
                text = f"subscribed to {topic}"
            else:
                client.topics.discard(topic)
                text = f"unsubscribed from {topic}"
            return envelope(
                reply, {"topic": topic, "subscribed": topic in client.topics, "message": text}
            )
        if kind == "ping":
            return envelope("pong", {"connection_id": client.id})
        if kind == "get_status":
            return STATUS  # answered by _status, which reads the store off the loop
        return envelope(
            "error",
            {
                "message": f"unknown message type {kind!r}; use subscribe, unsubscribe, ping "
                "or get_status"
            },
        )

    async def _status(self, client: Client) -> str:
        counts = await asyncio.to_thread(self.engine.counts)
        return envelope(
            "status_response",
            {
                "connection_id": client.id,
                "subscribed_topics": sorted(client.topics),
                "available_topics": list(TOPICS),
                "connected_clients": len(self.clients),
                "queue_paused": self.engine.paused,
                "running_task_id": self.engine.running_job_id,
                "pending_tasks": sum(counts[s] for s in STATES_OF["pending"]),
                "processing_tasks": sum(counts[s] for s in STATES_OF["processing"]),
            },
        )
