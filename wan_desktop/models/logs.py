"""Structured logs: one JSON object a line, a correlation id per ensure, secrets masked.

The orchestrator logs through the ``wan_desktop.models`` logger with an ``event`` name and fields
(``log_event``). Whoever runs it (the CLI with ``--log-json``, the app, the API) chooses the
handler; :func:`json_handler` gives the JSON one. Every record, in any format, passes the
:class:`RedactFilter` first.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, TextIO

from .redact import redact, redact_value

LOGGER_NAME = "wan_desktop.models"

_correlation: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "wan_correlation_id", default=None
)
# Attributes every LogRecord has; anything else was passed as a field.
_STANDARD = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


def new_correlation_id() -> str:
    return uuid.uuid4().hex[:16]


def correlation_id() -> str | None:
    return _correlation.get()


@contextlib.contextmanager
def correlation(cid: str | None = None) -> Iterator[str]:
    """Tag every log record of this context (and the threads started with its copy) with ``cid``."""
    value = cid or _correlation.get() or new_correlation_id()
    token = _correlation.set(value)
    try:
        yield value
    finally:
        _correlation.reset(token)


def log_event(
    logger: logging.Logger, level: int, event: str, msg: str, *args: object, **fields: Any
) -> None:
    if logger.isEnabledFor(level):
        logger.log(level, msg, *args, extra={"event": event, **fields})


class RedactFilter(logging.Filter):
    """Masks secrets in the message, its arguments and its fields; adds the correlation id."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            message = str(record.msg)
        record.msg = redact(message)
        record.args = None
        for key, value in list(vars(record).items()):
            if key not in _STANDARD:
                setattr(record, key, redact_value(value))
        if getattr(record, "correlation_id", None) is None:
            record.correlation_id = _correlation.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            "correlation_id": getattr(record, "correlation_id", None) or _correlation.get(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in doc:
                doc[key] = value
        if record.exc_info and record.exc_info[1] is not None:
            doc["error"] = redact(f"{type(record.exc_info[1]).__name__}: {record.exc_info[1]}")
        return json.dumps(doc, default=str, ensure_ascii=False)


def json_handler(stream: TextIO, level: int = logging.INFO) -> logging.Handler:
    handler = logging.StreamHandler(stream)
    handler.setLevel(level)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactFilter())
    return handler


def install_redaction(logger: logging.Logger | None = None) -> None:
    """Make sure the orchestrator's logger masks secrets whichever handler prints it."""
    target = logger or logging.getLogger(LOGGER_NAME)
    if not any(isinstance(f, RedactFilter) for f in target.filters):
        target.addFilter(RedactFilter())
