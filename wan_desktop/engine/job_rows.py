"""A job as a row of the store and back: text that could not round-trip as UTF-8 is never stored,
and a row that cannot be read back is an ``UnreadableJobError`` naming the job.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import fields
from typing import Any

from .errors import EngineError, InvalidInputError
from .jobs import Job, JobFailure, JobKind, JobOutput, JobState, Priority

_JSON_FIELDS = {
    "params",
    "estimate",
    "memory_plan",
    "warnings",
    "failure",
    "output",
    "stages_completed",
}
_BOOL_FIELDS = {"mock", "development"}
_COLUMNS = [f.name for f in fields(Job)]


class UnreadableJobError(EngineError):
    """A stored job cannot be read back (a record written by an old version, or damaged)."""

    def __init__(self, job_id: str, reason: str) -> None:
        super().__init__(
            f"job {job_id} cannot be read: its stored record is damaged ({reason}); delete it"
        )
        self.job_id = job_id
        self.reason = reason


def _encodable(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def replace_bad(text: str) -> str:
    return text.encode("utf-8", "replace").decode("utf-8")


def _json(value: Any) -> str:
    # ensure_ascii=False: text that is not valid Unicode fails here, not when it is read back.
    return json.dumps(value, ensure_ascii=False)


def to_row(job: Job) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for name in _COLUMNS:
        value = getattr(job, name)
        if name in {"failure", "output"}:
            value = None if value is None else _json(value.to_dict())
        elif name in ("warnings", "stages_completed"):
            value = _json(list(value))
        elif name in _JSON_FIELDS:
            value = _json(dict(value))
        elif name in _BOOL_FIELDS:
            value = int(bool(value))
        elif name in ("kind", "state"):
            value = str(value)
        elif name == "priority":
            value = int(value)
        if isinstance(value, str) and not _encodable(value):
            # Never store a row that cannot be read back (or sent) as UTF-8: a request's
            # parameters are refused; the engine's own text (an error message quoting
            # something odd) has the offending characters replaced.
            if name != "params":
                value = replace_bad(value)
            else:
                bad = next((k for k, v in job.params.items() if not _encodable(_json(v))), name)
                raise InvalidInputError(
                    {bad: "contains text that is not valid Unicode (a lone surrogate); remove it"}
                )
        row[name] = value
    return row


def _from_row(row: sqlite3.Row) -> Job:
    d = dict(row)
    for name, value in d.items():
        if isinstance(value, str) and not _encodable(value):
            raise ValueError(f"the {name} field is not valid UTF-8")
    d["kind"] = JobKind(d["kind"])
    d["state"] = JobState(d["state"])
    d["priority"] = Priority(d["priority"])
    for name in _BOOL_FIELDS:
        d[name] = bool(d[name])
    raw = {name: d[name] for name in _JSON_FIELDS}
    d["params"] = json.loads(d["params"])
    d["estimate"] = json.loads(d["estimate"] or "{}")
    d["memory_plan"] = json.loads(d["memory_plan"] or "{}")
    d["warnings"] = tuple(json.loads(d["warnings"] or "[]"))
    d["stages_completed"] = tuple(json.loads(d["stages_completed"] or "[]"))
    d["failure"] = JobFailure.from_dict(json.loads(d["failure"])) if d["failure"] else None
    d["output"] = JobOutput.from_dict(json.loads(d["output"])) if d["output"] else None
    for name, text in raw.items():
        # Older versions wrote JSON with \u escapes, which can hide a lone surrogate.
        hidden = text and ("\\ud" in text or "\\uD" in text)
        if hidden and not _encodable(_json(json.loads(text))):
            raise ValueError(f"the {name} field holds text that is not valid Unicode")
    return Job(**d)


def job_from_row(row: sqlite3.Row) -> Job:
    job_id = str(row["id"])
    try:
        return _from_row(row)
    except (ValueError, TypeError, KeyError) as exc:
        reason = str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}"
        reason = reason.encode("utf-8", "backslashreplace").decode("utf-8")
        raise UnreadableJobError(job_id.encode("utf-8", "replace").decode(), reason) from exc
