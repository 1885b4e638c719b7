"""The ``/ws`` protocol: engine events in, ``{type, data}`` messages out.

Engine events are translated and serialised on the bus's subscriber thread, then fanned out on
the loop to the clients subscribed to their topic. The plumbing (bounded queues that drop
progress first and disconnect a client too far behind, the per-client rate limit, shutdown) is
the one of ``sockets.py``, shared with the engine event stream. No message is answered with
blocking work on the loop: ``get_status`` reads the store's counts in a worker thread.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, MutableMapping
from typing import Any

from starlette.websockets import WebSocket

from wan_desktop.engine import Engine, Event, JobKind

from .mapping import STATES_OF, Mapper
from .metrics import metrics
from .settings import ApiSettings
from .sockets import SocketClient, Sockets
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

STATUS = "\0status"  # handle()'s marker for a get_status, answered off the loop


class Client(SocketClient):
    def __init__(self, ws: WebSocket, maxsize: int) -> None:
        super().__init__(ws, maxsize)
        self.topics: set[str] = set()

    def offer(self, text: str, droppable: bool = False) -> bool:
        """Queue a message; False when the client is hopelessly behind."""
        put = self.put(text, droppable)
        if put == "dropped":
            metrics().ws_dropped.inc()
        return put != "full"


class Hub(Sockets[Client], EventTranslator):
    SUBSCRIBER = "api-ws"
    PERIODIC = "ws-stats"
    SENDER = "ws-send"

    def __init__(
        self,
        engine: Engine,
        mapper: Mapper,
        stats: SystemStats,
        settings: ApiSettings,
    ) -> None:
        super().__init__(engine, settings)
        self.mapper = mapper
        self.stats = stats
        self.downloads: dict[tuple[str, str], dict[str, Any]] = {}
        # Kind and label of each job seen, for its step and stage events (which carry only the
        # id); kept while the job may still send events.
        self._jobs: dict[str, tuple[JobKind, str | None]] = {}
        self._m = metrics()
        # Test and benchmark hook: called on the loop with each batch just queued.
        self.on_fanout: Callable[[list[Outgoing]], None] | None = None

    # --------------------------------------------------------------------- engine events

    def on_event(self, event: Event) -> None:
        """On the subscriber thread: translate and serialise, then hand to the loop."""
        self._m.events.labels(type=type(event).__name__).inc()
        try:
            out = self.translate(event)
        except Exception:
            log.exception("could not translate %s", type(event).__name__)
            return
        if out:
            self.hand_over(out)

    def fanout(self, out: list[Outgoing]) -> None:
        for client in list(self.clients.values()):
            for topic, kind, text, droppable in out:
                if topic is not ALL and topic not in client.topics:
                    continue
                if not client.offer(text, droppable):
                    self.drop_slow(client)
                    break
                self._m.ws_messages.labels(type=kind).inc()
        if self.on_fanout is not None:
            self.on_fanout(out)

    async def periodic(self) -> None:
        """The system stats, to the clients that subscribed to them."""
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
            self.fanout(
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
        established = envelope(
            "connection_established",
            {
                "connection_id": client.id,
                "available_topics": list(TOPICS),
                "message": "connected to Wan Desktop; subscribe to topics for more updates",
            },
        )
        await self.run_client(
            client,
            [established],
            self._answer,
            f"over {self.settings.ws_messages_per_s:g} messages a second; slow down",
        )

    async def _answer(self, client: Client, message: MutableMapping[str, Any]) -> None:
        raw = message.get("text")
        if raw is None:
            raw = (message.get("bytes") or b"").decode("utf-8", "replace")
        reply = self.handle(client, raw)
        if reply == STATUS:
            reply = await self._status(client)
        client.offer(reply)

    def clients_changed(self) -> None:
        self._m.ws_clients.set(len(self.clients))

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
