"""The program-facing event stream (``/api/v1/engine/events``): every engine event, numbered.

One subscriber on the engine's bus numbers each event once (``seq`` from 1 upward in this server
process, with a random ``epoch`` per process) and keeps a bounded backlog of the serialised
events, so a client that lost its link asks for "everything after N" and gets exactly the events
it missed, or is told the backlog no longer reaches back that far (``gap``: it refetches state).
Previews and memory samples are sent live but left out of the backlog (a newer one supersedes
them); job state changes are always kept.

Events are serialised on the bus's delivery thread and handed to the asyncio loop with
``call_soon_threadsafe``, in order. Each client has a bounded queue and its own sender task: a
client far behind loses progress events first and is disconnected when its queue is full (it
reconnects with ``after=`` and gets the backlog). Every ``PING_S`` seconds each client gets a
ping carrying the latest ``seq``, so a dead link is noticed within a few seconds.

The wire is described in docs/remote-wire.md.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import secrets
import threading
import time
from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any

from starlette.websockets import WebSocket

from wan_desktop.engine import Engine, Event
from wan_desktop.engine.events import JobPreview, JobStep, MemorySample, ModelDownload
from wan_desktop.engine.wire import WIRE_VERSION, event_to_wire

from .settings import ApiSettings
from .sockets import SocketClient, Sockets

log = logging.getLogger("wan_desktop.api.event_log")

PING_S = 2.0
BACKLOG_EVENTS = 4096
BACKLOG_BYTES = 64 * 1024 * 1024
# Sent live, never replayed: a newer one supersedes each.
NOT_KEPT = (JobPreview, MemorySample)
# A client falling behind loses these first (its next one carries the same news).
DROPPABLE = (JobStep, JobPreview, MemorySample, ModelDownload)
CLOSE_BAD_REQUEST = 1008


@dataclass(frozen=True)
class Numbered:
    seq: int
    text: str  # the whole ``{"type": "event", ...}`` message
    droppable: bool


def event_message(seq: int, event: Event) -> str:
    message = {"type": "event", "seq": seq, "event": event_to_wire(event)}
    try:
        return json.dumps(message, separators=(",", ":"), allow_nan=False)
    except ValueError:
        # A NaN or infinity in a figure: sent as JSON's common extension (Python reads it)
        # rather than losing the event, which may be a job's last state.
        log.warning("%s carries a non-finite number", type(event).__name__)
        return json.dumps(message, separators=(",", ":"))


class StreamClient(SocketClient):
    def __init__(self, ws: WebSocket, maxsize: int) -> None:
        super().__init__(ws, maxsize)
        self.high = 0  # the highest seq queued: what the replay sent is never sent twice

    def offer(self, item: Numbered) -> bool:
        """Queue an event; False when the client is hopelessly behind."""
        if item.seq <= self.high:
            return True
        if self.put(item.text, item.droppable) == "full":
            return False
        self.high = item.seq
        return True

    def say(self, text: str) -> None:
        """A control message (ping): skipped when the queue is full (the events say more)."""
        with contextlib.suppress(asyncio.QueueFull):
            self.queue.put_nowait(text)


class EventLog(Sockets[StreamClient]):
    SUBSCRIBER = "api-engine-events"
    PERIODIC = "engine-events-ping"
    SENDER = "engine-events"

    def __init__(
        self,
        engine: Engine,
        settings: ApiSettings,
        *,
        max_events: int = BACKLOG_EVENTS,
        max_bytes: int = BACKLOG_BYTES,
        ping_s: float = PING_S,
    ) -> None:
        super().__init__(engine, settings)
        self.epoch = secrets.token_hex(8)
        self.max_events = max_events
        self.max_bytes = max_bytes
        self.ping_s = ping_s
        self._seq = 0
        self._backlog: collections.deque[Numbered] = collections.deque()
        self._bytes = 0
        self._lock = threading.Lock()

    # ---------------------------------------------------------------------------- backlog

    @property
    def latest(self) -> int:
        return self._seq

    @property
    def oldest(self) -> int:
        """The oldest seq the backlog holds; ``latest + 1`` when it holds none."""
        with self._lock:
            return self._backlog[0].seq if self._backlog else self._seq + 1

    def record(self, event: Event) -> Numbered:
        """Number ``event`` and keep it in the backlog (bounded by count and bytes)."""
        with self._lock:
            text = event_message(self._seq + 1, event)
            self._seq += 1  # only once it is a message: no seq is ever skipped for an error
            item = Numbered(self._seq, text, isinstance(event, DROPPABLE))
            if not isinstance(event, NOT_KEPT):
                self._backlog.append(item)
                self._bytes += len(item.text)
                while self._backlog and (
                    len(self._backlog) > self.max_events or self._bytes > self.max_bytes
                ):
                    self._bytes -= len(self._backlog.popleft().text)
        return item

    def replay(self, after: int | None, epoch: str | None) -> tuple[str, list[Numbered], str, int]:
        """What a client that saw everything up to ``after`` (of ``epoch``) gets first: the
        replay mode (``ok``, ``gap``, or ``fresh`` without ``after``), the backlog events it
        missed, and the hello message that says so. One look under the lock, so the hello's
        ``seq`` is exactly where the replay ends."""
        with self._lock:
            latest = self._seq
            oldest = self._backlog[0].seq if self._backlog else latest + 1
            items: list[Numbered] = []
            if after is None:
                mode = "fresh"
            elif epoch != self.epoch or after > latest or after + 1 < oldest:
                mode = "gap"
            else:
                mode = "ok"
                items = [item for item in self._backlog if item.seq > after]
        hello = json.dumps(
            {
                "type": "hello",
                "wire": WIRE_VERSION,
                "epoch": self.epoch,
                "seq": latest,
                "oldest": oldest,
                "replay": mode,
            }
        )
        return mode, items, hello, latest

    # --------------------------------------------------------------------- engine events

    def on_event(self, event: Event) -> None:
        """On the bus's delivery thread: number, serialise, keep; then hand to the loop."""
        try:
            item = self.record(event)
        except Exception:
            log.exception("could not serialise %s for the event stream", type(event).__name__)
            return
        self.hand_over(item)

    def fanout(self, item: Numbered) -> None:
        for client in list(self.clients.values()):
            if not client.offer(item):
                self.drop_slow(client)

    async def periodic(self) -> None:
        """A ping to every client: the latest seq, and a sign that the link lives."""
        while True:
            await asyncio.sleep(self.ping_s)
            now = time.time()
            for client in list(self.clients.values()):
                # The latest seq this client has been handed: it has missed nothing up to it.
                client.say(json.dumps({"type": "ping", "seq": client.high, "t": now}))

    # --------------------------------------------------------------------------- clients

    async def serve(self, ws: WebSocket) -> None:
        query = ws.query_params
        after_text, epoch = query.get("after"), query.get("epoch")
        after: int | None = None
        if after_text is not None:
            try:
                after = int(after_text)
            except ValueError:
                after = -1
            if after < 0:
                await ws.accept()
                await ws.close(CLOSE_BAD_REQUEST, "after must be a whole number of 0 or more")
                return
        await ws.accept()
        client = StreamClient(ws, max(self.settings.client_queue, 64))
        # On the loop, where live events are fanned out: the replay and the registration
        # happen with no event slipping between them (StreamClient.high drops a repeat).
        _, items, hello, latest = self.replay(after, epoch)
        client.high = latest  # live events after the hello's seq; the replay covers the rest
        # The stream takes nothing from clients; a flood is closed like on /ws.
        await self.run_client(
            client,
            [hello, *(item.text for item in items)],
            _ignore,
            "this stream takes no messages",
        )


async def _ignore(_client: StreamClient, _message: MutableMapping[str, Any]) -> None:
    pass
