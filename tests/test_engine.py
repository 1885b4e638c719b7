"""The engine: persistent queue, commands from any thread, typed events, failures with advice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.engine_helpers import (
    Recorder,
    ScriptedPipeline,
    mock_engine,
    wait_job,
    wan_spec,
)
from tests.helpers import ROOT
from wan_desktop.engine import (
    EngineError,
    FailureCategory,
    InvalidInputError,
    JobFailedError,
    JobNotFoundError,
    JobStage,
    JobState,
    JobStateError,
    JobStep,
    ModelDownload,
    ModelDownloadFinished,
    ModelUnloaded,
    Priority,
    QueueChanged,
)
from wan_desktop.engine.context import JobContext
from wan_desktop.engine.jobs import JobKind, JobOutput, JobSpec
from wan_desktop.engine.outputs import read_mp4
from wan_desktop.engine.pipelines.base import LoadedModel
from wan_desktop.engine.pipelines.mock import MOCK_LABEL


@pytest.fixture
def engine(tmp_path: Path) -> Any:
    eng = mock_engine(tmp_path)
    yield eng
    eng.shutdown()


def test_a_job_runs_through_every_state_with_steps_and_outputs(engine: Any) -> None:
    rec = Recorder(engine)
    job = engine.submit(wan_spec(steps=6, frames=9, seed=7))
    assert engine.store.get(job.id) is not None, "written before it is queued"
    assert job.state is JobState.queued and job.mock and job.label == MOCK_LABEL
    done = wait_job(engine, job.id, JobState.completed)
    rec.wait(lambda: JobState.completed in rec.states(job.id))
    assert rec.states(job.id) == [
        JobState.queued,
        JobState.preparing,
        JobState.loading,
        JobState.running,
        JobState.encoding,
        JobState.completed,
    ]
    steps = rec.of(JobStep, job.id)
    assert [s.step for s in steps] == [1, 2, 3, 4, 5, 6]
    assert steps[0].eta_s is None and all(s.eta_s is not None for s in steps[2:])
    assert [s.progress for s in steps] == sorted(s.progress for s in steps)
    stages = [s.stage for s in rec.of(JobStage, job.id)]
    assert stages[0] == "initializing" and stages[-1] == "completed"
    assert "generating" in stages and "saving" in stages
    assert done.progress == 1.0 and done.output is not None and done.finished_at is not None
    assert "generating" in done.stages_completed
    frames = read_mp4(Path(done.output.video))
    assert frames.shape[0] == 9
    assert Path(done.output.thumbnail or "").is_file()
    sidecar = json.loads(Path(done.output.sidecar or "").read_text())
    assert sidecar["mock"] is True and sidecar["params"]["seed"] == 7
    assert sidecar["label"] == MOCK_LABEL
    assert any(isinstance(e, QueueChanged) and e.reason == "submitted" for e in rec.events)


def test_invalid_requests_name_every_bad_field_and_store_nothing(engine: Any) -> None:
    with pytest.raises(InvalidInputError) as err:
        engine.submit(wan_spec(prompt="  ", steps=0, frames=10, resolution="big"))
    assert set(err.value.errors) == {"prompt", "steps", "frames", "resolution"}
    assert "4k+1" in err.value.errors["frames"]
    with pytest.raises(InvalidInputError) as err:
        engine.submit(wan_spec(model="I2V-A14B"))
    assert "add an image" in err.value.errors["image"]
    with pytest.raises(InvalidInputError) as err:
        engine.submit(wan_spec(model="T2V-A99B"))
    assert "unknown model" in err.value.errors["model"]
    assert engine.jobs() == []


def test_params_are_normalised_and_the_seed_recorded(engine: Any) -> None:
    job = engine.submit(wan_spec(resolution="1920x1080", steps=None, frames=None))
    p = job.params
    assert (p["width"], p["height"]) == (1280, 720)  # capped to the model's 720p, 16-aligned
    assert p["steps"] == 40 and p["frames"] == 81  # the model's defaults
    assert isinstance(p["seed"], int) and p["model"] == "t2v-A14B@2.2.0"
    ti2v = engine.submit(wan_spec(model="TI2V-5B", resolution="854x480"))
    assert (ti2v.params["width"], ti2v.params["height"]) == (832, 480)  # 32-aligned
    engine.cancel(job.id)
    engine.cancel(ti2v.id)


def test_cancel_a_queued_job_at_once_and_a_running_one_within_a_step(tmp_path: Path) -> None:
    engine = mock_engine(tmp_path, step_s=0.05)
    try:
        rec = Recorder(engine)
        running = engine.submit(wan_spec(steps=100))
        queued = engine.submit(wan_spec(steps=5))
        rec.wait(lambda: len(rec.of(JobStep, running.id)) >= 3)
        assert engine.cancel(queued.id).state is JobState.cancelled
        engine.cancel(running.id)
        steps_at_cancel = len(rec.of(JobStep, running.id))
        final = wait_job(engine, running.id, JobState.cancelled, timeout=5)
        assert len(rec.of(JobStep, running.id)) <= steps_at_cancel + 1
        assert final.output is None and final.failure is None
        with pytest.raises(JobStateError, match="already finished"):
            engine.cancel(running.id)
        with pytest.raises(JobNotFoundError):
            engine.cancel("0" * 32)
    finally:
        engine.shutdown()


def test_pause_lets_the_running_job_finish_and_holds_the_rest(tmp_path: Path) -> None:
    engine = mock_engine(tmp_path, step_s=0.02)
    try:
        rec = Recorder(engine)
        first = engine.submit(wan_spec(steps=20))
        second = engine.submit(wan_spec(steps=2))
        rec.wait(lambda: len(rec.of(JobStep, first.id)) >= 1)
        engine.pause()
        wait_job(engine, first.id, JobState.completed)
        time.sleep(0.3)
        assert engine.get(second.id).state is JobState.queued
        engine.resume()
        wait_job(engine, second.id, JobState.completed)
        assert [e.reason for e in rec.of(QueueChanged) if e.reason in ("paused", "resumed")] == [
            "paused",
            "resumed",
        ]
    finally:
        engine.shutdown()


def test_reorder_and_priorities_decide_what_runs_next(engine: Any) -> None:
    engine.pause()
    a = engine.submit(wan_spec(prompt="a", steps=1))
    b = engine.submit(wan_spec(prompt="b", steps=1))
    c = engine.submit(wan_spec(prompt="c", steps=1))
    assert [j.id for j in engine.reorder([c.id, a.id])] == [c.id, b.id, a.id]
    low = engine.submit(wan_spec(prompt="low", steps=1, priority=Priority.low))
    high = engine.submit(wan_spec(prompt="high", steps=1, priority=Priority.high))
    urgent = engine.submit(wan_spec(prompt="urgent", steps=1, priority=Priority.urgent))
    order = [urgent.id, high.id, c.id, b.id, a.id, low.id]
    assert [j.id for j in engine.queue()] == order
    with pytest.raises(EngineError, match="twice"):
        engine.reorder([a.id, a.id])
    engine.resume()
    done = [wait_job(engine, j, JobState.completed) for j in order]
    assert [j.id for j in sorted(done, key=lambda j: j.started_at or 0.0)] == order
    with pytest.raises(JobStateError, match="only queued"):
        engine.reorder([a.id])


def test_delete_retry_and_clear(engine: Any) -> None:
    job = wait_job(engine, engine.submit(wan_spec(steps=2, seed=42)).id, JobState.completed)
    assert job.output is not None
    again = engine.retry(job.id)
    assert again.retry_of == job.id and again.params == job.params
    wait_job(engine, again.id, JobState.completed)
    video = Path(job.output.video)
    engine.delete(job.id, delete_outputs=True)
    assert not video.exists()
    with pytest.raises(JobNotFoundError):
        engine.get(job.id)
    engine.pause()
    waiting = engine.submit(wan_spec(steps=1))
    with pytest.raises(JobStateError, match="cancel it first"):
        engine.delete(waiting.id)
    assert engine.clear_finished() == 1  # the retried job; the queued one stays
    assert [j.id for j in engine.jobs()] == [waiting.id]


def _failing(exc: BaseException) -> ScriptedPipeline:
    def run(ctx: JobContext) -> JobOutput:
        ctx.stage("loading_model", 0.05)
        raise exc

    return ScriptedPipeline(run)


@pytest.mark.parametrize(
    ("exc", "category", "hint"),
    [
        (MemoryError(), FailureCategory.out_of_memory, "resolution"),
        (
            RuntimeError("CUDA error: device-side assert triggered"),
            FailureCategory.cuda_error,
            "driver",
        ),
        (
            JobFailedError(FailureCategory.model_unavailable, "no weights", ("download it",)),
            FailureCategory.model_unavailable,
            "download it",
        ),
        (ValueError("boom"), FailureCategory.internal, "retry"),
    ],
)
def test_failures_carry_category_message_and_suggestions(
    tmp_path: Path, exc: BaseException, category: FailureCategory, hint: str
) -> None:
    engine = mock_engine(tmp_path, pipelines=[_failing(exc)], mock=False)
    try:
        job = wait_job(engine, engine.submit(wan_spec()).id, JobState.failed)
        f = job.failure
        assert f is not None and f.category is category and f.stage == "loading_model"
        assert any(hint in s for s in f.suggestions)
        assert f.detail and type(exc).__name__ in f.detail
        assert any(line["level"] == "error" for line in engine.logs(job.id))
        # The engine goes on with the next job.
        assert wait_job(engine, engine.submit(wan_spec()).id, JobState.failed)
    finally:
        engine.shutdown()


def test_a_slow_listener_does_not_slow_generation(tmp_path: Path) -> None:
    engine = mock_engine(tmp_path, step_s=0.0)
    try:
        engine.subscribe(lambda e: time.sleep(0.2), name="slow")
        t0 = time.monotonic()
        wait_job(engine, engine.submit(wan_spec(steps=30)).id, JobState.completed)
        assert time.monotonic() - t0 < 5.0  # 30+ events × 0.2 s would be > 6 s if it blocked
    finally:
        engine.shutdown()


def test_shutdown_marks_the_running_job_interrupted(tmp_path: Path) -> None:
    engine = mock_engine(tmp_path, step_s=0.05)
    rec = Recorder(engine)
    job = engine.submit(wan_spec(steps=100))
    rec.wait(lambda: len(rec.of(JobStep, job.id)) >= 1)
    engine.shutdown()
    again = mock_engine(tmp_path)
    try:
        j = again.get(job.id)
        assert j.state is JobState.interrupted
        assert j.failure is not None and j.failure.category is FailureCategory.interrupted
    finally:
        again.shutdown()


def test_idle_models_are_unloaded(tmp_path: Path) -> None:
    model = LoadedModel("t2v-A14B@2.2.0", "bf16", "model_offload", time.time(), time.time())
    pipe = ScriptedPipeline(lambda ctx: (_ for _ in ()).throw(AssertionError), model=model)
    engine = mock_engine(tmp_path, pipelines=[pipe], idle_unload_s=0.5)
    try:
        rec = Recorder(engine)
        engine.pipeline(pipe.kind, mock=False)
        rec.wait(lambda: bool(rec.of(ModelUnloaded)), timeout=10)
        assert pipe.unloads == ["idle"] and engine.loaded_models() == []
    finally:
        engine.shutdown()


def test_unload_on_request(tmp_path: Path) -> None:
    model = LoadedModel("t2v-A14B@2.2.0", "bf16", "gpu", time.time(), time.time())
    pipe = ScriptedPipeline(lambda ctx: (_ for _ in ()).throw(AssertionError), model=model)
    engine = mock_engine(tmp_path, pipelines=[pipe])
    try:
        rec = Recorder(engine)
        assert [m.model_id for m in engine.loaded_models()] == ["t2v-A14B@2.2.0"]
        engine.unload()
        rec.wait(lambda: bool(rec.of(ModelUnloaded)))
        assert pipe.unloads == ["requested"]
    finally:
        engine.shutdown()


def test_models_download_beside_the_worker(tmp_path: Path) -> None:
    engine = mock_engine(tmp_path)
    try:
        rec = Recorder(engine)
        future = engine.ensure_model("TI2V-5B", "tiny")
        path = future.result(timeout=120)
        assert (path / "model_index.json").is_file()
        rec.wait(lambda: bool(rec.of(ModelDownloadFinished)))
        assert rec.of(ModelDownloadFinished)[0].ok
        progress = [e.progress for e in rec.of(ModelDownload)]
        assert progress and progress[-1].phase == "complete"
        assert engine.models.status("TI2V-5B", "tiny").complete
    finally:
        engine.shutdown()


def test_a_failed_model_download_fails_the_job_with_advice(tmp_path: Path) -> None:
    def run(ctx: JobContext) -> JobOutput:
        ctx.ensure_model("t2v-A14B@2.2.0", "bf16")  # sources: unset mirror, unset S3, the Hub
        raise AssertionError("unreachable")

    engine = mock_engine(tmp_path, pipelines=[ScriptedPipeline(run)], mock=False)
    try:
        job = wait_job(engine, engine.submit(wan_spec()).id, JobState.failed, timeout=60)
        assert job.failure is not None
        assert job.failure.category is FailureCategory.download_failed
        assert job.failure.code is not None and job.failure.suggestions
    finally:
        engine.shutdown()


def test_kill_9_then_restart_keeps_the_queue_and_the_outputs(tmp_path: Path) -> None:
    code = "import tests.engine_helpers as h; h.engine_child_main()"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path), "3", "0.05"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "ids.json").exists():
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        ids = json.loads((tmp_path / "ids.json").read_text())
        time.sleep(0.5)  # the first queued job is running now
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    engine = mock_engine(tmp_path, start=False)
    try:
        first = engine.get(ids["first"])
        assert first.state is JobState.completed and first.output is not None
        assert Path(first.output.video).is_file()
        assert read_mp4(Path(first.output.video)).shape[0] == 9
        running, *queued = ids["queued"]
        assert engine.get(running).state is JobState.interrupted
        assert [j.id for j in engine.queue()] == queued
        assert [j.id for j in engine.recovered] == [running]
    finally:
        engine.shutdown()


def test_retry_interrupted_setting_requeues_what_a_crash_left_running(tmp_path: Path) -> None:
    engine = mock_engine(tmp_path, start=False)
    engine.pause()
    job = engine.submit(wan_spec())
    engine.store.update(
        job.id, state=JobState.running, progress=0.4, step=3
    )  # as a crash leaves it
    engine.shutdown()
    again = mock_engine(tmp_path, start=False, retry_interrupted=True)
    try:
        back = again.get(job.id)
        assert back.state is JobState.queued and back.progress == 0.0 and back.step is None
        assert [j.id for j in again.queue()] == [job.id]
    finally:
        again.shutdown()


def test_mock_jobs_send_preview_frames_when_previews_are_on(tmp_path: Path) -> None:
    from wan_desktop.engine import JobPreview

    eng = mock_engine(tmp_path, preview_every=2)
    try:
        rec = Recorder(eng)
        job = eng.submit(wan_spec(steps=4, frames=5))
        wait_job(eng, job.id, JobState.completed)
        rec.wait(lambda: len(rec.of(JobPreview, job.id)) == 2)
        previews = rec.of(JobPreview, job.id)
        assert [p.step for p in previews] == [2, 4]
        assert all(p.jpeg[:2] == b"\xff\xd8" and p.width > 0 for p in previews)
    finally:
        eng.shutdown()


def test_development_mode_can_be_switched_for_later_jobs(engine: Any) -> None:
    assert not engine.settings.dev_mode
    engine.set_dev_mode(True)
    assert engine.settings.dev_mode and engine.models.config.dev_mode
    assert engine.models.resolve("T2V-A14B")[1].name == "tiny"
    engine.set_dev_mode(False)
    assert engine.models.resolve("T2V-A14B")[1].name == "bf16"


def test_a_job_kind_without_a_registered_pipeline_is_refused_with_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The engine knows pipelines only through the registry; the explainer registers itself."""
    from wan_desktop import explainer
    from wan_desktop.engine.pipelines import registry

    explainer.register()
    assert registry.registered(JobKind.explainer)
    monkeypatch.delitem(registry._factories, (JobKind.explainer, False))
    engine = mock_engine(tmp_path, start=False)
    try:
        with pytest.raises(EngineError, match=r"explainer jobs are not available.*explainer extra"):
            engine.submit(JobSpec(kind=JobKind.explainer, params={"topic": "x"}))
        assert engine.jobs() == []
    finally:
        engine.shutdown()


def test_a_job_cancelled_while_its_model_loads_comes_back_cancelled_after_kill_9(
    tmp_path: Path,
) -> None:
    code = "import tests.engine_helpers as h; h.cancel_while_loading_child_main()"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "cancelled.json").exists():
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        job_id = json.loads((tmp_path / "cancelled.json").read_text())["job"]
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    engine = mock_engine(tmp_path, start=False)
    try:
        job = engine.get(job_id)
        assert job.state is JobState.cancelled and job.failure is None, job
        assert job.finished_at is not None
        # Said once: a later start finds nothing left to recover.
        assert engine.store.get_meta(f"cancel_requested:{job_id}") is None
    finally:
        engine.shutdown()
