"""What a model needs on this machine, from the engine's VRAM planner, for ``/models/detect``.

The planner is asked about the model's default job (the variant that would run: the tiny one in
development mode) on the engine's hardware profile, with the same facts a submit uses (the model's
files when it is on disk, else its manifest entry; a development variant not built yet, its tiny
architecture), or from measured runs of the same model and size when there are some
(``estimate_is_guess`` says which). Answers are cached per model, variant, facts, hardware and
number of finished jobs, so a detect call costs a dictionary lookup after the first. When the
planner cannot answer, the figures are ``None`` with a note saying why: never made-up numbers,
never a 500.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

from wan_desktop.engine import Engine, JobState
from wan_desktop.engine.estimate import estimate_plan
from wan_desktop.engine.params import round_size
from wan_desktop.engine.planner import JobShape
from wan_desktop.models.manifest import parse_resolution

log = logging.getLogger("wan_desktop.api")


@dataclass(frozen=True)
class ModelEstimate:
    vram_gb: float | None
    seconds_per_frame: float | None
    minutes: float | None = None
    ram_gb: float | None = None
    strategy: str | None = None
    fits: bool | None = None
    device: str | None = None
    resolution: str | None = None
    frames: int | None = None
    steps: int | None = None
    facts: str | None = None
    note: str | None = None
    guess: bool | None = None  # the planner's model (True) or measured runs here (False)
    basis: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "estimated_ram_gb": self.ram_gb,
            "estimated_minutes": self.minutes,
            "strategy": self.strategy,
            "fits": self.fits,
            "device": self.device,
            "for_job": {"resolution": self.resolution, "frames": self.frames, "steps": self.steps},
            "facts": self.facts,
            "estimate_note": self.note,
            "estimate_is_guess": self.guess,
            "estimate_basis": self.basis,
        }


class Estimates:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._cache: dict[tuple[Any, ...], ModelEstimate] = {}
        self._lock = threading.Lock()

    def for_model(self, model_type: str, *, image: bool = False) -> ModelEstimate:
        try:
            return self._estimate(model_type, image)
        except Exception as exc:  # a damaged model folder, an unreadable hardware profile…
            log.warning("no estimate for %s: %s", model_type, exc)
            return ModelEstimate(
                vram_gb=None,
                seconds_per_frame=None,
                note=f"the planner could not estimate {model_type} here: {exc}",
            )

    def _estimate(self, model_type: str, image: bool) -> ModelEstimate:
        store = self.engine.models
        spec, var = store.resolve(model_type, None)
        status = store.status(spec.id, var.name)
        folder = status.path if status.complete else None
        profile = self.engine.hardware
        # A finished job may have measured this model: a new count asks again.
        finished = self.engine.counts().get(JobState.completed, 0)
        key = (spec.id, var.name, image, str(folder), status.complete, profile, finished)
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None:
            return cached
        d = spec.defaults_for(var.name)
        width, height = round_size(*parse_resolution(d.resolution), spec, var.name)
        shape = JobShape(
            width=width,
            height=height,
            frames=d.frames,
            steps=d.steps,
            guidance=d.guidance_scale > 1.0,
            image=image,
        )
        mp = estimate_plan(store, profile, self.engine.settings.data_dir, spec, var, shape)
        est = mp.estimate()
        estimate = ModelEstimate(
            vram_gb=mp.vram_gb,
            seconds_per_frame=round(est["minutes"] * 60 / max(1, d.frames), 2),
            minutes=est["minutes"],
            guess=est["guess"],
            basis=est["basis"],
            ram_gb=mp.ram_gb,
            strategy=mp.strategy,
            fits=mp.fits,
            device=mp.device,
            resolution=f"{width}x{height}",
            frames=d.frames,
            steps=d.steps,
            facts=mp.facts_source,
            note=None if mp.fits else "; ".join(mp.notes) or "it may not fit this machine",
        )
        with self._lock:
            self._cache[key] = estimate
        return estimate
