"""How failures become answers: one place maps engine and orchestrator errors to HTTP.

422 validation, 404 unknown id, 400/409 a state that forbids the action, 429 too many
submissions, 507 a full data folder, 503 a read-only or damaged job store. Never a 500 for bad
input.

The program-facing engine routes (``/api/v1/engine``) answer every error as
``{"detail": text, "code": kind, ...}`` with the fields the client needs to raise the same
exception type (``engine_error`` below; docs/remote-wire.md lists them).

A 422 on the React frontend's routes carries ``detail`` as ONE readable string naming every bad
field (the frontend shows ``detail`` only when it is a string) and the structured list, FastAPI's
shape, under ``errors``. The explainer routes (``/videos``, ``/jobs``) keep FastAPI's list in
``detail``. Either way an echoed input is cut to a short excerpt: a 422 never repeats a large body.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from wan_desktop.engine import EngineError, InvalidInputError, JobNotFoundError, JobStateError
from wan_desktop.engine.errors import StoreUnavailableError
from wan_desktop.engine.lora_library import LoraExistsError, LoraNotFoundError
from wan_desktop.models import ModelError
from wan_desktop.models.errors import ErrorCode

from .blobs import BlobError
from .settings import API_BASE

log = logging.getLogger("wan_desktop.api")

# Engine parameter names in the contract's words.
FIELD_NAMES = {"model": "model_type", "frames": "num_frames", "loras[0]": "lora_path"}


def detail_list(errors: Mapping[str, str], where: str = "body") -> list[dict[str, object]]:
    return [
        {
            "loc": [where, FIELD_NAMES.get(name, name)],
            "msg": f"{FIELD_NAMES.get(name, name)}: {msg}",
            "type": "value_error",
        }
        for name, msg in errors.items()
    ]


def invalid(field: str, message: str, where: str = "body") -> HTTPException:
    """A 422 naming one field, shaped like FastAPI's own validation errors."""
    return HTTPException(422, detail=detail_list({field: message}, where))


def json_safe(value: Any) -> Any:
    """Echoed inputs may hold Infinity or NaN, which JSON cannot carry: write them as text."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


EXCERPT_CHARS = 80  # of an echoed input string
# Routes of the explainer-video API: their clients read FastAPI's list in ``detail``.
EXPLAINER_ROUTES = (f"{API_BASE}/videos", f"{API_BASE}/jobs")


def excerpt(value: Any) -> Any:
    """A short, JSON-safe stand-in for an echoed input: long text is cut, containers summarised."""
    if isinstance(value, str):
        if len(value) <= EXCERPT_CHARS:
            return value
        return f"{value[:EXCERPT_CHARS]}… ({len(value)} characters)"
    if isinstance(value, bytes | bytearray):
        return f"<{len(value)} bytes>"
    if isinstance(value, Mapping):
        return f"<object with {len(value)} fields>"
    if isinstance(value, list | tuple):
        return f"<list of {len(value)} items>"
    return json_safe(value)


MAX_UNKNOWN_REPORTED = 10
_OUT_OF_RANGE = ("greater_than_equal", "less_than_equal", "finite_number")


def in_words(
    errors: Sequence[Mapping[str, Any]],
    schema: Mapping[str, Any],
    aliases: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Pydantic's errors for a request body in the contract's words, by field name.

    The words are read from the model's JSON schema (the one /openapi.json shows): a field's
    bounds, choices and description. ``aliases`` maps other accepted names to the fields'.
    """
    aliases = aliases or {}
    props = schema.get("properties", {})
    out: dict[str, str] = {}
    unknown: list[str] = []
    for e in errors:
        loc = e.get("loc") or ("body",)
        key = str(loc[0])
        if e.get("type") == "extra_forbidden":
            if key in aliases:  # the field sent under both of its names
                out[aliases[key]] = f"send {aliases[key]} or {key}, not both"
            else:
                unknown.append(key)
            continue
        name = aliases.get(key, key)
        out.setdefault(name, _say(e, props.get(name, {})))
    for key in unknown[:MAX_UNKNOWN_REPORTED]:
        also = f" (camelCase aliases: {', '.join(aliases)})" if aliases else ""
        out[excerpt(key)] = f"unknown field; send only {', '.join(props)}{also}"
    if len(unknown) > MAX_UNKNOWN_REPORTED:
        out["body"] = f"{len(unknown)} unknown fields; remove them"
    return out


def _say(error: Mapping[str, Any], prop: Mapping[str, Any]) -> str:
    """One error for one field in plain words, from the field's schema."""
    kind, value = error.get("type"), error.get("input")
    # An optional field's schema is anyOf [its type, null]: read its type.
    typed: Mapping[str, Any] = next(
        (o for o in prop.get("anyOf", ()) if o.get("type") != "null"), {}
    )
    p = {**prop, **typed}
    absent = kind == "missing" or value is None
    if "enum" in p:
        choices = ", ".join(map(str, p["enum"]))
        if absent:
            return f"required: one of {choices}"
        if not isinstance(value, str):
            return f"must be text: one of {choices}"
        near = value.lower() in {str(c).lower() for c in p["enum"]}
        return f"{excerpt(value)!r} is not one of {choices}" + (" (exact case)" if near else "")
    if p.get("format") == "binary":
        return "send a file, as a part of multipart/form-data"
    if p.get("type") in ("integer", "number"):
        span = f"{p.get('minimum')}–{p.get('maximum')}"
        if kind in _OUT_OF_RANGE:
            return f"is {excerpt(str(value))}; use {span}"
        return f"must be a {'whole number' if p['type'] == 'integer' else 'number'} {span}"
    if p.get("type") == "string":
        if kind == "string_type" and not absent:
            return "must be text"
        lo, hi = p.get("minLength"), p.get("maxLength")
        if absent or kind == "string_too_short":
            what = f"{p['description']} " if p.get("description") else ""
            return f"required: {what}({lo or 1}–{hi} characters)"
        if kind == "string_too_long" and isinstance(value, str):
            return f"is {len(value.strip())} characters; shorten it to {hi}"
    return str(error.get("msg", "invalid"))


def _short(error: Mapping[str, Any]) -> dict[str, Any]:
    """One validation error with its echoed input cut to an excerpt."""
    out = {k: v for k, v in error.items() if k not in ("input", "ctx", "url")}
    if "input" in error:
        out["input"] = excerpt(error["input"])
    if "ctx" in error and isinstance(error["ctx"], Mapping):
        out["ctx"] = {str(k): excerpt(v) for k, v in error["ctx"].items()}
    return out


def _field(loc: Any) -> str:
    parts = [str(p) for p in (loc if isinstance(loc, list | tuple) else [loc])]
    if len(parts) > 1 and parts[0] in ("body", "query", "path", "header", "form"):
        parts = parts[1:]
    return ".".join(parts) or "body"


def summary(errors: list[Any]) -> str:
    """Every bad field in one sentence: "Invalid request: prompt: …; steps: …"."""
    lines = []
    for e in errors:
        if not isinstance(e, Mapping):
            lines.append(str(e))
            continue
        field, msg = _field(e.get("loc", ())), str(e.get("msg", "invalid"))
        lines.append(msg if msg.startswith(f"{field}:") else f"{field}: {msg}")
    return "Invalid request: " + "; ".join(lines)


def is_frontend_route(path: str) -> bool:
    """The React frontend's routes: the API base except the explainer-video API."""
    return path.startswith(API_BASE) and not any(
        path == r or path.startswith(f"{r}/") for r in EXPLAINER_ROUTES
    )


def validation_response(
    request: Request, errors: list[Any], headers: Mapping[str, str] | None = None
) -> JSONResponse:
    """A 422 in the route's shape: a string ``detail`` + ``errors`` list, or the list itself."""
    short = json_safe(
        jsonable_encoder([_short(e) if isinstance(e, Mapping) else e for e in errors])
    )
    body = (
        {"detail": summary(short), "errors": short}
        if is_frontend_route(request.url.path)
        else {"detail": short}
    )
    return JSONResponse(body, status_code=422, headers=dict(headers) if headers else None)


ENGINE_ROUTES = f"{API_BASE}/engine"
# Orchestrator errors by the status that says what happened; any other is 422 (bad request).
MODEL_STATUS = {
    ErrorCode.model_not_found: 404,
    ErrorCode.variant_not_found: 404,
    ErrorCode.not_present: 404,
    ErrorCode.in_use: 409,
    ErrorCode.lock_timeout: 409,
    ErrorCode.no_space: 507,
    ErrorCode.quota_exceeded: 507,
    ErrorCode.rate_limit: 503,
    ErrorCode.source_unavailable: 503,
    ErrorCode.all_sources_failed: 503,
}


# Other refusals on the engine routes (a missing file, a full upload, a busy client).
HTTP_CODES = {404: "not_found", 409: "conflict", 413: "too_large", 429: "rate_limited"}


def is_engine_route(path: str) -> bool:
    return path == ENGINE_ROUTES or path.startswith(f"{ENGINE_ROUTES}/")


def engine_error(exc: Exception) -> JSONResponse:
    """An engine or orchestrator error on the engine routes: its status, and a body from which
    the client rebuilds the same exception (``code`` names its type)."""
    body: dict[str, Any]
    if isinstance(exc, InvalidInputError):
        status, body = 422, {"code": "invalid_input", "errors": exc.errors}
    elif isinstance(exc, JobNotFoundError):
        status, body = 404, {"code": "job_not_found", "job_id": exc.job_id}
    elif isinstance(exc, JobStateError):
        status = 409
        body = {"code": "job_state", "job_id": exc.job_id, "state": str(exc.state)}
        body["action"] = exc.action
    elif isinstance(exc, StoreUnavailableError):
        status = 507 if exc.reason == "storage_full" else 503
        body = {"code": "store_unavailable", "reason": exc.reason}
        body["suggestions"] = list(exc.suggestions)
    elif isinstance(exc, ModelError):
        status = MODEL_STATUS.get(exc.code, 422)
        body = {"code": "model_error", "model_code": str(exc.code), "message": exc.message}
        body.update(fix=exc.fix, details=json_safe(exc.details))
    elif isinstance(exc, EngineError):
        status, body = 400, {"code": "engine_error"}
    else:
        status, body = 500, {"code": "internal"}
    return JSONResponse({"detail": str(exc), **body}, status_code=status)


def install_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        if is_engine_route(request.url.path):
            errors = {_field(e.get("loc", ())): str(e.get("msg")) for e in exc.errors()}
            return engine_error(InvalidInputError(errors))
        return validation_response(request, list(exc.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Any:
        detail: Any = exc.detail  # typed str, but routes raise 422s with FastAPI's list
        if is_engine_route(request.url.path) and isinstance(detail, str):
            code = HTTP_CODES.get(exc.status_code, "http_error")
            return JSONResponse(
                {"detail": detail, "code": code}, status_code=exc.status_code, headers=exc.headers
            )
        if exc.status_code == 422 and isinstance(detail, list):
            return validation_response(request, detail, exc.headers)
        return await http_exception_handler(request, exc)

    @app.exception_handler(InvalidInputError)
    async def _invalid(request: Request, exc: InvalidInputError) -> JSONResponse:
        if is_engine_route(request.url.path):
            return engine_error(exc)
        return validation_response(request, detail_list(exc.errors))

    @app.exception_handler(JobNotFoundError)
    async def _job_missing(request: Request, exc: JobNotFoundError) -> JSONResponse:
        if is_engine_route(request.url.path):
            return engine_error(exc)
        return JSONResponse({"detail": f"Task {exc.job_id} not found"}, status_code=404)

    @app.exception_handler(LoraNotFoundError)
    async def _lora_missing(_: Request, exc: LoraNotFoundError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(LoraExistsError)
    async def _lora_exists(_: Request, exc: LoraExistsError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=409)

    @app.exception_handler(JobStateError)
    async def _state(request: Request, exc: JobStateError) -> JSONResponse:
        if is_engine_route(request.url.path):
            return engine_error(exc)
        return JSONResponse({"detail": str(exc)}, status_code=400)

    @app.exception_handler(StoreUnavailableError)
    async def _store(request: Request, exc: StoreUnavailableError) -> JSONResponse:
        if is_engine_route(request.url.path):
            return engine_error(exc)
        # 507 Insufficient Storage: the data folder is full; 503: read-only or damaged store.
        status = 507 if exc.reason == "storage_full" else 503
        body = {"detail": str(exc), "code": exc.reason, "suggestions": list(exc.suggestions)}
        return JSONResponse(body, status_code=status)

    @app.exception_handler(EngineError)
    async def _engine(request: Request, exc: EngineError) -> JSONResponse:
        if is_engine_route(request.url.path):
            return engine_error(exc)
        return JSONResponse({"detail": str(exc)}, status_code=400)

    @app.exception_handler(BlobError)
    async def _blob(_: Request, exc: BlobError) -> JSONResponse:
        headers = {"Connection": "close"} if exc.status == 413 else None
        return JSONResponse(
            {"detail": str(exc), "code": exc.code}, status_code=exc.status, headers=headers
        )

    @app.exception_handler(ModelError)
    async def _model(request: Request, exc: ModelError) -> JSONResponse:
        if is_engine_route(request.url.path):
            return engine_error(exc)
        return JSONResponse({"detail": str(exc), "code": str(exc.code)}, status_code=422)
