"""The event half of the remote engine: one WebSocket to ``/api/v1/engine/events``, kept open.

A reader thread receives the server's numbered events and hands them on in order. The server
pings every 2 s; three missed pings mean a dead link, and the reader reconnects with the
project's backoff, asking for everything after the last event it saw. When the server cannot
replay that (a restarted server, or a backlog that moved on) it says "gap", and the engine
refetches its state before applying live events again. The link's state is reported at each
change: up, reconnecting (with why), down (with what to do).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from websockets.exceptions import InvalidStatus, WebSocketException
from websockets.sync.client import ClientConnection, connect

from wan_desktop.engine.events import Event
from wan_desktop.engine.wire import WIRE_VERSION, event_from_wire
from wan_desktop.models.retry import Backoff

log = logging.getLogger("wan_desktop.remote")

DEAD_AFTER_S = 6.0  # three missed pings
RECONNECT = Backoff(tries=0, base_s=0.5, max_s=10.0)
OPEN_TIMEOUT_S = 5.0


class LinkRefusedError(Exception):
    """The server answered the event stream with a refusal (a wrong token, not a wan serve)."""

    def __init__(self, reason: str, what_to_do: str) -> None:
        super().__init__(reason)
        self.what_to_do = what_to_do


class EventStream:
    """Reads the server's events on its own thread until ``close()``.

    ``on_event(event)`` gets each event in order; ``on_resync()`` is called (on the reader
    thread, before any later event) when the server could not replay what was missed;
    ``on_link(state, reason, what_to_do)`` at each change of the link.
    """

    def __init__(
        self,
        url: str,
        headers: dict[str, str],
        *,
        on_event: Callable[[Event], None],
        on_resync: Callable[[], None],
        on_link: Callable[[str, str, str], None],
        backoff: Backoff = RECONNECT,
        dead_after_s: float = DEAD_AFTER_S,
    ) -> None:
        ws = url.replace("https://", "wss://", 1).replace("http://", "ws://", 1)
        self.url = ws + "/api/v1/engine/events"
        self.headers = headers
        self.on_event = on_event
        self.on_resync = on_resync
        self.on_link = on_link
        self.backoff = backoff
        self.dead_after_s = dead_after_s
        self.seq = 0
        self.epoch: str | None = None
        self.state = "connecting"
        self.reconnects = 0
        self._stop = threading.Event()
        self._ws: ClientConnection | None = None
        self._thread = threading.Thread(target=self._run, name="wan-remote-events", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self, timeout: float = 10.0) -> None:
        self._stop.set()
        ws = self._ws
        if ws is not None:
            ws.close()
        if self._thread.is_alive():
            self._thread.join(timeout)

    # ------------------------------------------------------------------------------ thread

    def _link(self, state: str, reason: str = "", what_to_do: str = "") -> None:
        if state == self.state and state == "up":
            return
        self.state = state
        try:
            self.on_link(state, reason, what_to_do)
        except Exception:
            log.exception("the link listener failed")

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                self._session()
                failures = 0
            except LinkRefusedError as exc:
                failures += 1
                self._link("down", str(exc), exc.what_to_do)
            except (OSError, TimeoutError, WebSocketException, ValueError) as exc:
                if self._stop.is_set():
                    return
                failures += 1
                reason = str(exc) or type(exc).__name__
                log.info("event stream: %s", reason)
                self._link(
                    "reconnecting" if failures < 3 else "down",
                    f"the link to the server dropped ({reason})"
                    if failures == 1
                    else f"the server does not answer ({reason})",
                    "the app reconnects by itself; check that `wan serve` runs there",
                )
            if self._stop.is_set():
                return
            self.reconnects += 1
            self._stop.wait(self.backoff.delay(min(failures, 16) or 1))

    def _session(self) -> None:
        query: dict[str, Any] = {}
        if self.epoch is not None:
            query = {"after": self.seq, "epoch": self.epoch}
        url = self.url + ("?" + urlencode(query) if query else "")
        try:
            ws = connect(
                url,
                additional_headers=self.headers,
                open_timeout=OPEN_TIMEOUT_S,
                max_size=64 * 1024 * 1024,
                ping_interval=None,  # the server's pings are the heartbeat
            )
        except InvalidStatus as exc:
            status = exc.response.status_code
            if status in (401, 403):
                raise LinkRefusedError(
                    "the server refused the access token",
                    "give the token that `wan serve` printed: Settings → Engine (or --token)",
                ) from None
            raise LinkRefusedError(
                f"the server has no engine event stream (HTTP {status})",
                "check that the address is that of `wan serve`, of the same version as this app",
            ) from None
        self._ws = ws
        try:
            with ws:
                hello = self._recv(ws)
                if hello.get("type") != "hello" or hello.get("wire") != WIRE_VERSION:
                    raise LinkRefusedError(
                        f"the server's event stream speaks wire {hello.get('wire')!r}, "
                        f"this app {WIRE_VERSION}",
                        "install the same version of Wan Desktop on both machines",
                    )
                replay = hello.get("replay")
                self.epoch = str(hello.get("epoch"))
                if replay != "ok":
                    # Nothing to replay from: what the app shows is rebuilt from the server.
                    self.seq = int(hello.get("seq") or 0)
                    self.on_resync()
                self._link("up")
                while not self._stop.is_set():
                    message = self._recv(ws)
                    kind = message.get("type")
                    if kind == "event":
                        seq = int(message["seq"])
                        if seq <= self.seq:
                            continue  # already applied (a replay overlapping the refetch)
                        self.seq = seq
                        try:
                            event = event_from_wire(message["event"])
                        except (ValueError, KeyError, TypeError) as exc:
                            log.info("skipped an event this app does not know: %s", exc)
                            continue
                        self.on_event(event)
        finally:
            self._ws = None

    def _recv(self, ws: ClientConnection) -> dict[str, Any]:
        raw = ws.recv(timeout=self.dead_after_s)
        message = json.loads(raw)
        if not isinstance(message, dict):
            raise ValueError("the server sent something that is not an event")
        return message
