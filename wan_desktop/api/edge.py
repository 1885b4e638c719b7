"""The server's edge: what no route can take is refused here, once, before any route runs.

One pure ASGI middleware, so every route, FastAPI-parsed or parsed by hand, gets the same rules:

- at most ``max_headers`` request headers (431);
- a path and query string that decode as UTF-8 (422);
- a request body of at most ``max_json_bytes`` (413, answered from Content-Length before reading,
  or as soon as a chunked body passes the cap) — except multipart uploads to the routes that take
  files, which keep their own, larger, streaming limits (``uploads.read_form``), and the raw
  content-addressed uploads (``PUT /engine/blobs/{sha256}``, capped by ``blobs.BlobStore``);
- a JSON or form body that is UTF-8, nested at most ``MAX_DEPTH`` deep, and holds no text that
  cannot be encoded as UTF-8 (a lone surrogate such as ``"\\ud800"`` is valid JSON, but no file,
  database or log can store it): 422 naming the field.

Multipart form fields are checked by ``uploads.read_form`` with ``unencodable``.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import unquote_to_bytes

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import detail_list
from .settings import API_BASE

MAX_DEPTH = 64
# Routes that take multipart/form-data files; their bodies are capped by the route itself.
FORM_ROUTES = re.compile(
    rf"^{re.escape(API_BASE)}/(generation/submit|lora/upload|lora/[^/]+/preview)/?$"
)
# Routes that take a raw file body (any content type); capped by the route itself.
RAW_ROUTES = re.compile(rf"^{re.escape(API_BASE)}/engine/blobs/[^/]+$")


class RefusedError(Exception):
    def __init__(self, status: int, detail: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def unencodable(value: Any, where: str = "body") -> str | None:
    """The path of the first text in ``value`` (keys included) that UTF-8 cannot encode, or None.

    Iterative, so a deep value cannot exhaust the stack; deeper than ``MAX_DEPTH`` is an error.
    """
    stack: list[tuple[Any, str, int]] = [(value, "", 0)]
    while stack:
        item, path, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise RefusedError(
                422,
                detail_list({path or where: f"nested more than {MAX_DEPTH} levels deep"}, where),
            )
        if isinstance(item, str):
            if not encodes(item):
                return path or where
        elif isinstance(item, dict):
            for key, sub in item.items():
                name = f"{path}.{key}" if path else str(key)
                if isinstance(key, str) and not encodes(key):
                    return path or where
                stack.append((sub, name, depth + 1))
        elif isinstance(item, list | tuple):
            stack.extend((sub, f"{path}[{i}]", depth + 1) for i, sub in enumerate(item))
    return None


def encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def not_utf8(field: str, where: str = "body") -> RefusedError:
    return RefusedError(
        422,
        detail_list(
            {
                field: "holds text that is not valid Unicode (a lone surrogate such as \\ud800); "
                "send UTF-8 text"
            },
            where,
        ),
    )


def check_json(body: bytes) -> None:
    """Refuse (422) a JSON body that is not UTF-8, too deep, or holds unencodable text.

    A body that is not JSON at all passes: each route says so in its own words.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise RefusedError(422, detail_list({"body": "the body is not UTF-8 text"})) from None
    try:
        value = json.loads(text)
    except RecursionError:
        raise RefusedError(
            422, detail_list({"body": f"the JSON is nested more than {MAX_DEPTH} levels deep"})
        ) from None
    except ValueError:
        return
    field = unencodable(value)
    if field is not None:
        raise not_utf8(field)


def check_query(raw: bytes, where: str = "query") -> None:
    """Refuse (422) a query string or urlencoded form whose decoded text is not UTF-8."""
    try:
        unquote_to_bytes(raw.replace(b"+", b" ")).decode("utf-8")
    except UnicodeDecodeError:
        raise not_utf8(where, where) from None


class EdgeGuard:
    def __init__(self, app: ASGIApp, *, max_json_bytes: int, max_headers: int) -> None:
        self.app = app
        self.max_json_bytes = max_json_bytes
        self.max_headers = max_headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        try:
            if len(scope["headers"]) > self.max_headers:
                raise RefusedError(431, f"more than {self.max_headers} request headers; send fewer")
            check_query(scope.get("query_string", b""))
            raw_path = scope.get("raw_path")
            if raw_path:
                try:
                    unquote_to_bytes(raw_path).decode("utf-8")
                except UnicodeDecodeError:
                    raise not_utf8("path", "path") from None
        except RefusedError as refused:
            await _answer(scope, send, refused)
            return
        if scope["type"] == "websocket" or not self._has_body(scope):
            await self.app(scope, receive, send)
            return
        content_type = _header(scope, b"content-type").lower()
        if content_type.startswith("multipart/form-data") and FORM_ROUTES.match(scope["path"]):
            await self.app(scope, receive, send)  # read_form caps and checks it
            return
        if scope["method"] == "PUT" and RAW_ROUTES.match(scope["path"]):
            await self.app(scope, receive, send)  # the blob store caps and hashes it
            return
        try:
            body = await self._read(scope, receive)
            if content_type.startswith("application/x-www-form-urlencoded"):
                check_query(body, "body")
            elif body and (not content_type or "json" in content_type):
                check_json(body)
        except RefusedError as refused:
            await _answer(scope, send, refused)
            return
        await self.app(scope, _replay(body, receive), send)

    @staticmethod
    def _has_body(scope: Scope) -> bool:
        length = _header(scope, b"content-length").strip()
        return bool(length and length != "0") or bool(_header(scope, b"transfer-encoding"))

    async def _read(self, scope: Scope, receive: Receive) -> bytes:
        cap = self.max_json_bytes
        too_large = RefusedError(413, f"the request body is over {cap // 1024} KB; send less")
        declared = _header(scope, b"content-length")
        if declared:
            try:
                if int(declared) > cap:
                    raise too_large
            except ValueError:
                raise RefusedError(400, "Content-Length is not a number") from None
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > cap:
                raise too_large
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return ""


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _answer(scope: Scope, send: Send, refused: RefusedError) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1007, "reason": "invalid request"})
        return
    body = json.dumps({"detail": refused.detail}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        # Close rather than read (and discard) the rest of a refused body.
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": refused.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
