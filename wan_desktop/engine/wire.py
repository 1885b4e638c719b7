"""The engine's types on the wire: a lossless JSON codec for the program-facing API.

``wan serve`` answers programs (the desktop app's remote engine) with the engine's own frozen
dataclasses; this codec turns them into JSON-able data and back, driven by the type hints of
each dataclass, so a client rebuilds exactly the ``Job``, ``JobSpec`` or ``Event`` the local
engine would have handed it. No pickle: only declared fields travel, and each is rebuilt as its
declared type (enums by value, ``bytes`` as base64, tuples as lists, ``X | None``).
"""

from __future__ import annotations

import base64
import dataclasses
import enum
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Union

from . import events as _events
from .events import Event

WIRE_VERSION = 1


def _jsonable(value: Any) -> Any:
    """A value typed ``Any`` as plain JSON (dataclasses and enums flattened, tuples as lists)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value.value if isinstance(value, enum.Enum) else value
    if isinstance(value, enum.Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_wire(value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot put a {type(value).__name__} on the wire: {value!r}")


def to_wire(obj: Any) -> Any:
    """``obj`` (a frozen dataclass of the engine, or anything inside one) as JSON-able data."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_wire(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, bytes):
        return base64.b64encode(obj).decode("ascii")
    if isinstance(obj, Mapping):
        return {str(k): to_wire(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_wire(v) for v in obj]
    return _jsonable(obj)


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    hints = _HINTS.get(cls)
    if hints is None:
        hints = _HINTS[cls] = typing.get_type_hints(cls)
    return hints


def from_wire(tp: Any, data: Any) -> Any:
    """Rebuild a value of type ``tp`` from what :func:`to_wire` made; ValueError when it does
    not fit the type (a field missing, a wrong kind of value)."""
    if tp is Any or tp is object:
        return data
    origin = typing.get_origin(tp)
    if origin is Union or origin is types.UnionType:
        args = typing.get_args(tp)
        if data is None:
            if type(None) in args:
                return None
            raise ValueError(f"null where {tp} is expected")
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return from_wire(arg, data)
            except (ValueError, TypeError) as e:
                errors.append(str(e))
        raise ValueError(f"{data!r} is none of {tp}: {'; '.join(errors)}")
    if origin is typing.Literal:
        if data in typing.get_args(tp):
            return data
        raise ValueError(f"{data!r} is not one of {typing.get_args(tp)}")
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(data, list | tuple):
            raise ValueError(f"a list is expected for {tp}, not {type(data).__name__}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(from_wire(args[0], v) for v in data)
        if not args:
            return tuple(data)
        if len(args) != len(data):
            raise ValueError(f"{len(args)} items are expected for {tp}, not {len(data)}")
        return tuple(from_wire(a, v) for a, v in zip(args, data, strict=True))
    if origin in (list, Sequence, typing.Sequence):
        if not isinstance(data, list | tuple):
            raise ValueError(f"a list is expected for {tp}, not {type(data).__name__}")
        (arg,) = typing.get_args(tp) or (Any,)
        return [from_wire(arg, v) for v in data]
    if origin in (dict, Mapping, typing.Mapping):
        if not isinstance(data, Mapping):
            raise ValueError(f"an object is expected for {tp}, not {type(data).__name__}")
        args = typing.get_args(tp) or (str, Any)
        return {from_wire(args[0], k): from_wire(args[1], v) for k, v in data.items()}
    if isinstance(tp, type):
        if dataclasses.is_dataclass(tp):
            return _dataclass_from_wire(tp, data)
        if issubclass(tp, enum.Enum):
            try:
                return tp(data)
            except ValueError:
                raise ValueError(f"{data!r} is not a {tp.__name__}") from None
        if tp is bytes:
            if not isinstance(data, str):
                raise ValueError(f"base64 text is expected for bytes, not {type(data).__name__}")
            return base64.b64decode(data.encode("ascii"), validate=True)
        if tp is bool:
            if not isinstance(data, bool):
                raise ValueError(f"true or false is expected, not {data!r}")
            return data
        if tp is float:
            if isinstance(data, bool) or not isinstance(data, int | float):
                raise ValueError(f"a number is expected, not {data!r}")
            return float(data)
        if tp is int:
            if isinstance(data, bool) or not isinstance(data, int):
                raise ValueError(f"an integer is expected, not {data!r}")
            return data
        if tp is str:
            if not isinstance(data, str):
                raise ValueError(f"text is expected, not {data!r}")
            return data
        if tp is Path:
            return Path(data)
        if tp in (dict, list, tuple):
            return tp(data)
    raise TypeError(f"the wire codec does not know the type {tp!r}")


def _dataclass_from_wire(cls: type[Any], data: Any) -> Any:
    if not isinstance(data, Mapping):
        raise ValueError(f"an object is expected for {cls.__name__}, not {type(data).__name__}")
    hints = _hints(cls)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name in data:
            try:
                kwargs[f.name] = from_wire(hints[f.name], data[f.name])
            except (ValueError, TypeError) as e:
                raise ValueError(f"{cls.__name__}.{f.name}: {e}") from None
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ValueError(f"{cls.__name__}: the field {f.name!r} is missing")
    # fields a newer peer added and this side does not know are ignored
    return cls(**kwargs)


def _event_classes() -> dict[str, type[Event]]:
    found: dict[str, type[Event]] = {}
    for obj in vars(_events).values():
        if isinstance(obj, type) and issubclass(obj, Event) and obj is not Event:
            found[obj.__name__] = obj
    return found


EVENT_TYPES: dict[str, type[Event]] = _event_classes()


def event_to_wire(event: Event) -> dict[str, Any]:
    name = type(event).__name__
    if EVENT_TYPES.get(name) is not type(event):
        raise TypeError(f"{name} is not an engine event the wire knows")
    return {"type": name, "data": to_wire(event)}


def event_from_wire(d: Mapping[str, Any]) -> Event:
    """The event in ``d``; ValueError for an event type this version does not know (a newer
    server), which a client skips with a log line."""
    if not isinstance(d, Mapping) or "type" not in d:
        raise ValueError(f"an event needs a type and data, got {d!r}")
    cls = EVENT_TYPES.get(str(d["type"]))
    if cls is None:
        raise ValueError(
            f"unknown engine event type {d['type']!r} (a newer server?); "
            f"known: {', '.join(sorted(EVENT_TYPES))}"
        )
    event: Event = from_wire(cls, d.get("data") or {})
    return event
