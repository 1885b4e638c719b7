"""API settings: where it binds, who may call it, and its limits. Light: no FastAPI here."""

from __future__ import annotations

from dataclasses import dataclass

from wan_desktop.access import (
    DEFAULT_HOST,
    DEFAULT_ORIGINS,
    DEFAULT_PORT,
    MIN_TOKEN_CHARS,
    is_loopback,
)

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_ORIGINS",
    "DEFAULT_PORT",
    "ApiConfigError",
    "ApiSettings",
    "is_loopback",
]
MB = 1024 * 1024
API_VERSION = "1.0.0"
API_BASE = "/api/v1"


class ApiConfigError(ValueError):
    """The server cannot start with these settings; the message says what to change."""


@dataclass(frozen=True)
class ApiSettings:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    token: str | None = None  # when set, every call needs "Authorization: Bearer <token>"
    origins: tuple[str, ...] = DEFAULT_ORIGINS
    max_image_bytes: int = 10 * MB
    max_lora_bytes: int = 500 * MB
    # Content-addressed uploads of remote clients (/engine/blobs): least recently used removed
    # past this, except what an unfinished job uses.
    max_blob_store_bytes: int = 4096 * MB
    # Any other request body (JSON, urlencoded): refused with 413 past this.
    max_json_bytes: int = 512 * 1024
    # Request headers: their count (431 past it) and their total size (400 past it).
    max_headers: int = 100
    max_header_bytes: int = 16 * 1024
    # A request must arrive whole within this many seconds, plus one second per
    # ``min_body_rate`` bytes of body (slow or stalled clients are disconnected).
    request_timeout_s: float = 10.0
    min_body_rate: int = 16 * 1024
    # Submissions per client: a burst, then a steady rate (token bucket).
    submit_burst: int = 30
    submit_per_s: float = 2.0
    stats_interval_s: float = 0.5
    # Messages waiting for one WebSocket client; a client this far behind is disconnected.
    client_queue: int = 512
    # Messages one WebSocket client may send: a burst, then a steady rate; past it, it is closed.
    ws_message_burst: int = 40
    ws_messages_per_s: float = 20.0
    history_every_s: float = 5.0
    history_hours: float = 24.0

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def check(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ApiConfigError(f"port {self.port} is not 0–65535")
        if not self.loopback and not self.token:
            raise ApiConfigError(
                f"binding {self.host} exposes the API beyond this machine: give an access token "
                "(wan serve --token …, or the one the app generated: wan serve prints where it is)"
            )
        if self.token is not None and len(self.token) < MIN_TOKEN_CHARS:
            raise ApiConfigError(f"the access token must be at least {MIN_TOKEN_CHARS} characters")
        for origin in self.origins:
            if origin != "*" and not origin.startswith(("http://", "https://")):
                raise ApiConfigError(
                    f"origin {origin!r} must look like http://host:port (or https://…)"
                )
