"""Measured speed and memory, kept in the data folder, so the planner learns this machine.

A measurement is the seconds per step and the peak memory of one model × variant × strategy ×
size × frames on one device (by name: an "NVIDIA H100 80GB HBM3" here and one in another
machine are the same card). ``wan bench`` records one per strategy it runs, and each finished
generation job records its own. An estimate for the same key then uses the measured figures
instead of the planner's prediction, and says so ("measured on this GPU" vs "predicted").

The file (``measurements.json``) is small JSON, replaced atomically under a file lock: the app,
``wan serve`` and ``wan bench`` may write it at the same time.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from wan_desktop.models.atomic import atomic_write_json

from .hardware import HardwareProfile
from .model_facts import ModelFacts
from .planner import STRATEGIES, JobShape, MemoryPlan, estimate_minutes

log = logging.getLogger("wan_desktop.engine.measurements")

FILE_NAME = "measurements.json"
SCHEMA = "wan.measurements/1"
LOCK_TIMEOUT_S = 10.0


def device_name(profile: HardwareProfile) -> str:
    return (profile.gpu_name or profile.device) if profile.has_gpu else "cpu"


def basis_for(profile: HardwareProfile) -> str:
    return "measured on this GPU" if profile.has_gpu else "measured on this computer"


@dataclass(frozen=True)
class MeasurementKey:
    model_id: str
    variant: str
    strategy: str
    width: int
    height: int
    frames: int
    device: str

    @classmethod
    def of(
        cls, model_id: str, variant: str, strategy: str, job: JobShape, profile: HardwareProfile
    ) -> MeasurementKey:
        return cls(
            model_id, variant, strategy, job.width, job.height, job.frames, device_name(profile)
        )

    @property
    def text(self) -> str:
        size = f"{self.width}x{self.height}x{self.frames}"
        return f"{self.model_id}|{self.variant}|{self.strategy}|{size}|{self.device}"


@dataclass(frozen=True)
class Measurement:
    s_per_step: float  # one denoising step, both classifier-free-guidance passes
    steps: int  # how many steps it was measured over
    source: str  # "bench" or "job"
    peak_vram_gb: float | None = None  # the torch allocator's peak (None: no GPU)
    peak_ram_gb: float | None = None
    per_expert: Mapping[str, float] = field(default_factory=dict)
    recorded_at: float = field(default_factory=time.time)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Measurement:
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        m = cls(**known)
        if not (isinstance(m.s_per_step, (int, float)) and m.s_per_step > 0):
            raise ValueError(f"s_per_step is {m.s_per_step!r}")
        return m


class MeasurementStore:
    """``measurements.json`` in a data folder: the latest measurement per key."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / FILE_NAME

    def all(self) -> dict[str, Measurement]:
        try:
            raw = json.loads(self.path.read_text("utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("%s is unreadable (%s): the planner predicts instead", self.path, exc)
            return {}
        out = {}
        entries = raw.get("measurements", {}) if isinstance(raw, dict) else {}
        for key, value in entries.items() if isinstance(entries, dict) else ():
            try:
                out[key] = Measurement.from_dict(value)
            except (TypeError, ValueError) as exc:
                log.warning("measurement %s in %s is ignored: %s", key, self.path, exc)
        return out

    def get(self, key: MeasurementKey) -> Measurement | None:
        return self.all().get(key.text)

    def record(self, key: MeasurementKey, measurement: Measurement) -> None:
        from filelock import FileLock

        self.path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.path.with_name(FILE_NAME + ".lock")), timeout=LOCK_TIMEOUT_S):
            entries = {k: asdict(m) for k, m in self.all().items()}
            entries[key.text] = asdict(measurement)
            atomic_write_json(self.path, {"schema": SCHEMA, "measurements": entries})


def use_measured(
    mp: MemoryPlan,
    measured: Measurement | None,
    facts: ModelFacts,
    job: JobShape,
    profile: HardwareProfile,
) -> MemoryPlan:
    """``mp`` with the measured figures of its strategy where there are some (the time of the
    steps, the peak memory); the rest of the time (text encoder, VAE) stays predicted."""
    if measured is None:
        return mp
    strategy = STRATEGIES[mp.strategy]
    rest = estimate_minutes(facts, mp.compute_dtype, replace(job, steps=0), profile, strategy)
    minutes = rest + measured.s_per_step * job.steps / 60
    changes: dict[str, Any] = {"minutes": round(minutes, 2), "basis": basis_for(profile)}
    if strategy.gpu and measured.peak_vram_gb is not None:
        changes["vram_gb"] = round(measured.peak_vram_gb, 2)
    if measured.peak_ram_gb is not None:
        changes["ram_gb"] = round(measured.peak_ram_gb, 2)
    return replace(mp, **changes)


def measured_plan(
    data_dir: Path,
    model_id: str,
    variant: str,
    mp: MemoryPlan,
    facts: ModelFacts,
    job: JobShape,
    profile: HardwareProfile,
) -> MemoryPlan:
    """The plan's estimate from a recorded measurement when there is one for this exact job."""
    if job.gpus > 1:
        return mp  # measurements are of one GPU's runs; a split job is not one of them
    key = MeasurementKey.of(model_id, variant, mp.strategy, job, profile)
    return use_measured(mp, MeasurementStore(data_dir).get(key), facts, job, profile)


def record_job(
    data_dir: Path,
    model_id: str,
    variant: str,
    mp: MemoryPlan,
    job: JobShape,
    profile: HardwareProfile,
    details: Mapping[str, Any],
) -> None:
    """Record a finished job's step time and peak memory. Never fails the job: a write that
    goes wrong is logged."""
    step_times = details.get("median_step_s") or {}
    counts = details.get("experts") or {}
    if not step_times or job.steps < 2 or job.gpus > 1:
        return  # one step is mostly warm-up; a split job is not a one-GPU figure to plan by
    total = sum(step_times[e] * counts.get(e, 1) for e in step_times)
    s_per_step = total / sum(counts.get(e, 1) for e in step_times)
    peak = details.get("peak") or {}
    measurement = Measurement(
        s_per_step=round(s_per_step, 4),
        steps=job.steps,
        source="job",
        peak_vram_gb=peak.get("peak_vram_allocated_gb"),
        peak_ram_gb=peak.get("peak_rss_gb"),
        per_expert=dict(step_times),
    )
    try:
        key = MeasurementKey.of(model_id, variant, mp.strategy, job, profile)
        MeasurementStore(data_dir).record(key, measurement)
    except Exception as exc:  # a full disk or a lock held too long must not fail a finished job
        log.warning("could not record the job's measurements: %s", exc)
