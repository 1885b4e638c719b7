"""The desktop app's client of a ``wan serve`` on another machine: ``RemoteEngine``.

Imports ``engine`` and ``models``; the GUI imports it, the API never does.
"""

from __future__ import annotations

from .engine import RemoteEngine, probe
from .errors import (
    IncompatibleServerError,
    NotWanServeError,
    RemoteError,
    ServerUnreachableError,
    WrongTokenError,
)

__all__ = [
    "IncompatibleServerError",
    "NotWanServeError",
    "RemoteEngine",
    "RemoteError",
    "ServerUnreachableError",
    "WrongTokenError",
    "probe",
]
