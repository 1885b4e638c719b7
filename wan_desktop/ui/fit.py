"""Does a model fit this machine? The engine's verdict (``engine.estimate.fit_verdict``) for the
model picker, with a badge colour, cached per model and job size.

A verdict needs the hardware profile (whose first read imports torch) and a model status read:
``FitCache.check`` blocks, so the panels call it off the GUI thread and keep the answers.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from wan_desktop.engine import Engine
from wan_desktop.engine.estimate import FitKind, fit_verdict

from . import format as fmt

log = logging.getLogger("wan_desktop.ui")


@dataclass(frozen=True)
class Fit:
    kind: str  # badge colour: success, warning, danger, neutral (not checked yet)
    text: str
    detail: str = ""
    fits: bool = True


UNKNOWN = Fit("neutral", "checking fit…")
BADGE = {
    FitKind.gpu: "success",
    FitKind.offload: "success",
    FitKind.fp8: "warning",
    FitKind.cpu: "warning",
    FitKind.none: "danger",
}
# The form's values the verdict depends on (the prompt does not change memory or time).
SHAPE_KEYS = ("resolution", "frames", "steps", "guidance_scale", "variant")


def shape_params(params: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    key = tuple((k, str(params.get(k) or "")) for k in SHAPE_KEYS)
    return (*key, ("image", "1" if params.get("image") else ""))


class FitCache:
    """Verdicts by (mode, model, job size); cleared when what is on disk changes."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._lock = threading.Lock()
        self._cache: dict[tuple[object, ...], Fit] = {}

    def clear(self) -> None:
        with self._lock:
            self._cache.clear()

    def check(self, model_id: str, params: Mapping[str, Any]) -> Fit:
        """The verdict for ``model_id`` at the form's ``params``. Blocking: call it off-thread."""
        key = (self.engine.settings.dev_mode, model_id, shape_params(params))
        with self._lock:
            hit = self._cache.get(key)
        if hit is not None:
            return hit
        try:
            v = fit_verdict(
                self.engine.models,
                self.engine.hardware,
                model_id,
                params,
                data_dir=self.engine.settings.data_dir,
            )
            fit = Fit(BADGE[v.kind], v.text, v.detail, v.fits)
        except Exception as exc:  # a planner bug must not take the panel down
            log.warning("fit check for %s failed: %s", model_id, exc)
            # Not cached: the next check tries again (a model folder being written, say).
            return Fit("neutral", "fit not checked", f"the fit check failed: {exc}")
        with self._lock:
            self._cache[key] = fit
        return fit


def estimate_text(estimate: Mapping[str, Any]) -> str:
    """A queued job's estimate (``job.estimate``), as one line."""
    bits = []
    if estimate.get("vram_gb"):
        bits.append(f"≈ {float(estimate['vram_gb']):.1f} GiB VRAM")
    if estimate.get("minutes") is not None:
        bits.append(f"≈ {fmt.duration(float(estimate['minutes']) * 60)}")
    if estimate.get("strategy"):
        bits.append(f"strategy: {estimate['strategy']}")
    return "  ·  ".join(bits)
