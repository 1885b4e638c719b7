"""The GPU pool (``wan serve --pool``): jobs of one server run on Ray actors, one per GPU.

Ray is an optional extra (``wan-desktop[pool]``): nothing here imports it at module level, and
the rest of the program never imports this package except ``wan serve --pool``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .engine import PoolEngine

__all__ = ["PoolEngine"]


def __getattr__(name: str) -> Any:
    if name == "PoolEngine":
        from .engine import PoolEngine

        return PoolEngine
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
