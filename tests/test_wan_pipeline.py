"""The real Wan pipeline, end to end through the engine, on the tiny development variants."""

from __future__ import annotations

import gc
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.engine_helpers import Recorder, wait_job
from tests.helpers import ROOT
from tests.wan_helpers import (
    decoded,
    direct_frames,
    forward_hook,
    make_lora,
    real_engine,
    run_job,
    sidecar,
    small_spec,
    write_image,
)
from wan_desktop.engine import (
    Engine,
    FailureCategory,
    InvalidInputError,
    JobKind,
    JobPreview,
    JobStage,
    JobState,
    JobStep,
    JobWarning,
    ModelDownload,
    ModelLoaded,
    ModelUnloaded,
)
from wan_desktop.engine.outputs import read_mp4
from wan_desktop.models.manifest import DEV_LABEL
from wan_desktop.models.paths import COMPLETE_MARKER

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

STAGES = [
    "initializing",
    "loading_model",
    "preparing_inputs",
    "generating",
    "post_processing",
    "saving",
    "completed",
]


@pytest.fixture(scope="module")
def engine(tiny_models_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """One engine for the tests that only submit jobs: models stay warm between them."""
    eng = real_engine(tiny_models_root, tmp_path_factory.mktemp("wan-engine"))
    yield eng
    eng.shutdown()


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("images")
    return {
        "first": write_image(folder / "first.png", (128, 96), (220, 40, 40)),
        "last": write_image(folder / "last.jpg", (128, 96), (40, 40, 220)),
    }


CASES = {
    "t2v": {"model": "T2V-A14B"},
    "i2v-first-last": {"model": "I2V-A14B", "image": "first", "end_image": "last"},
    "ti2v-text": {"model": "TI2V-5B"},
    "ti2v-image": {"model": "TI2V-5B", "image": "first"},
}


@pytest.mark.parametrize("case", list(CASES))
def test_each_tiny_variant_matches_a_direct_diffusers_call(
    engine: Engine, images: dict[str, Path], tiny_models_root: Path, tmp_path: Path, case: str
) -> None:
    params: dict[str, Any] = dict(CASES[case])
    for key in ("image", "end_image"):
        if key in params:
            params[key] = str(images[params[key]])
    rec = Recorder(engine)
    job = run_job(engine, seed=1234, **params)
    assert job.state is JobState.completed, job.failure
    assert job.variant == "tiny" and job.development and job.label == DEV_LABEL
    assert not job.mock

    direct = direct_frames(engine.models.model_path(job.model_id), job.params, tmp_path)
    ours = decoded(job)
    assert ours.shape == direct.shape == (9, 64, 96, 3)
    assert np.array_equal(ours, direct), "the engine's video differs from diffusers' own call"

    rec.wait(lambda: JobState.completed in rec.states(job.id))
    assert rec.states(job.id) == [
        JobState.queued,
        JobState.preparing,
        JobState.loading,
        JobState.running,
        JobState.encoding,
        JobState.completed,
    ]
    stages = [e.stage for e in rec.of(JobStage, job.id)]
    assert [s for s in stages if s != "downloading_model"] == STAGES
    steps = rec.of(JobStep, job.id)
    assert [s.step for s in steps] == [1, 2, 3, 4]
    experts = {s.expert for s in steps}
    two_experts = job.model_id.endswith("A14B@2.2.0")
    assert experts == ({"high_noise", "low_noise"} if two_experts else {None})

    meta = sidecar(job)
    marker = json.loads((engine.models.model_path(job.model_id) / COMPLETE_MARKER).read_text())
    assert meta["seed"] == 1234 == job.params["seed"]
    assert meta["params"] == dict(job.params)
    assert meta["model"]["id"] == job.model_id and meta["model"]["variant"] == "tiny"
    assert meta["model"]["files"] == marker["files"] and all(
        len(f["sha256"]) == 64 for f in marker["files"]
    )
    assert {"torch", "diffusers", "transformers"} <= set(meta["libraries"])
    assert meta["memory"]["strategy"] == job.memory_plan["strategy"] == "cpu"
    assert meta["memory"]["peak_rss_gb"] > 0
    assert {"loading_model", "generating", "post_processing", "encode"} <= set(meta["timings_s"])
    assert meta["generation"]["experts"] == {
        str(e): sum(1 for s in steps if s.expert == e) for e in experts
    }
    if "image" in params:
        assert meta["generation"]["pipeline"] == "WanImageToVideoPipeline"
        assert meta["generation"]["inputs"]["image"]["sha256"]


def test_lora_strength_one_changes_zero_is_exact_and_broken_ones_are_skipped(
    engine: Engine, tmp_path: Path
) -> None:
    good = make_lora(tmp_path / "good.safetensors")
    other = make_lora(tmp_path / "other.safetensors", seed=2)
    wrong_shape = make_lora(tmp_path / "wrong_shape.safetensors", head_dim=16)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x07not a safetensors file" * 64)

    def frames(*loras: dict[str, Any]) -> Any:
        job = run_job(engine, seed=77, loras=list(loras))
        assert job.state is JobState.completed, job.failure
        return decoded(job), job

    base, _ = frames()
    full, full_job = frames({"path": str(good), "strength": 1.0})
    zero, _ = frames({"path": str(good), "strength": 0.0})
    high_only, _ = frames({"path": str(good), "strength": 1.0, "strength_2": 0.0})
    two, _ = frames({"path": str(good), "strength": 1.0}, {"path": str(other), "strength": 0.5})
    again, _ = frames({"path": str(good), "strength": 1.0})  # the adapter is reused
    broken, broken_job = frames(
        {"path": str(wrong_shape), "strength": 1.0}, {"path": str(garbage), "strength": 1.0}
    )

    assert not np.array_equal(full, base)
    assert np.array_equal(zero, base), "strength 0 must give exactly the base output"
    assert not np.array_equal(high_only, base) and not np.array_equal(high_only, full)
    assert not np.array_equal(two, full)
    assert np.array_equal(again, full)
    assert np.array_equal(broken, base), "skipped LoRAs must leave nothing behind"
    loras = sidecar(full_job)["generation"]["loras"]
    assert loras[0]["strengths"] == {"transformer": 1.0, "transformer_2": 1.0}
    assert len(loras[0]["sha256"]) == 64

    assert broken_job.state is JobState.completed
    assert len(broken_job.warnings) == 2
    assert "wrong_shape.safetensors was skipped" in broken_job.warnings[0]
    assert "different model" in broken_job.warnings[0]
    assert "garbage.safetensors was skipped" in broken_job.warnings[1]
    skipped = sidecar(broken_job)["generation"]["loras"]
    assert "size mismatch" in skipped[0]["error"]


def test_a_lora_on_a_one_transformer_model(engine: Engine, tmp_path: Path) -> None:
    lora = make_lora(tmp_path / "ti2v.safetensors")
    base = run_job(engine, model="TI2V-5B", seed=3)
    styled = run_job(engine, model="TI2V-5B", seed=3, loras=[{"path": str(lora)}])
    assert styled.state is JobState.completed and not styled.warnings
    assert not np.array_equal(decoded(base), decoded(styled))
    with pytest.raises(InvalidInputError) as err:
        engine.submit(small_spec(model="TI2V-5B", loras=[{"path": str(lora), "strength_2": 1}]))
    assert "strength_2" in err.value.errors["loras[0]"]


def test_eta_from_the_second_step_learns_each_experts_speed(
    tiny_models_root: Path, tmp_path: Path
) -> None:
    eng = real_engine(tiny_models_root, tmp_path, preview_every=2)
    try:
        rec = Recorder(eng)
        assert run_job(eng, steps=2).state is JobState.completed  # warm: the model is loaded
        low = eng.pipeline(JobKind.wan).diffusers_pipeline().transformer_2  # type: ignore[attr-defined]
        slow_s = 0.4

        def slow_low_noise(module: Any, args: Any) -> None:
            if module is low:
                time.sleep(slow_s)  # two forwards per step (CFG): at least 0.5 s a step

        with forward_hook(slow_low_noise):
            job = run_job(eng, steps=10, flow_shift=3.0)
        assert job.state is JobState.completed, job.failure
        steps = rec.of(JobStep, job.id)
        experts = [s.expert for s in steps]
        switch = experts.index("low_noise")
        assert 2 <= switch <= 8 and set(experts[switch:]) == {"low_noise"}
        assert steps[0].eta_s is None and all(s.eta_s is not None for s in steps[1:])
        lows_left = [len(experts) - i - 1 for i in range(len(experts))]
        for s, left in zip(steps[switch:], lows_left[switch:], strict=True):
            # Once a low-noise step is measured, the remaining ones are priced at its speed.
            assert s.eta_s is not None and s.eta_s >= left * 2 * slow_s * 0.99
        before = steps[switch - 1].eta_s
        assert before is not None and steps[switch].eta_s is not None
        assert steps[switch].eta_s > before  # it learned that the second expert is slower
        assert steps[-1].eta_s == 0.0

        previews = rec.of(JobPreview, job.id)
        assert [p.step for p in previews] == [2, 4, 6, 8]
        from io import BytesIO

        from PIL import Image

        img = Image.open(BytesIO(previews[0].jpeg))
        assert img.format == "JPEG" and (img.width, img.height) == (96, 64)
    finally:
        eng.shutdown()


def test_cancel_stops_within_one_step_and_keeps_the_model_warm(
    tiny_models_root: Path, tmp_path: Path
) -> None:
    eng = real_engine(tiny_models_root, tmp_path)
    try:
        rec = Recorder(eng)
        long = eng.submit(small_spec(steps=100, resolution="320x192", frames=17))
        rec.wait(lambda: len(rec.of(JobStep, long.id)) >= 2, timeout=240)
        eng.cancel(long.id)
        seen = len(rec.of(JobStep, long.id))
        final = wait_job(eng, long.id, JobState.cancelled, timeout=60)
        assert len(rec.of(JobStep, long.id)) <= seen + 1
        assert final.output is None and final.failure is None
        assert final.stage == "cancelled"
        assert [m.model_id for m in eng.loaded_models()] == ["t2v-A14B@2.2.0"]
        after = run_job(eng)
        assert after.state is JobState.completed
        assert sidecar(after)["timings_s"]["warm"] is True
        rec.wait_state(after.id, JobState.completed)
        assert len(rec.of(ModelLoaded)) == 1
    finally:
        eng.shutdown()


def test_a_missing_model_is_prepared_first_and_an_idle_one_unloads(tmp_path: Path) -> None:
    eng = real_engine(tmp_path / "empty-models", tmp_path, idle_unload_s=1.0)
    try:
        rec = Recorder(eng)
        job = run_job(eng, model="TI2V-5B")
        assert job.state is JobState.completed, job.failure
        rec.wait_state(job.id, JobState.completed)
        stages = [e.stage for e in rec.of(JobStage, job.id)]
        assert stages[:3] == ["initializing", "downloading_model", "loading_model"]
        progress = [e.progress for e in rec.of(ModelDownload, job.id)]
        assert progress and progress[-1].phase == "complete"
        rec.wait(lambda: bool(rec.of(ModelUnloaded)), timeout=60)
        assert rec.of(ModelUnloaded)[-1].reason == "idle" and eng.loaded_models() == []
    finally:
        eng.shutdown()


def test_models_stay_warm_and_make_room_for_another(engine: Engine) -> None:
    rec = Recorder(engine)
    warm = run_job(engine, model="T2V-A14B")
    rec.wait_state(warm.id, JobState.completed)  # events arrive in order: ModelLoaded is in
    loaded = rec.of(ModelLoaded)
    first = run_job(engine, model="T2V-A14B", seed=1, prompt="a heron in the reeds")
    assert sidecar(first)["timings_s"]["load"] == 0.0 and rec.of(ModelLoaded) == loaded
    assert sidecar(first)["generation"]["prompt_embeddings"] == "encoded"
    same = run_job(engine, model="T2V-A14B", seed=1, prompt="a heron in the reeds")
    assert sidecar(same)["generation"]["prompt_embeddings"] == "cached"
    assert np.array_equal(decoded(same), decoded(first))
    other = run_job(engine, model="TI2V-5B")
    assert other.state is JobState.completed
    rec.wait(lambda: bool(rec.of(ModelUnloaded)))
    assert rec.of(ModelUnloaded)[-1].reason == "another model needs the room"
    assert [m.model_id for m in engine.loaded_models()] == ["ti2v-5B@2.2.0"]
    assert engine.loaded_models()[0].strategy == "cpu"


@pytest.mark.parametrize("error", ["cuda", "ram"])
def test_out_of_memory_retries_once_with_a_cheaper_strategy(engine: Engine, error: str) -> None:
    raised: list[str] = []

    def once(module: Any, args: Any) -> None:
        if not raised:
            raised.append(error)
            if error == "cuda":
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
            raise MemoryError("cannot allocate 20 GiB")

    rec = Recorder(engine)
    assert run_job(engine, model="T2V-A14B").state is JobState.completed
    old = weakref.ref(engine.pipeline(JobKind.wan).diffusers_pipeline())  # type: ignore[attr-defined]
    with forward_hook(once):
        job = run_job(engine, model="T2V-A14B")
    gc.collect()
    assert old() is None, "the pipeline that ran out of memory must be freed"
    assert raised == [error]
    assert job.state is JobState.completed, job.failure
    assert job.memory_plan["strategy"] == "cpu_fp8"
    assert sidecar(job)["memory"]["strategy"] == "cpu_fp8"
    assert any("ran out of memory with cpu" in w for w in job.warnings)
    assert any(e.code == "out_of_memory_retry" for e in rec.of(JobWarning, job.id))
    assert decoded(job).shape == (9, 64, 96, 3)


def test_out_of_memory_twice_fails_with_suggestions_and_frees_the_model(engine: Engine) -> None:
    def always(module: Any, args: Any) -> None:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    with forward_hook(always):
        job = run_job(engine, model="T2V-A14B", resolution="1280x720")
    assert job.state is JobState.failed
    f = job.failure
    assert f is not None and f.category is FailureCategory.out_of_memory
    assert "also with the cpu_fp8 strategy" in f.message
    assert any("lower the resolution" in s for s in f.suggestions)
    assert engine.loaded_models() == []
    assert run_job(engine).state is JobState.completed  # and the engine goes on


def test_bad_inputs_are_named_and_dev_mode_sizes_are_small(engine: Engine, tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError) as err:
        engine.submit(small_spec(model="I2V-A14B", guidance_scale_2=2.0, frames=12))
    assert set(err.value.errors) == {"image", "frames"}
    with pytest.raises(InvalidInputError) as err:
        engine.submit(small_spec(model="TI2V-5B", guidance_scale_2=2.0))
    assert "one transformer" in err.value.errors["guidance_scale_2"]
    # What the app and the API send by default becomes a small job on the tiny variant.
    job = engine.submit(small_spec(resolution="1280x720", steps=None, frames=None))
    p = job.params
    assert (p["width"], p["height"], p["frames"], p["steps"]) == (320, 176, 17, 8)
    assert p["requested_resolution"] == "1280x720" and p["flow_shift"] == 12.0
    pipeline = engine.pipeline(JobKind.wan)
    assert pipeline.validate(job.params) == dict(job.params)  # a retry validates the same
    assert job.estimate["strategy"] == "cpu" and job.estimate["minutes"] > 0
    assert job.estimate["facts"] == "files"  # the tiny model's own sizes, from its files
    engine.cancel(job.id)

    bad = tmp_path / "not-an-image.png"
    bad.write_bytes(b"nope")
    failed = run_job(engine, model="I2V-A14B", image=str(bad))
    assert failed.state is JobState.failed and failed.failure is not None
    assert failed.failure.category is FailureCategory.invalid_input
    assert "could not be read" in failed.failure.message


def test_kill_9_during_a_real_generation_then_restart(
    tiny_models_root: Path, tmp_path: Path
) -> None:
    code = "import tests.wan_helpers as h; h.child_main()"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(tiny_models_root), str(tmp_path)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        deadline = time.monotonic() + 240
        while not (tmp_path / "running").exists():
            assert proc.poll() is None, "the child died"
            assert time.monotonic() < deadline, "the child never started the long job"
            time.sleep(0.1)
        ids = json.loads((tmp_path / "ids.json").read_text())
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    eng = real_engine(tiny_models_root, tmp_path, start=False)
    try:
        first = eng.get(ids["first"])
        assert first.state is JobState.completed and first.output is not None
        frames = read_mp4(Path(first.output.video))
        assert frames.shape == (9, 64, 96, 3)
        assert json.loads(Path(first.output.sidecar or "").read_text())["seed"] == 5
        running, *queued = ids["queued"]
        interrupted = eng.get(running)
        assert interrupted.state is JobState.interrupted
        assert interrupted.step is not None and interrupted.step >= 1
        assert [j.id for j in eng.queue()] == queued
        assert not list((tmp_path / "data" / "outputs").glob(f"{running}*"))
    finally:
        eng.shutdown()


def test_a_loaded_model_is_in_use_for_the_orchestrator_until_unloaded(
    tiny_models_root: Path, tmp_path: Path
) -> None:
    from wan_desktop.models import disk

    root = tmp_path / "models"
    shutil.copytree(tiny_models_root, root, symlinks=True)
    eng = real_engine(root, tmp_path / "data")
    try:
        assert run_job(eng, model="T2V-A14B").state is JobState.completed
        store = eng.models
        name = store.dir_name(*store.resolve("t2v-A14B@2.2.0"))
        # The job's own lease is gone; the warm model keeps one.
        assert len(disk.live_leases(store.paths, name)) == 1
        report = store.gc(max_size=0)  # collect everything that may go
        kept = {d.dir_name: d.reason for d in report.kept}
        assert "in use" in kept[name]
        assert store.status("t2v-A14B@2.2.0").complete
        eng.unload()
        # The lease goes last, after the weights are freed (a mapped file cannot be deleted
        # on Windows).
        deadline = time.monotonic() + 30
        while eng.loaded_models() or disk.live_leases(store.paths, name):
            assert time.monotonic() < deadline, "the model was not unloaded"
            time.sleep(0.05)
        assert name in {d.dir_name for d in store.gc(max_size=0).removed}
    finally:
        eng.shutdown()
