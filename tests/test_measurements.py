"""The planner learns: a recorded measurement replaces its prediction for the same job on the same
device, and the estimate says which one it is."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from tests.helpers import REAL_MANIFEST
from tests.wan_helpers import real_engine, run_job, small_spec
from wan_desktop.engine import JobState
from wan_desktop.engine.hardware import simulated_profile
from wan_desktop.engine.measurements import (
    FILE_NAME,
    Measurement,
    MeasurementKey,
    MeasurementStore,
    measured_plan,
)
from wan_desktop.engine.model_facts import ModelFacts, facts_for
from wan_desktop.engine.planner import STRATEGIES, JobShape, MemoryPlan, estimate_minutes, plan
from wan_desktop.models import load_manifest

T2V = "t2v-A14B@2.2.0"
RTX4090 = simulated_profile(24, 64, name="NVIDIA GeForce RTX 4090", compute_capability=(8, 9))
JOB = JobShape(832, 480, 81, 40)


def predicted_plan() -> tuple[ModelFacts, MemoryPlan]:
    spec = load_manifest(REAL_MANIFEST).get(T2V)
    facts = facts_for(spec, None)
    return facts, plan(facts, "bfloat16", JOB, RTX4090)


def test_a_recorded_measurement_wins_over_the_prediction_and_says_so(tmp_path: Path) -> None:
    facts, mp = predicted_plan()
    assert mp.basis == "predicted" and mp.estimate()["guess"] is True
    assert "not yet measured" in mp.estimate()["basis"]
    key = MeasurementKey.of(T2V, "bf16", mp.strategy, JOB, RTX4090)
    MeasurementStore(tmp_path).record(
        key,
        Measurement(s_per_step=31.5, steps=4, source="bench", peak_vram_gb=21.7, peak_ram_gb=58.0),
    )
    learnt = measured_plan(tmp_path, T2V, "bf16", mp, facts, JOB, RTX4090)
    assert learnt.basis == "measured on this GPU"
    assert learnt.estimate()["basis"] == "measured on this GPU"
    assert learnt.estimate()["guess"] is False
    assert (learnt.vram_gb, learnt.ram_gb) == (21.7, 58.0)
    rest = estimate_minutes(
        facts, mp.compute_dtype, replace(JOB, steps=0), RTX4090, STRATEGIES[mp.strategy]
    )
    assert learnt.minutes == round(rest + 31.5 * 40 / 60, 2)
    assert learnt.minutes != mp.minutes
    assert learnt.strategy == mp.strategy  # the figures change, not the choice

    # Another size, another card or another strategy: still the prediction.
    for job, profile in (
        (replace(JOB, width=1280, height=720), RTX4090),
        (JOB, simulated_profile(24, 64, name="NVIDIA RTX A5000", compute_capability=(8, 6))),
    ):
        other = plan(facts, "bfloat16", job, profile)
        assert measured_plan(tmp_path, T2V, "bf16", other, facts, job, profile) == other
    cheaper = replace(mp, strategy="sequential_offload")
    assert measured_plan(tmp_path, T2V, "bf16", cheaper, facts, JOB, RTX4090) == cheaper


def test_an_unreadable_measurements_file_means_predictions_not_a_failure(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    facts, mp = predicted_plan()
    (tmp_path / FILE_NAME).write_text("{not json", "utf-8")
    assert measured_plan(tmp_path, T2V, "bf16", mp, facts, JOB, RTX4090) == mp
    assert "unreadable" in caplog.text
    # Recording replaces the broken file with a whole one.
    key = MeasurementKey.of(T2V, "bf16", mp.strategy, JOB, RTX4090)
    MeasurementStore(tmp_path).record(key, Measurement(s_per_step=2.0, steps=4, source="job"))
    assert MeasurementStore(tmp_path).get(key) is not None


def test_a_finished_job_records_its_speed_and_the_next_estimate_uses_it(
    tiny_models_root: Path, tmp_path: Path
) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("diffusers")
    models = tmp_path / "models"
    shutil.copytree(tiny_models_root, models, symlinks=True)
    with real_engine(models, tmp_path) as engine:
        first = run_job(engine)
        assert first.state is JobState.completed, first.failure
        assert first.estimate["guess"] is True
        stored = MeasurementStore(engine.settings.data_dir).all()
        assert list(stored) == [f"{T2V}|tiny|cpu|96x64x9|cpu"]
        m = stored[f"{T2V}|tiny|cpu|96x64x9|cpu"]
        assert m.source == "job" and m.steps == 4 and m.s_per_step > 0
        assert set(m.per_expert) == {"high_noise", "low_noise"}
        second = engine.submit(small_spec())  # the same parameters
        assert second.estimate["basis"] == "measured on this computer"
        # A different size has no measurement yet.
        third = run_job(engine, resolution="64x64")
        assert third.estimate["guess"] is True
