"""The local HTTP + WebSocket API: the React frontend's ``/api/v1`` and ``/ws``, over the engine.

``create_app(engine, settings)`` (``app.py``) builds the FastAPI app; ``EmbeddedServer``
(``server.py``) serves it on the desktop app's asyncio loop; ``wan serve`` (``cli.py``) serves it
headless. This package's ``__init__`` imports nothing heavy: FastAPI loads only when a server is
built.
"""

from __future__ import annotations

from .settings import DEFAULT_ORIGINS, ApiConfigError, ApiSettings

__all__ = ["DEFAULT_ORIGINS", "ApiConfigError", "ApiSettings"]
