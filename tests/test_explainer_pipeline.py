"""Explainer jobs through the real engine: real Manim renders at the lowest quality."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.engine_helpers import Recorder, mock_engine, wait_job
from tests.fake_chat import (
    FakeChat,
    Reply,
    code_for_request,
    outline_reply,
    scenario_reply,
    scene_code,
)
from tests.test_explainer_units import CONTEXT
from wan_desktop.engine import (
    Engine,
    FailureCategory,
    JobKind,
    JobSpec,
    JobStage,
    JobState,
    JobStateChanged,
    JobStep,
)
from wan_desktop.explainer import ExplainerPipeline
from wan_desktop.explainer.offline import OfflineWriter
from wan_desktop.explainer.params import ExplainerParams
from wan_desktop.explainer.pipeline import OFFLINE_LABEL
from wan_desktop.explainer.settings import ExplainerSettings, LlmSettings

pytestmark = pytest.mark.slow

STAGES = [
    ("initializing", 0.05),
    ("planning", 0.15),
    ("scenario_creation", 0.30),
    ("code_generation", 0.50),
    ("rendering", 0.80),
    ("combining", 0.90),
    ("storage", 0.95),
    ("completed", 1.0),
]
PHOTOSYNTHESIS = (
    "Photosynthesis turns light into chemical energy. Plants take in carbon dioxide and water. "
    "The key relation is 6CO2 + 6H2O = C6H12O6 + 6O2."
)


def explainer_engine(root: Path, **overrides: Any) -> Engine:
    settings = ExplainerSettings.from_env(
        {}, **{"max_concurrent_renders": 2, "retry_base_s": 0.05, **overrides}
    )
    return mock_engine(root, pipelines=[ExplainerPipeline(settings=settings)])


def explainer(**params: Any) -> JobSpec:
    return JobSpec(kind=JobKind.explainer, params={"quality": "low", **params})


def decode(path: Path) -> tuple[int, float, int, int]:
    """(frames, fps, width, height), counted by decoding every frame."""
    import av

    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        frames = sum(1 for _ in c.decode(stream))
        return frames, float(stream.average_rate), stream.width, stream.height


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    eng = explainer_engine(tmp_path)
    yield eng
    eng.shutdown()


def test_offline_planner_renders_a_three_scene_video(engine: Engine, tmp_path: Path) -> None:
    rec = Recorder(engine)
    params = {"topic": "Photosynthesis", "context": PHOTOSYNTHESIS, "scene_count": 3}
    job = engine.submit(explainer(**params))
    assert job.label == OFFLINE_LABEL and job.estimate["minutes"] > 0
    done = wait_job(engine, job.id, JobState.completed, JobState.failed, timeout=300)
    assert done.state is JobState.completed, done.failure
    rec.wait(lambda: JobState.completed in rec.states(job.id))

    # Stages in order, each announced once at its figure; progress never goes back.
    assert [(s.stage, s.progress) for s in rec.of(JobStage, job.id)] == STAGES
    assert list(done.stages_completed) == [name for name, _ in STAGES[:-1]]
    assert rec.states(job.id) == [
        JobState.queued,
        JobState.preparing,
        JobState.running,
        JobState.encoding,
        JobState.completed,
    ]
    # What an API status answer reads mid-run: stage, finished stages, time left.
    encoding = next(e.job for e in rec.of(JobStateChanged, job.id) if e.job.state == "encoding")
    assert encoding.stage == "rendering" and encoding.progress == 0.90
    assert list(encoding.stages_completed) == [name for name, _ in STAGES[:4]]
    assert encoding.eta_s is not None and 0 < encoding.eta_s < 60
    progress = [e.progress for e in rec.events if isinstance(e, JobStage | JobStep)]
    assert progress == sorted(progress)
    renders = [s for s in rec.of(JobStep, job.id) if s.expert == "rendering"]
    assert [s.step for s in renders] == [1, 2, 3] and renders[-1].progress == 0.90

    # The video: three scenes joined, as long as the plan says, at the low preset.
    out = done.output
    assert out is not None and out.urls == {}
    p = ExplainerParams(topic="Photosynthesis", context=PHOTOSYNTHESIS, scene_count=3)
    writer = OfflineWriter()
    outline = writer.outline(p)
    planned = sum(writer.scene_plan(p, outline, s.index).duration_s for s in outline.scenes)
    frames, fps, width, height = decode(Path(out.video))
    assert (width, height, fps) == (854, 480, 15.0)
    assert frames / fps == pytest.approx(planned, abs=3 / fps)
    assert out.frames == frames and out.duration_s == pytest.approx(frames / fps)

    srt = Path(out.subtitles or "").read_text("utf-8")
    stamps = re.findall(r"(\d\d):(\d\d):(\d\d),(\d\d\d) --> (\d\d):(\d\d):(\d\d),(\d\d\d)", srt)
    assert len(stamps) >= 3 and srt.startswith("1\n00:00:00,000 --> ")
    h, m, s, ms = (int(v) for v in stamps[-1][4:])
    assert h * 3600 + m * 60 + s + ms / 1000 == pytest.approx(frames / fps, abs=0.1)
    assert "6CO2 + 6H2O" in srt

    from PIL import Image

    with Image.open(out.thumbnail or "") as thumb:
        assert thumb.format == "JPEG" and thumb.width == 320

    sidecar = json.loads(Path(out.sidecar or "").read_text("utf-8"))
    assert [s["kind"] for s in sidecar["scenes"]] == ["title", "equation", "bullets"]
    assert all(s["tries"] == 1 and s["author"] == "template" for s in sidecar["scenes"])
    assert [s["stage"] for s in sidecar["stages"]] == [n for n, _ in STAGES[:-1]]
    assert sidecar["writer"]["offline"] and sidecar["sandbox"] in ("bwrap", "unshare", "process")
    assert not (engine.settings.data_dir / "explainer" / "work" / job.id).exists(), "cleaned"
    assert any("stage rendering" in line["message"] for line in engine.logs(job.id))


def test_every_template_renders_and_subtitles_can_be_burned_in(tmp_path: Path) -> None:
    engine = explainer_engine(tmp_path, use_gpu_acceleration=True)
    try:
        job = engine.submit(
            explainer(topic="Many things", context=CONTEXT, scene_count=6, burn_subtitles=True)
        )
        done = wait_job(engine, job.id, JobState.completed, JobState.failed, timeout=480)
    finally:
        engine.shutdown()
    assert done.state is JobState.completed, done.failure
    assert done.output is not None
    sidecar = json.loads(Path(done.output.sidecar or "").read_text("utf-8"))
    kinds = [s["kind"] for s in sidecar["scenes"]]
    assert kinds == ["title", "graph", "equation", "code", "bullets", "shapes"]
    assert sidecar["video"]["subtitles_burned_in"]
    # GPU encoding was asked for: NVENC where it works, else the CPU encoder and a warning.
    encoder = sidecar["video"]["encoder"]
    assert encoder == "h264_nvenc" or (
        encoder == "libx264" and any("NVENC is not usable" in w for w in done.warnings)
    )

    import av

    with av.open(done.output.video) as c:
        frame = next(f for i, f in enumerate(c.decode(video=0)) if i == 20)
        picture = frame.to_ndarray(format="rgb24")
    # The title scene leaves the bottom of the picture empty: text there is the subtitle.
    bottom = picture[-picture.shape[0] // 8 :]
    assert (bottom > 200).any()


def llm_engine(root: Path, chat: FakeChat, **overrides: Any) -> Engine:
    llm = LlmSettings(base_url=chat.base_url, planner_model="planner", scene_model="coder")
    return explainer_engine(root, llm=llm, **overrides)


def test_a_broken_scene_is_fixed_by_the_model_and_the_job_completes_on_try_2(
    tmp_path: Path,
) -> None:
    def code(body: dict[str, Any]) -> str:
        text = " ".join(m["content"] for m in body["messages"])
        name = re.search(r"class (Scene\d+)\(Scene\)", text)
        cls = name.group(1) if name else "Scene01"
        return scene_code(cls, "word", 0.6, broken=cls == "Scene01")

    script: dict[str, list[Reply]] = {
        "outline": [outline_reply(["Start", "Middle", "End"], "Three words")],
        "scenario": [scenario_reply("A word appears.", 3)],
        "code": [code],
        "fix": [code_for_request("fixed", 0.6)],
        "search_terms": ['["Create", "FadeIn"]'],
    }
    with FakeChat(script).running() as chat:
        engine = llm_engine(tmp_path, chat)
        try:
            job = engine.submit(
                explainer(topic="Words", context="Three words appear.", use_rag=True)
            )
            assert job.label is None and job.estimate["writer"] == "coder"
            assert "scenes" not in job.estimate, "the model decides how many while planning"
            done = wait_job(engine, job.id, JobState.completed, JobState.failed, timeout=300)
            logs = [line["message"] for line in engine.logs(job.id)]
        finally:
            engine.shutdown()
    assert done.state is JobState.completed, done.failure
    fixes = chat.of("fix")
    assert len(fixes) == 1, "only the broken scene went back to the model"
    assert "ShowCreation" in fixes[0].user and "NameError" in fixes[0].user
    assert "Common errors and their fixes" in fixes[0].user, "retrieval notes in the fix prompt"
    assert all("Notes on the Manim API" in r.user for r in chat.of("code"))
    assert done.output is not None
    sidecar = json.loads(Path(done.output.sidecar or "").read_text("utf-8"))
    assert [s["tries"] for s in sidecar["scenes"]] == [2, 1, 1]
    assert done.estimate["scenes"] == 3, "the job's count is the outline's"
    assert sidecar["scenes"][0]["history"][0]["result"] == "exception"
    assert sidecar["writer"]["models"]["planner"] == "planner"
    assert any("scene 1 try 1/4 failed (exception): NameError" in m for m in logs)
    assert any("scene 1: rendered on try 2" in m for m in logs)


def test_code_that_stays_forbidden_fails_the_job_with_the_stage_code_and_logs(
    tmp_path: Path,
) -> None:
    evil = "```python\nimport os\nfrom manim import *\nclass Scene01(Scene):\n    pass\n```"
    script = {
        "outline": [outline_reply(["A", "B", "C"])],
        "scenario": [scenario_reply("Words.")],
        "code": [evil],
        "fix": [evil],
    }
    with FakeChat(script).running() as chat:
        engine = llm_engine(tmp_path, chat, max_fix_attempts=2)
        try:
            job = engine.submit(explainer(topic="T", context="C"))
            done = wait_job(engine, job.id, JobState.failed, JobState.completed, timeout=120)
            logs = "\n".join(line["message"] for line in engine.logs(job.id))
        finally:
            engine.shutdown()
    f = done.failure
    assert done.state is JobState.failed and f is not None
    assert f.category is FailureCategory.render_failed and f.code == "RENDER_FAILED"
    assert f.stage == "rendering" and "failed 2 tries" in f.message
    assert "import of 'os' is not allowed" in (f.detail or "")
    assert "use model 'template' for the offline planner" in f.suggestions
    assert "try 1/2 failed (rejected)" in logs and f.message in logs
    assert not psutil.Process().children(recursive=True), "nothing was started"


def test_an_unreachable_language_model_fails_at_planning_with_advice(tmp_path: Path) -> None:
    with FakeChat({}, api_key="expected").running() as chat:
        engine = llm_engine(tmp_path, chat)
        try:
            job = engine.submit(explainer(topic="T", context="C"))
            done = wait_job(engine, job.id, JobState.failed, timeout=60)
        finally:
            engine.shutdown()
    f = done.failure
    assert f is not None and f.category is FailureCategory.model_unavailable
    assert f.code == "LLM_UNAVAILABLE" and f.stage == "planning"
    assert "LLM_API_KEY" in f.message and len(chat.requests) == 1


def test_cancelling_during_rendering_stops_the_render_processes(tmp_path: Path) -> None:
    engine = explainer_engine(tmp_path, max_concurrent_renders=1)
    rec = Recorder(engine)
    try:
        job = engine.submit(explainer(topic="T", context="One. Two. Three.", scene_count=3))
        rec.wait(lambda: any(s.stage == "rendering" for s in rec.of(JobStage, job.id)), 60)
        deadline = time.monotonic() + 30
        while not psutil.Process().children(recursive=True) and time.monotonic() < deadline:
            time.sleep(0.05)
        engine.cancel(job.id)
        done = wait_job(engine, job.id, JobState.cancelled, timeout=30)
    finally:
        engine.shutdown()
    assert done.stage == "cancelled" and done.output is None
    assert not psutil.Process().children(recursive=True)
