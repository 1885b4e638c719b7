"""Reading one model's table of ``models.toml``: typed fields whose errors name the model, the
field and the fix.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from .errors import InvalidModelIdError, ManifestError
from .manifest import MODEL_ID_RE


class FieldReader:
    """Builds errors that name the model and the field."""

    def __init__(self, model: str) -> None:
        self.model = model

    def err(self, fieldname: str, problem: str, fix: str) -> ManifestError:
        return ManifestError(
            f"model {self.model}: field '{fieldname}' {problem}",
            fix=fix,
            details={"model": self.model, "field": fieldname},
        )

    def table(
        self, body: Mapping[str, Any], key: str, *, required: bool = True
    ) -> Mapping[str, Any]:
        value = body.get(key)
        if value is None and not required:
            return {}
        if not isinstance(value, Mapping):
            raise self.err(key, "is missing or not a table", f"add a [..{key}] table")
        return value

    def str_(
        self, body: Mapping[str, Any], key: str, *, required: bool = True, default: str = ""
    ) -> str:
        value = body.get(key, None)
        if value is None:
            if required:
                raise self.err(key, "is missing", f'add {key} = "..."')
            return default
        if not isinstance(value, str):
            raise self.err(
                key, f"must be a string, not {type(value).__name__}", f'write {key} = "..."'
            )
        return value

    def num(
        self,
        body: Mapping[str, Any],
        key: str,
        *,
        required: bool = True,
        integer: bool = False,
        minimum: float | None = None,
        maximum: float | None = None,
        prefix: str = "",
    ) -> Any:
        name = f"{prefix}{key}"
        value = body.get(key)
        if value is None:
            if required:
                raise self.err(name, "is missing", f"add {key} = <number>")
            return None
        ok = isinstance(value, int) if integer else isinstance(value, int | float)
        if isinstance(value, bool) or not ok:
            kind = "an integer" if integer else "a number"
            raise self.err(name, f"must be {kind}, not {value!r}", f"write {key} = <{kind}>")
        if minimum is not None and value < minimum:
            raise self.err(
                name, f"is {value}, below the minimum {minimum}", f"use at least {minimum}"
            )
        if maximum is not None and value > maximum:
            raise self.err(
                name, f"is {value}, above the maximum {maximum}", f"use at most {maximum}"
            )
        return value

    def strlist(
        self, body: Mapping[str, Any], key: str, *, required: bool = False, prefix: str = ""
    ) -> tuple[str, ...]:
        value = body.get(key)
        if value is None:
            if required:
                raise self.err(f"{prefix}{key}", "is missing", f'add {key} = ["..."]')
            return ()
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.err(
                f"{prefix}{key}", "must be a list of strings", f'write {key} = ["...", "..."]'
            )
        return tuple(value)

    def bool_(
        self, body: Mapping[str, Any], key: str, default: bool = False, prefix: str = ""
    ) -> bool:
        value = body.get(key, default)
        if not isinstance(value, bool):
            raise self.err(
                f"{prefix}{key}", "must be true or false", f"write {key} = true or false"
            )
        return value


def open_table(
    table: str, table_id: str, body: Any, known: set[str], *, what: str, example: str
) -> tuple[re.Match[str], FieldReader]:
    """The checks every ``[table."name@X.Y.Z"]`` of models.toml starts with: the id's form, a
    table, no unknown field. The id's match (name, version) and a reader of its fields."""
    m = MODEL_ID_RE.match(table_id)
    if not m:
        raise InvalidModelIdError(
            f"{what} id {table_id!r} in models.toml is not name@X.Y.Z",
            fix=f"name the table like [{table}.\"{example}\"]: a lowercase-first name, '@', "
            "and a three-part version",
            details={"model": table_id},
        )
    c = FieldReader(table_id)
    if not isinstance(body, Mapping):
        raise c.err("(table)", "is not a table", f'write [{table}."{table_id}"] with its fields')
    unknown = set(body) - known
    if unknown:
        raise c.err(
            ", ".join(sorted(unknown)),
            "is not a known field",
            f"remove it or use one of: {', '.join(sorted(known))}",
        )
    return m, c
