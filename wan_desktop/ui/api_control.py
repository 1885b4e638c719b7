"""The local API switch: runs the API server on the app's own asyncio loop (qasync).

The GUI never imports the API: the app's entry point hands it a factory that makes a server
``factory(engine, *, host, port, token, origins)`` with ``async start()``, ``async stop()``,
``.url`` and ``.running`` (``wan_desktop.api.server.EmbeddedServer``). With no factory (an install
without the API) the switch says so. On loopback no token is asked, as the contract wants (the
React frontend sends none); any other address requires it. The GUI never calls its own server
synchronously (that would deadlock the loop it runs on).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, Signal

from wan_desktop.access import is_loopback
from wan_desktop.engine import Engine

from .config import AppSettings

log = logging.getLogger("wan_desktop.ui")

ServerFactory = Callable[..., Any]


class ApiController(QObject):
    state_changed = Signal(str)  # a sentence for the Settings panel and the status bar

    def __init__(
        self,
        engine: Engine | None,
        factory: ServerFactory | None,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.engine = engine
        self.factory = factory
        self.server: Any = None
        self.error: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping: Any = None  # the server being stopped

    @property
    def available(self) -> bool:
        return self.factory is not None and self.engine is not None

    @property
    def running(self) -> bool:
        """Serving, or still stopping: the loop must not end before a stop has finished."""
        server = self.server or self._stopping
        return bool(server is not None and getattr(server, "running", False))

    def describe(self) -> str:
        if self.engine is None:
            return "API off: the app drives a server's engine"
        if not self.available:
            return "API not installed in this build"
        if self.error:
            return f"API error: {self.error}"
        if self.running:
            return f"API serving at {self.server.url}"
        return "API off"

    def apply(self, settings: AppSettings) -> None:
        """Start, stop or restart the server to match the settings (returns at once)."""
        if not self.available:
            self.state_changed.emit(self.describe())
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            try:
                loop = asyncio.get_event_loop()
            except RuntimeError:
                self.error = "no event loop is running"
                self.state_changed.emit(self.describe())
                return
        self._task = loop.create_task(self._apply(settings))

    async def _apply(self, settings: AppSettings) -> None:
        self.error = None
        try:
            await self.stop()
            if settings.api_enabled and self.factory is not None:
                local = is_loopback(settings.api_host)
                server = self.factory(
                    self.engine,
                    host=settings.api_host,
                    port=settings.api_port,
                    token=None if local else settings.api_token or None,
                    origins=list(settings.api_origins),
                )
                await server.start()
                self.server = server
        except Exception as exc:
            log.warning("local API could not start: %s", exc)
            self.error = str(exc) or type(exc).__name__
            self.server = None
        self.state_changed.emit(self.describe())

    async def stop(self) -> None:
        """Stop the server and wait until it has (its lifespan's tasks ended): a switch made
        just before (``apply``, still in progress) is waited for first, so the app's loop never
        ends with a server half stopped."""
        pending = self._task
        if pending is not None and pending is not asyncio.current_task() and not pending.done():
            await asyncio.shield(pending)  # _apply reports its own errors
        server, self.server = self.server, None
        if server is not None and getattr(server, "running", False):
            self._stopping = server
            try:
                await server.stop()
            finally:
                self._stopping = None
