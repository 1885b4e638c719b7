"""Serving the app: ``EmbeddedServer`` on the desktop app's asyncio loop, and the pieces
``wan serve`` shares with it.

uvicorn in an app that owns its loop needs three things (FACTS.md, Desktop traps): no signal
capture (the app handles Ctrl-C and window close), a socket bound before serving (so port 0 gives
a free port we can show), and WebSocket handlers that end when the server stops, or shutdown hangs.
uvicorn and FastAPI load only when a server is built.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import signal
import socket
import threading
from collections.abc import Iterator
from dataclasses import replace
from types import FrameType
from typing import TYPE_CHECKING, Any

from .settings import DEFAULT_ORIGINS, ApiConfigError, ApiSettings

if TYPE_CHECKING:
    from wan_desktop.engine import Engine

log = logging.getLogger("wan_desktop.api.server")

START_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 10.0
GRACEFUL_S = 3
WS_CLOSE_TIMEOUT_S = 1.0


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket; port 0 picks a free one. Raises ApiConfigError when taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        raise ApiConfigError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}; choose another port "
            "(0 picks a free one) or stop what uses it"
        ) from None
    # Accepted connections inherit this. Without it, a response written as headers then body
    # waits for the client's delayed ACK: every small answer took ~45 ms instead of ~3 ms.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.listen(128)
    sock.setblocking(False)
    return sock


_SECRET = re.compile(r"((?:^|[?&;\s])(?:token|access_token)=)[^&\s\"']*", re.IGNORECASE)


class RedactSecrets(logging.Filter):
    """Writes ``token=…`` in a log line (uvicorn logs each WebSocket path with its query, and
    browsers send the access token there) as ``token=[redacted]``."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "token=" in message.lower():
            record.msg = _SECRET.sub(r"\1[redacted]", message)
            record.args = None
        return True


def redact_server_logs() -> None:
    """Install ``RedactSecrets`` on uvicorn's loggers (once)."""
    for name in ("uvicorn.error", "uvicorn.access", "uvicorn"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactSecrets) for f in logger.filters):
            logger.addFilter(RedactSecrets())


def make_server(app: Any, *, capture_signals: bool, log_level: str = "warning") -> Any:
    import uvicorn

    settings: ApiSettings = app.state.ctx.settings

    class Server(uvicorn.Server):
        # The signal that stopped the server (wan serve exits with 128 + it), or None.
        stopped_by: int | None = None

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            if self.stopped_by is None:
                self.stopped_by = sig
            super().handle_exit(sig, frame)

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            """Stop on SIGINT/SIGTERM while serving, then restore the previous handlers.

            uvicorn's own version re-raises the signal afterwards for the caller to act on: with
            SIGINT ignored (a server started in the background by a script inherits that) the
            re-raised signal vanished and ``wan serve`` exited 0 after Ctrl-C; with SIGTERM the
            process died before the engine was shut down. The caller reads ``stopped_by``.
            """
            if not capture_signals or threading.current_thread() is not threading.main_thread():
                yield
                return
            from uvicorn.server import HANDLED_SIGNALS

            previous = {sig: signal.signal(sig, self.handle_exit) for sig in HANDLED_SIGNALS}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    config = uvicorn.Config(
        app,
        log_level=log_level,
        lifespan="on",
        http=guarded_h11(settings),
        ws=quick_close_ws(),
        # Client messages are small JSON commands.
        ws_max_size=64 * 1024,
        timeout_graceful_shutdown=GRACEFUL_S,
        timeout_keep_alive=5,
        h11_max_incomplete_event_size=settings.max_header_bytes,
        access_log=False,
    )
    redact_server_logs()  # after Config, which (re)configures uvicorn's logging
    return Server(config)


def quick_close_ws() -> type[asyncio.Protocol]:
    """uvicorn's websockets (sans-I/O) protocol, waiting ``WS_CLOSE_TIMEOUT_S`` instead of 10 s
    for a client to answer our close frame, then dropping the connection. Until then every frame
    it sends is still read and parsed (then dropped): a flooding client closed for its rate kept
    the loop busy for 10 s."""
    from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

    from .sockets import CLOSE_POLICY

    class QuickCloseProtocol(WebSocketsSansIOProtocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.close_timeout = WS_CLOSE_TIMEOUT_S

        async def send(self, message: Any) -> None:
            timer = self.close_timer
            await super().send(message)
            if message.get("type") == "websocket.close" and message.get("code") == CLOSE_POLICY:
                # Closed for what it sent (a flood): read nothing more from it.
                with contextlib.suppress(Exception):
                    self.transport.pause_reading()
            if self.close_timer is not None and self.close_timer is not timer:
                # Abort rather than close: a client that never reads would keep a plain close
                # waiting on the unsent bytes.
                self.close_timer.cancel()
                self.close_timer = self.loop.call_later(self.close_timeout, self.transport.abort)

    return QuickCloseProtocol


def guarded_h11(settings: ApiSettings) -> type[asyncio.Protocol]:
    """uvicorn's h11 protocol with a deadline on every request.

    h11 bounds the request line and headers (``max_header_bytes``: 400 past it). uvicorn itself
    times out only idle keep-alive sockets, and only until their first byte: a client that never
    sends, trickles its headers or stalls its body would hold a socket forever. Here a request
    must arrive whole within ``request_timeout_s`` of the connection (or of the previous answer),
    plus one second per ``min_body_rate`` bytes of body received; otherwise the socket is closed.
    """
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    timeout = settings.request_timeout_s
    rate = max(1, settings.min_body_rate)
    incomplete = (h11.IDLE, h11.SEND_BODY)

    class GuardedH11Protocol(H11Protocol):
        _since = 0.0
        _received = 0
        _deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self._deadline is not None:
                self._received += len(data)
            super().data_received(data)
            if self.conn.their_state not in incomplete:
                self._disarm()  # the request is whole; answering it may take as long as it takes

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm()  # the next request on this connection gets its own deadline

        def handle_websocket_upgrade(self, event: h11.Request) -> None:
            self._disarm()
            super().handle_websocket_upgrade(event)

        def _arm(self) -> None:
            self._disarm()
            self._since = self.loop.time()
            self._received = 0
            self._deadline = self.loop.call_later(timeout, self._check)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _check(self) -> None:
            self._deadline = None
            if self.transport.is_closing() or self.conn.their_state not in incomplete:
                return
            due = self._since + timeout + self._received / rate
            now = self.loop.time()
            if now < due:
                self._deadline = self.loop.call_later(due - now, self._check)
                return
            log.info("closed a connection whose request did not arrive within %.0f s", timeout)
            self.transport.close()

    return GuardedH11Protocol


class EmbeddedServer:
    """The API on the running asyncio loop (the desktop app's qasync loop).

    ``await start()`` returns once it accepts connections; ``await stop()`` closes WebSocket
    clients, stops uvicorn and returns; the engine stays running (the app owns it).
    """

    def __init__(
        self,
        engine: Engine,
        *,
        host: str = "127.0.0.1",
        port: int = 8000,
        token: str | None = None,
        origins: tuple[str, ...] | list[str] = DEFAULT_ORIGINS,
        settings: ApiSettings | None = None,
    ) -> None:
        base = settings or ApiSettings()
        self.settings = replace(base, host=host, port=port, token=token, origins=tuple(origins))
        self.settings.check()  # refuse a non-loopback bind without a token at once
        self.engine = engine
        self.app: Any = None
        self._server: Any = None
        self._task: asyncio.Task[None] | None = None
        self._port = port

    @property
    def url(self) -> str:
        return replace(self.settings, port=self._port).url

    @property
    def port(self) -> int:
        return self._port

    @property
    def running(self) -> bool:
        return (
            self._task is not None
            and not self._task.done()
            and self._server is not None
            and bool(self._server.started)
        )

    async def start(self) -> None:
        if self.running:
            return
        from .app import create_app

        sock = bind_socket(self.settings.host, self.settings.port)
        self._port = sock.getsockname()[1]
        self.app = create_app(self.engine, replace(self.settings, port=self._port))
        self._server = make_server(self.app, capture_signals=False)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]), name="wan-api")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + START_TIMEOUT_S
        while not self._server.started:
            if self._task.done():
                sock.close()
                exc = self._task.exception()
                raise ApiConfigError(f"the API server did not start: {exc or 'it exited'}")
            if loop.time() > deadline:
                await self.stop()
                raise ApiConfigError("the API server did not start within 15 s")
            await asyncio.sleep(0.02)
        log.info("API at %s", self.url)

    async def stop(self) -> None:
        server, task = self._server, self._task
        if server is None or task is None:
            return
        # Close WebSocket clients first (the frontend's /ws and the engine's event stream):
        # their handlers end, so uvicorn's shutdown cannot hang.
        if self.app is not None:
            with contextlib.suppress(Exception):
                await self.app.state.ctx.hub.stop()
                await self.app.state.ctx.events.stop()
        server.should_exit = True
        try:
            await asyncio.wait_for(asyncio.shield(task), STOP_TIMEOUT_S)
        except TimeoutError:
            server.force_exit = True
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(task, 2.0)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("the API server stopped with an error")
        finally:
            self._server = None
            self._task = None
