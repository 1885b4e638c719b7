"""The HTTP half of the remote engine: ``/api/v1/engine/*`` with the bearer token, and the
server's refusals turned back into the engine's own exceptions."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from typing import Any

import httpx

from wan_desktop.engine.errors import (
    EngineError,
    InvalidInputError,
    JobNotFoundError,
    StoreUnavailableError,
)

from .errors import BadAddressError, RemoteCommandError, ServerUnreachableError, WrongTokenError

log = logging.getLogger("wan_desktop.remote")

PREFIX = "/api/v1/engine"
TIMEOUT_S = 30.0
CONNECT_TIMEOUT_S = 5.0


def normalise_url(url: str) -> str:
    """``gpu-box:8000`` → ``http://gpu-box:8000``; no trailing slash. BadAddressError if
    unusable."""
    text = url.strip().rstrip("/")
    if "://" not in text:
        text = "http://" + text
    try:
        parsed = httpx.URL(text)
    except httpx.InvalidURL:
        raise BadAddressError(url) from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise BadAddressError(url)
    return text


class Http:
    """One keep-alive connection pool to a server; safe from any thread."""

    def __init__(self, url: str, token: str | None) -> None:
        self.url = normalise_url(url)
        self.token = token or None
        self.client = httpx.Client(
            base_url=self.url + PREFIX,
            headers=self.auth_headers(),
            timeout=httpx.Timeout(TIMEOUT_S, connect=CONNECT_TIMEOUT_S),
        )

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Any = None,
        content: bytes | Iterator[bytes] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        try:
            response = self.client.request(
                method, path, json=json, params=params, content=content, headers=headers
            )
        except httpx.TransportError as exc:
            raise ServerUnreachableError(self.url, str(exc) or type(exc).__name__) from None
        if response.status_code >= 400:
            raise self.error(response, path)
        return response

    def get(self, path: str, **kw: Any) -> Any:
        return _body(self.request("GET", path, **kw))

    def post(self, path: str, json: Any = None, **kw: Any) -> Any:
        return _body(self.request("POST", path, json=json, **kw))

    def put(self, path: str, json: Any = None, **kw: Any) -> Any:
        return _body(self.request("PUT", path, json=json, **kw))

    def delete(self, path: str, **kw: Any) -> Any:
        return _body(self.request("DELETE", path, **kw))

    def error(self, response: httpx.Response, path: str) -> EngineError:
        status = response.status_code
        try:
            body = response.json()
        except ValueError:
            body = {}
        body = body if isinstance(body, Mapping) else {}
        detail = body.get("detail")
        code = body.get("code")
        code = str(code) if code is not None else None
        if status in (401, 403):
            return WrongTokenError(self.url)
        if status == 422 and (isinstance(detail, list) or "errors" in body):
            return InvalidInputError(_field_errors(body.get("errors") or detail))
        message = detail if isinstance(detail, str) else f"the server answered HTTP {status}"
        if status == 404 and path.startswith("/jobs/"):
            return JobNotFoundError(path.split("/")[2])
        if status in (503, 507) and code in ("storage_full", "read_only", "damaged", "busy"):
            suggestions = tuple(str(s) for s in body.get("suggestions") or ())
            return StoreUnavailableError(message, reason=code, suggestions=suggestions)
        return RemoteCommandError(message, status=status, code=code)

    def close(self) -> None:
        self.client.close()


def _body(response: httpx.Response) -> Any:
    if response.status_code == 204 or not response.content:
        return None
    return response.json()


def _field_errors(errors: Any) -> dict[str, str]:
    """FastAPI's error list (``loc`` + ``msg``) or a plain mapping, as field → message."""
    if isinstance(errors, Mapping):
        return {str(k): str(v) for k, v in errors.items()}
    out: dict[str, str] = {}
    for e in errors or ():
        if isinstance(e, Mapping):
            loc = [str(p) for p in e.get("loc") or () if p not in ("body", "query", "params")]
            out[".".join(loc) or "request"] = str(e.get("msg") or e)
        else:
            out.setdefault("request", str(e))
    return out or {"request": "the server refused the request"}
