"""The one parser of environment variables. Every layer reads its variables in one module of its
own (``models/config.py``, ``engine/settings.py``, ``explainer/settings.py``, ``ui/config.py``,
``api/settings.py``) with these functions, so a value means the same everywhere and a bad one is
an error that names the variable and what it takes, never a silent default.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from pathlib import Path
from typing import TypeVar

E = TypeVar("E", bound=enum.Enum)


class SettingError(ValueError):
    """An environment variable (or a setting) has a value this program cannot use."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}={message}")
        self.name = name


TRUE = frozenset({"1", "true", "yes", "on"})
FALSE = frozenset({"0", "false", "no", "off"})


def text(env: Mapping[str, str], name: str) -> str | None:
    """The value with surrounding blanks removed; None when unset or blank."""
    return env.get(name, "").strip() or None


def flag(env: Mapping[str, str], name: str, *, default: bool = False) -> bool:
    """A yes/no value (1/true/yes/on, 0/false/no/off, any case); unset or blank: ``default``."""
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in TRUE:
        return True
    if raw in FALSE:
        return False
    raise SettingError(name, f"{raw!r} is not a yes/no value; use 1 or 0 (or unset it)")


def number(
    env: Mapping[str, str],
    name: str,
    default: float,
    bounds: tuple[float, float] | None = None,
) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingError(name, f"{raw!r} is not a number; unset it or give a number") from None
    if not math.isfinite(value):
        raise SettingError(name, f"{raw!r} is not a finite number; unset it or give a number")
    return _within(name, value, bounds)


def integer(
    env: Mapping[str, str],
    name: str,
    default: int,
    bounds: tuple[int, int] | None = None,
) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingError(name, f"{raw!r} is not a whole number; unset it or give one") from None
    return int(_within(name, value, bounds))


def choice(env: Mapping[str, str], name: str, kind: type[E], default: E) -> E:
    """One of an enum's values (case-insensitive)."""
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    try:
        return kind(raw)
    except ValueError:
        allowed = ", ".join(str(m.value) for m in kind)
        raise SettingError(name, f"{raw!r} is not one of: {allowed}") from None


def path(env: Mapping[str, str], name: str) -> Path | None:
    """A folder or file path (``~`` expanded); None when unset or blank."""
    raw = text(env, name)
    return Path(raw).expanduser() if raw else None


def _within(name: str, value: float, bounds: tuple[float, float] | None) -> float:
    if bounds is not None and not bounds[0] <= value <= bounds[1]:
        lo, hi = bounds
        raise SettingError(name, f"{value:g} is out of range; use {lo:g}–{hi:g}")
    return value
