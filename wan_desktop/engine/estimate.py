"""The one estimate of a Wan job: will it fit this machine, how long will it take, and on what
figures. The planner predicts (``planner.plan``); a measurement of the same job on this machine
(``measurements.py``: ``wan bench`` and finished jobs) replaces the prediction and says so. The
Wan pipeline records this estimate on a job at submit, the API's model answers and the desktop
app's fit badges read the same function, so they cannot disagree.
"""

from __future__ import annotations

import contextlib
import enum
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wan_desktop.models import ModelStore
from wan_desktop.models.manifest import DEV_VARIANT, ModelSpec, VariantSpec, parse_resolution

from .hardware import HardwareProfile
from .measurements import measured_plan
from .model_facts import facts_for
from .params import FRAMES_MAX, STEPS_MAX, round_size
from .planner import STRATEGIES, JobShape, MemoryPlan, plan


def estimate_plan(
    models: ModelStore,
    profile: HardwareProfile,
    data_dir: Path | None,
    spec: ModelSpec,
    var: VariantSpec,
    shape: JobShape,
    *,
    keep: str | None = None,
    after: str | None = None,
) -> MemoryPlan:
    """The plan for ``shape`` on ``profile``, from the model's files (or its manifest entry, or
    the tiny architecture, before it is on disk), with measured figures when ``data_dir`` holds
    a measurement of this very job here. ``keep`` and ``after``: as for ``planner.plan``."""
    status = models.status(spec.id, var.name)
    folder = status.path if status.complete else None
    facts = facts_for(spec, folder, tiny=var.name == DEV_VARIANT)
    mp = plan(facts, var.dtype, shape, profile, keep=keep, after=after)
    if data_dir is None:
        return mp
    return measured_plan(data_dir, spec.id, var.name, mp, facts, shape, profile)


class FitKind(enum.StrEnum):
    gpu = "gpu"  # everything on the GPU
    offload = "offload"  # on the GPU, weights streamed from RAM
    fp8 = "fp8"  # on the GPU only with fp8 weight storage (and offloading)
    cpu = "cpu"  # no usable GPU: computed on the CPU, in RAM
    none = "none"  # does not fit this machine at these settings


@dataclass(frozen=True)
class FitVerdict:
    """Whether and how a model fits this machine at a job's size, for the model picker (the
    desktop app words it: ``ui/fit.py``).

    Figures are None for the tiny variant that is not built yet (its files give them).
    """

    model_id: str
    variant: str
    kind: FitKind
    strategy: str | None
    vram_gb: float | None
    ram_gb: float | None
    minutes: float | None
    shape: JobShape
    development: bool
    plan: MemoryPlan | None  # None: the tiny variant before it is built

    @property
    def fits(self) -> bool:
        return self.kind is not FitKind.none


def job_shape(spec: ModelSpec, variant: str, params: Mapping[str, Any]) -> JobShape:
    """The job's size as submit would normalise it; unreadable values fall back to defaults
    (the check is advisory while the user types: submit names bad fields)."""
    d = spec.defaults_for(variant)
    size = parse_resolution(d.resolution)
    raw = params.get("resolution") or (
        f"{params['width']}x{params['height']}" if params.get("width") else None
    )
    if raw:
        with contextlib.suppress(ValueError):
            size = parse_resolution(str(raw))
    w, h = round_size(*size, spec, variant)
    frames = min(FRAMES_MAX, max(1, int(_number(params.get("frames"), d.frames))))
    steps = min(STEPS_MAX, max(1, int(_number(params.get("steps"), d.steps))))
    guidance = _number(params.get("guidance_scale"), d.guidance_scale)
    image = bool(params.get("image")) or spec.requires_image
    return JobShape(w, h, (frames - 1) // 4 * 4 + 1, steps, guidance=guidance > 1.0, image=image)


def _number(value: Any, default: float) -> float:
    try:
        return default if value in (None, "") else float(value)
    except (TypeError, ValueError):
        return default


def fit_verdict(
    store: ModelStore,
    profile: HardwareProfile,
    model: str,
    params: Mapping[str, Any] | None = None,
    *,
    data_dir: Path | None = None,
) -> FitVerdict:
    """The verdict for ``model`` (the variant a job would run) at ``params``' size.

    Blocking but cheap (a status read and arithmetic); ``profile`` is the engine's hardware,
    ``data_dir`` the engine's data folder (its measurements).
    """
    params = params or {}
    spec, var = store.resolve(model, params.get("variant") or None)
    shape = job_shape(spec, var.name, params)
    status = store.status(spec.id, var.name)
    if var.name == DEV_VARIANT and not status.complete:
        # Its memory facts come from its files; a tiny model fits anywhere. (The random variant
        # is full size.)
        kind = FitKind.gpu if profile.has_gpu else FitKind.cpu
        return FitVerdict(spec.id, var.name, kind, None, None, None, None, shape, True, None)
    mp = estimate_plan(store, profile, data_dir, spec, var, shape)
    strategy = STRATEGIES[mp.strategy]
    if not mp.fits:
        kind = FitKind.none
    elif not strategy.gpu:
        kind = FitKind.cpu
    elif strategy.fp8:
        kind = FitKind.fp8
    elif strategy.offload != "none":
        kind = FitKind.offload
    else:
        kind = FitKind.gpu
    return FitVerdict(
        spec.id,
        var.name,
        kind,
        mp.strategy,
        mp.vram_gb,
        mp.ram_gb,
        mp.minutes,
        shape,
        var.development,
        mp,
    )
