"""How failures become answers: one place maps engine and orchestrator errors to HTTP.

422 validation (FastAPI's ``detail`` list naming each field), 404 unknown id, 400/409 a state that
forbids the action, 429 too many submissions, 507 a full data folder, 503 a read-only or damaged
job store. Never a 500 for bad input.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from wan_desktop.engine import EngineError, InvalidInputError, JobNotFoundError, JobStateError
from wan_desktop.engine.errors import StoreUnavailableError
from wan_desktop.engine.lora_library import LoraExistsError, LoraNotFoundError
from wan_desktop.models import ModelError

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


def not_found(what: str) -> HTTPException:
    return HTTPException(404, detail=what)


def json_safe(value: Any) -> Any:
    """Echoed inputs may hold Infinity or NaN, which JSON cannot carry: write them as text."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def install_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": json_safe(jsonable_encoder(exc.errors()))}, 422)

    @app.exception_handler(InvalidInputError)
    async def _invalid(_: Request, exc: InvalidInputError) -> JSONResponse:
        return JSONResponse({"detail": detail_list(exc.errors)}, status_code=422)

    @app.exception_handler(JobNotFoundError)
    async def _job_missing(_: Request, exc: JobNotFoundError) -> JSONResponse:
        return JSONResponse({"detail": f"Task {exc.job_id} not found"}, status_code=404)

    @app.exception_handler(LoraNotFoundError)
    async def _lora_missing(_: Request, exc: LoraNotFoundError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(LoraExistsError)
    async def _lora_exists(_: Request, exc: LoraExistsError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=409)

    @app.exception_handler(JobStateError)
    async def _state(_: Request, exc: JobStateError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=400)

    @app.exception_handler(StoreUnavailableError)
    async def _store(_: Request, exc: StoreUnavailableError) -> JSONResponse:
        # 507 Insufficient Storage: the data folder is full; 503: read-only or damaged store.
        status = 507 if exc.reason == "storage_full" else 503
        body = {"detail": str(exc), "code": exc.reason, "suggestions": list(exc.suggestions)}
        return JSONResponse(body, status_code=status)

    @app.exception_handler(EngineError)
    async def _engine(_: Request, exc: EngineError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=400)

    @app.exception_handler(ModelError)
    async def _model(_: Request, exc: ModelError) -> JSONResponse:
        return JSONResponse({"detail": str(exc), "code": str(exc.code)}, status_code=422)
