"""Does a model fit this machine? The planner's verdict, through one small adapter.

The engine's VRAM planner (``engine/planner.py``) answers when it is installed; until then the
adapter says plainly that no fit check is available, and the panels show download status and
size only. Once a job is queued, its ``estimate`` (from the pipeline) is shown as it is.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from wan_desktop.engine import Engine

log = logging.getLogger("wan_desktop.ui")


@dataclass(frozen=True)
class Fit:
    kind: str  # success (fits), warning (fits with offloading), danger (does not fit), neutral
    text: str
    detail: str = ""


UNKNOWN = Fit("neutral", "fit not checked", "the VRAM planner is not part of this build")


@cache
def _planner() -> Any | None:
    """The planner module, looked up once (a failed import is not retried on every call)."""
    try:
        return importlib.import_module("wan_desktop.engine.planner")
    except ImportError:
        return None


def model_fit(engine: Engine, model_id: str, params: Mapping[str, Any] | None = None) -> Fit:
    """The verdict for ``model_id`` at ``params`` (defaults when None). May be slow: off-thread."""
    planner = _planner()
    verdict = getattr(planner, "fit_verdict", None) if planner is not None else None
    if verdict is None:
        return UNKNOWN
    try:
        answer = verdict(engine, model_id, dict(params or {}))
    except Exception as exc:  # a planner bug must not take the panel down
        log.warning("fit check for %s failed: %s", model_id, exc)
        return Fit("neutral", "fit check failed", str(exc))
    return Fit(str(answer.kind), str(answer.text), str(getattr(answer, "detail", "")))


def estimate_text(estimate: Mapping[str, Any]) -> str:
    """A queued job's estimate (``job.estimate``), as one line."""
    bits = []
    if estimate.get("vram_gb"):
        bits.append(f"≈ {float(estimate['vram_gb']):.1f} GB VRAM")
    if estimate.get("minutes") is not None:
        minutes = float(estimate["minutes"])
        bits.append(f"≈ {minutes * 60:.0f} s" if minutes < 1 else f"≈ {minutes:.1f} min")
    if estimate.get("strategy"):
        bits.append(f"strategy: {estimate['strategy']}")
    return "  ·  ".join(bits)
