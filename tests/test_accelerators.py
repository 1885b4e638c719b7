"""diffusers' own accelerators through the engine, on the tiny development variants: step caching
(a per-job level), the attention backend and regional compilation (per loaded model)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.helpers import REAL_MANIFEST
from tests.wan_helpers import (
    decoded,
    direct_frames,
    forward_hook,
    real_engine,
    run_job,
    sidecar,
    write_image,
)
from wan_desktop.engine import Engine, FailureCategory, InvalidInputError, JobState
from wan_desktop.engine.params import CHOICES, validate_wan_params
from wan_desktop.engine.settings import ATTENTION_BACKENDS, EngineSettings
from wan_desktop.models import load_manifest
from wan_desktop.models.env import SettingError

pytest.importorskip("torch")
pytest.importorskip("diffusers")

LEVELS = CHOICES["cache"][1:]  # every level but off
# Enough steps that each expert of the A14B models sees several calls in a row.
CACHE_STEPS = 20


@pytest.fixture(scope="module")
def engine(tiny_models_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    eng = real_engine(tiny_models_root, tmp_path_factory.mktemp("accel-engine"))
    yield eng
    eng.shutdown()


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(write_image(tmp_path_factory.mktemp("img") / "first.png", (128, 96), (200, 60, 30)))


def model_params(model: str, image: str) -> dict[str, Any]:
    return {"model": model, **({"image": image} if model != "T2V-A14B" else {})}


def accelerators(job: Any) -> dict[str, Any]:
    return dict(sidecar(job)["generation"]["accelerators"])


# ------------------------------------------------------------------------------- step caching


def test_cache_off_is_bit_identical_to_no_setting_also_after_a_cached_job(engine: Engine) -> None:
    plain = run_job(engine, seed=11, steps=CACHE_STEPS)
    assert plain.state is JobState.completed, plain.failure
    assert plain.params["cache"] == "off"  # the default is recorded with the job
    cached = run_job(engine, seed=11, steps=CACHE_STEPS, cache="strong")
    assert cached.state is JobState.completed, cached.failure
    assert accelerators(cached)["cache"]["skipped_calls"] > 0
    # The same warm model: the cache's hooks (and our counter) are gone after its job.
    off = run_job(engine, seed=11, steps=CACHE_STEPS, cache="off")
    assert off.state is JobState.completed, off.failure
    assert np.array_equal(decoded(off), decoded(plain)), "cache off must change nothing"
    assert accelerators(off)["cache"] == {"level": "off"}
    assert sidecar(off)["timings_s"]["load"] == 0.0  # it was the warm model


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("model", ["T2V-A14B", "I2V-A14B", "TI2V-5B"])
def test_each_level_skips_transformer_calls_counted_from_the_hooks(
    engine: Engine, image: str, model: str, level: str
) -> None:
    calls: dict[int, int] = {}

    def count(module: Any, args: Any) -> None:
        calls[id(module)] = calls.get(id(module), 0) + 1

    with forward_hook(count):  # our own count of the transformers' calls, outside the cache
        job = run_job(engine, seed=5, steps=CACHE_STEPS, cache=level, **model_params(model, image))
    assert job.state is JobState.completed, job.failure
    assert job.params["cache"] == level
    cache = accelerators(job)["cache"]
    assert cache["level"] == level and cache["method"] == "first_block_cache"
    assert cache["transformer_calls"] == sum(calls.values()) == 2 * CACHE_STEPS  # CFG: 2 a step
    assert 0 < cache["skipped_calls"] < cache["transformer_calls"]
    experts = cache["per_expert"]
    two = model != "TI2V-5B"
    assert set(experts) == ({"transformer", "transformer_2"} if two else {"transformer"})
    assert all(e["calls"] > 0 for e in experts.values())  # each expert got the cache
    assert sum(e["skipped"] for e in experts.values()) == cache["skipped_calls"]


def test_the_strongest_level_skips_more_calls_than_the_lightest(engine: Engine) -> None:
    skipped = {}
    for level in LEVELS:
        job = run_job(engine, seed=8, steps=CACHE_STEPS, cache=level)
        assert job.state is JobState.completed, job.failure
        cache = accelerators(job)["cache"]
        skipped[level] = cache["skipped_calls"]
        assert cache["threshold"] == accelerate_thresholds()[level]
    # Each call is skipped or not from the change since the last full call, so in-between
    # levels need not be ordered call by call; the ends, four times apart, are.
    assert skipped[LEVELS[-1]] > skipped[LEVELS[0]]


def accelerate_thresholds() -> dict[str, float]:
    from wan_desktop.engine.pipelines.accelerate import CACHE_THRESHOLDS

    assert list(CACHE_THRESHOLDS) == list(LEVELS)  # a threshold for every declared level
    return CACHE_THRESHOLDS


def test_cached_jobs_do_not_teach_the_planner_their_speed(
    tiny_models_root: Path, tmp_path: Path
) -> None:
    from wan_desktop.engine.measurements import MeasurementStore

    eng = real_engine(tiny_models_root, tmp_path)
    try:
        cached = run_job(eng, seed=2, steps=CACHE_STEPS, cache="medium")
        assert cached.state is JobState.completed, cached.failure
        assert accelerators(cached)["cache"]["skipped_calls"] > 0
        assert MeasurementStore(eng.settings.data_dir).all() == {}
        plain = run_job(eng, seed=2, steps=CACHE_STEPS)
        assert plain.state is JobState.completed, plain.failure
        assert len(MeasurementStore(eng.settings.data_dir).all()) == 1
    finally:
        eng.shutdown()


def test_a_bad_cache_level_is_named_with_the_choices() -> None:
    manifest = load_manifest(REAL_MANIFEST)
    with pytest.raises(InvalidInputError) as err:
        validate_wan_params({"model": "T2V-A14B", "prompt": "a fox", "cache": "max"}, manifest)
    assert set(err.value.errors) == {"cache"}
    assert all(level in err.value.errors["cache"] for level in CHOICES["cache"])
    ok = validate_wan_params({"model": "T2V-A14B", "prompt": "a", "cache": " Light "}, manifest)
    assert ok.cache == "light"
    # Each GPU of a split job would decide on its own share of the tokens: refused.
    with pytest.raises(InvalidInputError) as err:
        validate_wan_params(
            {"model": "T2V-A14B", "prompt": "a", "cache": "light", "gpus": 2}, manifest
        )
    assert "cache" in err.value.errors


def test_cli_takes_a_cache_level(tmp_path: Path) -> None:
    import argparse

    from wan_desktop.engine import cli

    parser = argparse.ArgumentParser()
    cli.add_parser(parser.add_subparsers())
    out = str(tmp_path / "a.mp4")
    argv = ["generate", "--model", "T2V-A14B", "--prompt", "x", "--cache", "medium", "--out", out]
    args = parser.parse_args(argv)
    params, errors = cli._params(args)
    assert params["cache"] == "medium" and not errors


# ---------------------------------------------------------------------------- attention backend


def test_native_backend_explicitly_equals_the_default_and_plain_diffusers(
    tiny_models_root: Path, tmp_path: Path
) -> None:
    frames = {}
    for backend in ("auto", "native"):
        eng = real_engine(tiny_models_root, tmp_path / backend, attention_backend=backend)
        try:
            job = run_job(eng, seed=21)
            assert job.state is JobState.completed, job.failure
            assert accelerators(job)["attention_backend"] == "native"  # auto on a CPU
            frames[backend] = decoded(job)
            if backend == "native":
                folder = eng.models.model_path(job.model_id)
                direct = direct_frames(folder, job.params, tmp_path)
        finally:
            eng.shutdown()
    assert np.array_equal(frames["native"], frames["auto"])
    assert np.array_equal(frames["native"], direct), "differs from diffusers with no backend set"


def test_an_unknown_backend_is_a_clear_error_naming_the_choices() -> None:
    with pytest.raises(SettingError) as err:
        EngineSettings.from_env({"WAN_ATTENTION_BACKEND": "fastest"})
    assert "WAN_ATTENTION_BACKEND" in str(err.value)
    assert all(name in str(err.value) for name in ("auto", "native", "flash", "sage"))


def test_every_offered_backend_is_diffusers_and_none_downloads_kernels() -> None:
    from diffusers.models.attention_dispatch import AttentionBackendName

    names = {b.value for b in AttentionBackendName}
    offered = set(ATTENTION_BACKENDS) - {"auto"}
    assert offered <= names
    assert not any(name.endswith("_hub") for name in offered)


def test_a_backend_whose_package_is_missing_fails_the_job_saying_what_to_install(
    tiny_models_root: Path, tmp_path: Path
) -> None:
    from diffusers.models import attention_dispatch

    if attention_dispatch._CAN_USE_FLASH_ATTN:
        pytest.skip("flash-attn is installed here")
    eng = real_engine(tiny_models_root, tmp_path, attention_backend="flash")
    try:
        job = run_job(eng, seed=1)
    finally:
        eng.shutdown()
    assert job.state is JobState.failed
    assert job.failure is not None and job.failure.category is FailureCategory.invalid_input
    assert "flash" in job.failure.message and "flash-attn" in job.failure.message
    assert any("WAN_ATTENTION_BACKEND=auto" in s for s in job.failure.suggestions)


# ---------------------------------------------------------------------------- regional compile


@pytest.mark.slow
def test_regional_compile_is_paid_once_while_the_model_stays_warm_and_takes_the_cache(
    tiny_models_root: Path, tmp_path: Path
) -> None:
    if not (shutil.which("cc") or shutil.which("gcc")):
        pytest.skip("torch.compile needs a C compiler here (apt-get install build-essential)")
    eng = real_engine(tiny_models_root, tmp_path / "compiled", compile_blocks=True)
    try:
        jobs = [
            run_job(eng, seed=31, timeout=600, **({"cache": cache} if cache else {}))
            for cache in (None, None, "strong", "strong")
        ]
    finally:
        eng.shutdown()
    assert all(job.state is JobState.completed for job in jobs), [j.failure for j in jobs]
    first, again, cached, cached_again = (accelerators(job) for job in jobs)
    assert all(a["compile"]["regional"] for a in (first, again, cached, cached_again))
    assert first["compile"]["compile_s"] > 0
    assert sidecar(jobs[0])["timings_s"]["compile"] == first["compile"]["compile_s"]
    # Warm: the same blocks are not compiled again (the cache's hooks make a new version once).
    assert again["compile"]["compile_s"] == 0.0 and "compile" not in sidecar(jobs[1])["timings_s"]
    assert cached_again["compile"]["compile_s"] == 0.0
    eager = real_engine(tiny_models_root, tmp_path / "eager")
    try:
        plain = run_job(eager, seed=31)
        eager_cached = run_job(eager, seed=31, cache="strong")
    finally:
        eager.shutdown()
    # The cache decides the same in compiled blocks, and counts the same.
    assert cached["cache"] == accelerators(eager_cached)["cache"]
    assert cached["cache"]["skipped_calls"] > 0
    # Compiled kernels may round differently in the last bit; the video is the same picture.
    diff = np.abs(decoded(jobs[0]).astype(int) - decoded(plain).astype(int))
    assert diff.max() <= 2


# ------------------------------------------------------------------------ with every strategy


@pytest.mark.parametrize("strategy", ["model_offload", "group_offload", "sequential_offload"])
def test_the_cache_runs_under_each_offload_strategy_and_leaves_no_trace(
    tiny_models_root: Path, strategy: str
) -> None:
    """The offload strategies hook the same blocks the cache hooks (cpu→cpu here): both work
    together, and removing the cache gives back the strategy's own result."""
    import torch

    from tests.test_strategies import T2V, plan_with
    from wan_desktop.engine.pipelines import accelerate, wan_load

    folder = tiny_models_root / "wan22" / f"{T2V}+tiny"
    pipe = wan_load.load_pipeline(folder, "float32")
    wan_load.apply_strategy(pipe, plan_with(folder, strategy), torch.device("cpu"))

    def run() -> Any:
        out = pipe(
            prompt="a red fox",
            height=64,
            width=96,
            num_frames=5,
            num_inference_steps=CACHE_STEPS,
            generator=torch.Generator().manual_seed(0),
            output_type="np",
        )
        pipe.maybe_free_model_hooks()
        return out.frames[0]

    before = run()
    with accelerate.step_cache(wan_load.experts(pipe), "strong") as cache:
        cached = run()
    assert cache.skipped > 0 and np.isfinite(cached).all()
    assert np.array_equal(run(), before)


# ------------------------------------------------------------------------------------ wan bench


@pytest.mark.slow
def test_wan_bench_measures_with_a_backend_and_compiled_blocks_without_teaching_the_planner(
    tiny_models_root: Path, tmp_path: Path
) -> None:
    import json

    from tests.test_bench import SMALL, wan_bench
    from wan_desktop.engine.measurements import MeasurementStore

    if not (shutil.which("cc") or shutil.which("gcc")):
        pytest.skip("torch.compile needs a C compiler here (apt-get install build-essential)")
    data, models = tmp_path / "data", tmp_path / "models"
    shutil.copytree(tiny_models_root, models, symlinks=True)
    args = ("--tiny", *SMALL, "--strategy", "cpu", "--json")
    proc = wan_bench(*args, "--attention-backend", "auto", "--compile", models=models, data=data)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["accelerators"] == {"attention_backend": "auto", "compile": True}
    (result,) = doc["results"]
    m = result["measured"]
    assert result["ok"] and m["attention_backend"] == "native"  # auto on a CPU
    assert m["compile_s"] > 0
    # Each expert's first step compiled: only the low-noise expert's second step is steady.
    assert m["experts"] == ["high_noise", "low_noise", "low_noise"]
    assert m["s_per_step_mean"] == pytest.approx(m["step_times_s"][2], abs=1e-3)
    assert doc["recorded"] is False and MeasurementStore(data).all() == {}

    bad = wan_bench(*args, "--attention-backend", "fastest", models=models, data=data)
    assert bad.returncode == 2 and "native" in bad.stderr and "fastest" in bad.stderr


@pytest.mark.slow
def test_gpu_acceptance_fastest_adds_a_compiled_run_per_case(
    tiny_models_root: Path, tmp_path: Path
) -> None:
    import json
    import os
    import subprocess
    import sys

    from tests.helpers import ROOT

    if not (shutil.which("cc") or shutil.which("gcc")):
        pytest.skip("torch.compile needs a C compiler here (apt-get install build-essential)")
    models, out = tmp_path / "models", tmp_path / "acceptance"
    shutil.copytree(tiny_models_root, models, symlinks=True)
    env = {
        **os.environ,
        "MODELS_ROOT": str(models),
        "WAN_DATA_DIR": str(tmp_path / "data"),
        "PYTHON": sys.executable,
    }
    for name in ("WAN_DEV_MODE", "WAN_HARDWARE_PROFILE", "WAN_DEVICE"):
        env.pop(name, None)
    script = str(ROOT / "bench" / "gpu_acceptance.sh")
    case = ["--case", "T2V-A14B:96x64x9:best", "--steps", "2", "--out", str(out)]
    proc = subprocess.run(
        [script, "--tiny", "--fastest", *case],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    plain, fastest = json.loads((out / "acceptance.json").read_text("utf-8"))["runs"]
    assert plain["accelerators"] == {"attention_backend": None, "compile": False}
    assert fastest["accelerators"] == {"attention_backend": "auto", "compile": True}
    (result,) = fastest["results"]
    assert result["ok"] and result["measured"]["compile_s"] > 0
    assert fastest["job"]["steps"] == 6 and fastest["recorded"] is False
    assert "attention auto, compiled blocks" in proc.stdout
