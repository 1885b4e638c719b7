"""The planner's fit verdict for the model picker: whether and how a model fits a machine, at the
size the form asks for, in words a person reads and figures that agree with the planner."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from tests.engine_helpers import engine_settings
from tests.helpers import REAL_MANIFEST, make_store
from wan_desktop.engine import Engine, JobKind, JobSpec
from wan_desktop.engine.estimate import FitKind, fit_verdict
from wan_desktop.engine.hardware import HardwareProfile, simulated_profile
from wan_desktop.engine.model_facts import facts_for
from wan_desktop.engine.planner import JobShape, plan
from wan_desktop.models import ModelStore
from wan_desktop.ui.fit import describe

H100 = simulated_profile(80, 256, name="H100", compute_capability=(9, 0))
RTX4090 = simulated_profile(24, 64, name="RTX 4090", compute_capability=(8, 9))
RTX3070 = simulated_profile(8, 32, name="RTX 3070", compute_capability=(8, 6))
CPU_24 = simulated_profile(0, 24)
CPU_128 = simulated_profile(0, 128)


@pytest.fixture
def store(tmp_path: Path) -> ModelStore:
    return make_store(tmp_path / "models", REAL_MANIFEST)


# What each machine can do with the real models at 720p (the defaults), by the planner's ladder.
KINDS = {
    (H100, "T2V-A14B"): FitKind.offload,
    (H100, "TI2V-5B"): FitKind.gpu,
    (RTX4090, "T2V-A14B"): FitKind.fp8,
    (RTX4090, "I2V-A14B"): FitKind.fp8,
    (RTX4090, "TI2V-5B"): FitKind.offload,
    (RTX3070, "T2V-A14B"): FitKind.none,
    (RTX3070, "TI2V-5B"): FitKind.offload,
    (CPU_24, "T2V-A14B"): FitKind.none,
    (CPU_24, "TI2V-5B"): FitKind.none,
    (CPU_128, "T2V-A14B"): FitKind.cpu,
    (CPU_128, "TI2V-5B"): FitKind.cpu,
}


@pytest.mark.parametrize(("profile", "model"), list(KINDS))
def test_each_machine_gets_the_verdict_of_the_planners_choice(
    store: ModelStore, profile: HardwareProfile, model: str
) -> None:
    v = fit_verdict(store, profile, model, {})
    assert v.kind is KINDS[profile, model], v
    spec, var = store.resolve(model)
    mp = plan(facts_for(spec, None), var.dtype, v.shape, profile)
    assert (v.strategy, v.vram_gb, v.ram_gb, v.minutes) == (
        mp.strategy,
        mp.vram_gb,
        mp.ram_gb,
        mp.minutes,
    )
    assert v.fits is (v.kind is not FitKind.none)
    words = {
        FitKind.gpu: "fits on the GPU",
        FitKind.offload: "fits with offloading",
        FitKind.fp8: "fits in fp8",
        FitKind.cpu: "CPU only",
        FitKind.none: "does not fit",
    }
    text, detail = describe(v, profile)
    assert text.startswith(words[v.kind])
    if v.kind is FitKind.none:
        assert "GiB" in detail
    else:
        assert f"{mp.ram_gb:.0f} GiB" in detail or f"{mp.vram_gb:.0f} GiB" in detail


def test_without_a_gpu_the_verdict_says_so_plainly(store: ModelStore) -> None:
    _, small = describe(fit_verdict(store, CPU_24, "TI2V-5B", {}), CPU_24)
    assert small.startswith("No GPU here") and "development mode" in small
    roomy = fit_verdict(store, CPU_128, "TI2V-5B", {"resolution": "854x480", "frames": 33})
    text, detail = describe(roomy, CPU_128)
    assert detail.startswith("No GPU here: it would run on the CPU")
    assert "NVIDIA GPU" in detail and "per video" in detail
    assert roomy.minutes is not None and roomy.minutes > 60, "hours on a CPU, and it says so"
    assert "h" in text or "days" in text


def test_the_forms_settings_change_the_verdict(store: ModelStore) -> None:
    assert fit_verdict(store, H100, "T2V-A14B", {"resolution": "1280x720"}).kind is FitKind.offload
    small = fit_verdict(store, H100, "T2V-A14B", {"resolution": "854x480"})
    assert small.kind is FitKind.gpu and small.shape.width == 848
    short = fit_verdict(store, H100, "T2V-A14B", {"resolution": "854x480", "steps": 4})
    assert short.minutes is not None and small.minutes is not None
    assert short.minutes < small.minutes


def test_unreadable_form_values_fall_back_to_what_submit_would_use(store: ModelStore) -> None:
    v = fit_verdict(store, RTX4090, "I2V-A14B", {"resolution": "huge", "frames": "ten", "steps": 0})
    d = store.resolve("I2V-A14B")[0].defaults
    assert (v.shape.width, v.shape.height) == (1280, 720)
    assert v.shape.frames == d.frames and v.shape.image, "I2V always encodes an image"
    odd = fit_verdict(store, RTX4090, "T2V-A14B", {"frames": 10, "steps": 500})
    assert odd.shape == JobShape(1280, 720, 9, 100, guidance=True, image=False)


def test_a_development_variant_fits_anywhere_and_its_files_give_the_figures(
    tmp_path: Path, tiny_models_root: Path
) -> None:
    empty = make_store(tmp_path / "empty", REAL_MANIFEST, dev_mode=True)
    unbuilt = fit_verdict(empty, CPU_24, "T2V-A14B", {"resolution": "1280x720"})
    assert unbuilt.variant == "tiny" and unbuilt.kind is FitKind.cpu
    assert unbuilt.vram_gb is None and unbuilt.minutes is None
    assert "noise" in describe(unbuilt, CPU_24)[1]
    assert (unbuilt.shape.width, unbuilt.shape.height) == (320, 176), "the tiny variant's limit"
    built = make_store(tiny_models_root, REAL_MANIFEST, dev_mode=True)
    v = fit_verdict(built, CPU_24, "T2V-A14B", {})
    assert v.kind is FitKind.cpu and v.strategy == "cpu"
    assert v.ram_gb is not None and v.ram_gb < 3.0, "a tiny model next to the process itself"
    text, detail = describe(v, CPU_24)
    assert v.minutes is not None and v.minutes < 1 and text == "CPU only · < 1 min"
    assert "Fine for a development model" in detail


def test_the_verdict_agrees_with_the_estimate_a_submitted_job_gets(tmp_path: Path) -> None:
    settings = replace(engine_settings(tmp_path), mock=False)
    engine = Engine(settings, hardware=RTX4090, start=False)
    try:
        params = {"model": "TI2V-5B", "prompt": "a kite", "resolution": "854x480", "frames": 49}
        job = engine.submit(JobSpec(kind=JobKind.wan, params=params))
        v = fit_verdict(engine.models, engine.hardware, "TI2V-5B", params)
        assert job.estimate["strategy"] == v.strategy
        assert job.estimate["vram_gb"] == v.vram_gb and job.estimate["minutes"] == v.minutes
    finally:
        engine.shutdown()
