"""Does a model fit the engine's machine? The engine's verdict (``EngineFace.fit``) for the
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

from wan_desktop.engine.estimate import FitKind, FitVerdict
from wan_desktop.engine.face import EngineFace
from wan_desktop.engine.hardware import HardwareProfile
from wan_desktop.engine.planner import STRATEGIES

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

    def __init__(self, engine: EngineFace) -> None:
        self.engine = engine
        self._lock = threading.Lock()
        self._cache: dict[tuple[object, ...], Fit] = {}

    def clear(self) -> None:
        with self._lock:
            self._cache.clear()

    def check(self, model_id: str, params: Mapping[str, Any]) -> Fit:
        """The verdict for ``model_id`` at the form's ``params``. Blocking: call it off-thread."""
        key = (self.engine.info.dev_mode, model_id, shape_params(params))
        with self._lock:
            hit = self._cache.get(key)
        if hit is not None:
            return hit
        try:
            profile = self.engine.hardware
            v = self.engine.fit(model_id, params)
            text, detail = describe(v, profile)
            fit = Fit(BADGE[v.kind], text, detail, v.fits)
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


# ----------------------------------------------------------------------------- in words


def describe(v: FitVerdict, profile: HardwareProfile) -> tuple[str, str]:
    """A verdict in words: a few for the badge, a sentence or three for the card."""
    kind, mp, development = v.kind, v.plan, v.development
    if mp is None:
        where = "GPU" if profile.has_gpu else "CPU"
        return (
            f"tiny · fits ({where})",
            "Development variant: tiny random weights, built on first use in seconds; it fits "
            "any machine. The output is noise.",
        )
    gpu = profile.gpu_name or "the GPU"
    took = f"{_duration(mp.minutes)} per video at these settings"
    vram = f"about {mp.vram_gb:.0f} GiB of {mp.vram_budget_gb:.0f} GiB usable VRAM"
    ram = f"{mp.ram_gb:.0f} GiB of {mp.ram_budget_gb:.0f} GiB usable RAM"
    if kind is FitKind.gpu:
        return (
            f"fits on the GPU · {_duration(mp.minutes)}",
            f"Everything on {gpu}: {vram}; {took}.",
        )
    if kind is FitKind.offload:
        return (
            f"fits with offloading · {_duration(mp.minutes)}",
            f"Too big to keep whole on {gpu}: {mp.description} ({vram}, {ram}); slower than "
            f"all on the GPU, same output; {took}.",
        )
    if kind is FitKind.fp8:
        return (
            f"fits in fp8 · {_duration(mp.minutes)}",
            f"Fits {gpu} only with the experts stored in fp8: {mp.description} ({vram}, {ram}). "
            f"The output differs slightly from bf16; {took}.",
        )
    if kind is FitKind.cpu:
        fp8 = " with fp8 weights" if STRATEGIES[mp.strategy].fp8 else ""
        use = (
            "Fine for a development model."
            if development
            else "Usable only to try it: a real model wants an NVIDIA GPU with 24 GB or more."
        )
        return (
            f"CPU only · {_duration(mp.minutes)}",
            f"No GPU here: it would run on the CPU{fp8}, in RAM ({ram}), {took}. {use}",
        )
    frugal = next(
        c for c in mp.candidates if (c.strategy, c.vae_tiling) == (mp.strategy, mp.vae_tiling)
    )
    if not profile.has_gpu:
        return (
            "does not fit",
            f"No GPU here, and on the CPU it needs about {frugal.ram_gb:.0f} GiB RAM "
            f"({mp.ram_budget_gb:.0f} GiB usable). A real model wants an NVIDIA GPU with 24 GB or "
            "more; development mode runs tiny versions here.",
        )
    if frugal.limit == "vram":
        need = f"About {frugal.vram_gb:.0f} GiB VRAM even one layer at a time ({gpu} has "
        need += f"{mp.vram_budget_gb:.0f} GiB usable)"
    else:
        need = f"About {frugal.ram_gb:.0f} GiB RAM to hold the weights ({mp.ram_budget_gb:.0f} GiB "
        need += "usable)"
    return (
        "does not fit",
        f"{need}. Lower the resolution or frames, or use a machine with more memory; "
        "development mode runs tiny versions here.",
    )


def _duration(minutes: float) -> str:
    if minutes < 1:
        return "< 1 min"
    if minutes < 90:
        return f"≈ {minutes:.0f} min"
    if minutes < 48 * 60:
        return f"≈ {minutes / 60:.1f} h"
    return f"≈ {minutes / 1440:.0f} days"
