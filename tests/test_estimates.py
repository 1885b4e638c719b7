"""Time estimates that are honest: development jobs from the tiny model's own size, measured runs
when there are some, a flag on every guess, and a job that will not fit is never queued silently.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.api_helpers import api_client
from tests.engine_helpers import engine_settings, wan_spec
from tests.helpers import REAL_MANIFEST
from tests.wan_helpers import SMALL, real_engine, run_job, small_spec
from wan_desktop.cli import main
from wan_desktop.engine import Engine, JobState
from wan_desktop.engine.hardware import simulated_profile
from wan_desktop.engine.model_facts import facts_for, facts_from_manifest, tiny_facts
from wan_desktop.models import load_manifest
from wan_desktop.models.config import OrchestratorConfig

MODELS = ("T2V-A14B", "I2V-A14B", "TI2V-5B")


@pytest.mark.parametrize("model", MODELS)
def test_the_tiny_architecture_known_before_the_build_matches_the_built_files(
    tiny_models_root: Path, model: str
) -> None:
    engine = real_engine(tiny_models_root, tiny_models_root.parent / f"data-{model}", start=False)
    try:
        spec, var = engine.models.resolve(model, None)
        status = engine.models.status(spec.id, var.name)
        assert var.development and status.complete
        built = facts_for(spec, status.path)
        before = tiny_facts(spec)
        assert built.source == "files" and before.source == "tiny"
        for name in (
            "hidden_size",
            "num_layers",
            "ffn_dim",
            "vae_base_dim",
            "latent_channels",
            "num_heads",
        ):
            assert getattr(before, name) == getattr(built, name), name
        assert set(before.params) == set(built.params)
        for comp, n in built.params.items():
            assert n / 3 <= before.params[comp] <= n * 3, comp
    finally:
        engine.shutdown()


def test_a_first_development_job_is_estimated_from_the_tiny_model(tmp_path: Path) -> None:
    # Issue 17: with the tiny model not built yet, the estimate came from the real model's
    # manifest figures ("≈ 127h 43m · strategy: cpu_fp8" for a job that took 1 min 41 s).
    engine = real_engine(tmp_path / "models", tmp_path / "data", start=False)
    try:
        job = engine.submit(wan_spec(model="T2V-A14B"))  # the tiny variant's defaults
        e = job.estimate
        assert job.development and e["facts"] == "tiny"
        assert e["strategy"] == "cpu" and e["fits"] is True
        assert 0 < e["minutes"] < 2, e
        assert e["guess"] is True and "not yet measured" in e["basis"]
        assert not job.warnings
        # The real model's figures for the same job, for scale: hours.
        spec, var = engine.models.resolve("T2V-A14B", None)
        from wan_desktop.engine.planner import JobShape, plan

        p = job.params
        shape = JobShape(p["width"], p["height"], p["frames"], p["steps"])
        real = plan(facts_from_manifest(spec), var.dtype, shape, engine.hardware)
        assert real.minutes > 100 * e["minutes"]
        with api_client(tmp_path, engine=engine) as (client, _):
            r = client.get("/api/v1/generation/models/detect?prompt=a+fox")
            req = r.json()["requirements"]
            assert req["facts"] == "tiny" and req["estimate_is_guess"] is True
            assert 0 < req["estimated_minutes"] < 2
    finally:
        engine.shutdown()


def test_measured_runs_replace_the_guess(tiny_models_root: Path, tmp_path: Path) -> None:
    pytest.importorskip("diffusers")
    engine = real_engine(tiny_models_root, tmp_path)
    try:
        done = run_job(engine, seed=1)
        assert done.state is JobState.completed, done.failure
        assert done.estimate["guess"] is True  # the first run had nothing measured
        engine.pause()
        again = engine.submit(small_spec(seed=2))
        e = again.estimate
        assert e["guess"] is False and e["basis"] == "measured on this computer"
        took = done.finished_at - done.started_at
        # The measured steps (and the predicted encoders and decode) of a run that took `took`.
        assert e["minutes"] <= took / 60 + 0.01
        assert e["minutes"] != done.estimate["minutes"] or done.estimate["minutes"] < 0.01
        # Another size has no measured run: a guess again.
        other = engine.submit(small_spec(seed=3, frames=5))
        assert other.estimate["guess"] is True
    finally:
        engine.shutdown()


def _real_model_engine(root: Path) -> Engine:
    models = OrchestratorConfig.from_env(
        {}, models_root=root / "models", manifest_path=REAL_MANIFEST
    )
    settings = engine_settings(root, mock=False, models=models)
    profile = simulated_profile(24, 32, name="RTX 4090", compute_capability=(8, 9))
    return Engine(settings, hardware=profile, start=False)


def test_a_job_that_will_not_fit_is_queued_with_a_warning_saying_why(tmp_path: Path) -> None:
    engine = _real_model_engine(tmp_path)
    try:
        job = engine.submit(wan_spec(model="T2V-A14B", resolution="1280x720", steps=40))
        assert job.state is JobState.queued and job.estimate["fits"] is False
        (warning,) = job.warnings
        assert "T2V-A14B will likely not run on this machine" in warning
        assert "RAM is the limit" in warning and "Development mode" in warning
        with api_client(tmp_path, engine=engine) as (client, _):
            r = client.post(
                "/api/v1/generation/submit",
                json={"model_type": "T2V-A14B", "prompt": "a fox", "resolution": "1280x720"},
            )
            assert r.status_code == 200, r.text
            assert "will likely not run on this machine" in r.json()["message"]
            assert r.json()["warnings"] and "RAM is the limit" in r.json()["warnings"][0]
        # TI2V-5B fits this machine: no warning.
        ok = engine.submit(wan_spec(model="TI2V-5B", resolution="854x480"))
        assert ok.estimate["fits"] is True and not ok.warnings
    finally:
        engine.shutdown()


def test_wan_generate_says_before_running_that_a_job_will_not_fit(
    tiny_models_root: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pytest.importorskip("diffusers")
    monkeypatch.setenv("MODELS_ROOT", str(tiny_models_root))
    monkeypatch.setenv("WAN_DEV_MODE", "1")
    # A machine with almost no RAM: even the tiny model does not fit by the estimate.
    monkeypatch.setenv("WAN_HARDWARE_PROFILE", json.dumps({
        "device": "cpu", "gpu_name": None, "vram_total_mb": 0, "ram_total_mb": 512,
        "cpu_count": os.cpu_count() or 1,
    }))  # fmt: skip
    out = tmp_path / "fox.mp4"
    code = main(
        ["generate", "--model", "T2V-A14B", "--prompt", "a fox", "--out", str(out)]
        + [f"--{k}={v}" for k, v in SMALL.items()]
    )
    err = capsys.readouterr().err
    assert code == 0 and out.exists(), err
    assert err.count("warning: T2V-A14B will likely not run on this machine") == 1, err
    assert "RAM is the limit" in err


def test_estimates_say_they_are_guesses_in_the_manifest_facts_case() -> None:
    from wan_desktop.engine.planner import JobShape, plan

    spec = load_manifest(REAL_MANIFEST).get("TI2V-5B")
    mp = plan(facts_from_manifest(spec), "bfloat16", JobShape(832, 480, 81, 50), _any_gpu())
    e = mp.estimate()
    assert e["guess"] is True and "the manifest's figures" in e["basis"]


def _any_gpu() -> Any:
    return simulated_profile(24, 64)
