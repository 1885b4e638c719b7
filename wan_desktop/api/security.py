"""Who may call: an access token (when set) and the allowed browser origins.

A pure ASGI middleware so it guards HTTP and WebSocket alike. A request from a browser page of a
foreign origin is refused outright (403), not just left without CORS headers: a form post or a
WebSocket from any web page would otherwise reach the API.

Without a token (loopback only), the Host header must name this machine too: a web page whose
domain was re-bound to 127.0.0.1 (DNS rebinding) makes same-origin requests that carry no Origin,
and its Host is the attacker's domain.
"""

from __future__ import annotations

import hmac
import json
from urllib.parse import parse_qs

from starlette.types import ASGIApp, Receive, Scope, Send

from .settings import is_loopback

# Reachable without a token: load balancers and the GUI ask these before anything else.
OPEN_PATHS = frozenset({"/health"})


class AccessGuard:
    def __init__(self, app: ASGIApp, *, token: str | None, origins: tuple[str, ...]) -> None:
        self.app = app
        self.token = token
        self.check_host = not token
        self.any_origin = "*" in origins
        self.origins = frozenset(o.rstrip("/") for o in origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host", "")
        if self.check_host and not is_loopback(_hostname(host)):
            await self._refuse(
                scope,
                receive,
                send,
                403,
                f"host {host!r} is not this machine; call the API as localhost or 127.0.0.1 "
                "(to serve other machines, start it with an access token)",
            )
            return
        origin = headers.get("origin")
        if origin is not None and not self._origin_ok(origin, headers.get("host", "")):
            await self._refuse(
                scope,
                receive,
                send,
                403,
                f"origin {origin} is not allowed; add it to the API's allowed origins "
                "(wan serve --origins …, or the app's settings)",
            )
            return
        # CORS preflights carry no credentials; CORSMiddleware answers them.
        preflight = scope["type"] == "http" and scope["method"] == "OPTIONS"
        if self.token and not preflight and scope["path"] not in OPEN_PATHS:
            given = self._bearer(headers.get("authorization", ""))
            if given is None and scope["type"] == "websocket":
                # Browsers cannot set headers on a WebSocket: accept ?token= there.
                query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
                given = (query.get("token") or [None])[0]
            if given is None or not hmac.compare_digest(given.encode(), self.token.encode()):
                await self._refuse(
                    scope,
                    receive,
                    send,
                    401,
                    "missing or wrong access token: send 'Authorization: Bearer <token>' "
                    "(the token is shown in the app's settings and printed by wan serve)",
                )
                return
        await self.app(scope, receive, send)

    def _origin_ok(self, origin: str, host: str) -> bool:
        origin = origin.rstrip("/")
        if self.any_origin or origin in self.origins:
            return True
        # Same origin (the /docs page calling its own server) is not cross-origin.
        return origin in (f"http://{host}", f"https://{host}")

    @staticmethod
    def _bearer(value: str) -> str | None:
        scheme, _, token = value.partition(" ")
        return token.strip() if scheme.lower() == "bearer" and token.strip() else None

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send, status: int, detail: str) -> None:
        body = json.dumps({"detail": detail}).encode()
        if scope["type"] == "websocket":
            if "websocket.http.response" not in scope.get("extensions", {}):
                # Closing before accept makes the server answer the handshake with 403.
                await send({"type": "websocket.close", "code": 1008, "reason": detail[:120]})
                return
            # The handshake answered with the real status (401 for a token) and the reason.
            await send(
                {
                    "type": "websocket.http.response.start",
                    "status": status,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                        *([(b"www-authenticate", b"Bearer")] if status == 401 else []),
                    ],
                }
            )
            await send({"type": "websocket.http.response.body", "body": body})
            return
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),  # rather than read a refused request's body
        ]
        if status == 401:
            headers.append((b"www-authenticate", b"Bearer"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _hostname(host: str) -> str:
    """'localhost:8000' -> 'localhost', '[::1]:8000' -> '::1'."""
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host
