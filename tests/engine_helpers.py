"""Helpers for engine tests: engines on temporary folders, event recorders, waiting."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from tests.helpers import REAL_MANIFEST
from wan_desktop.engine import (
    Engine,
    EngineSettings,
    Event,
    Job,
    JobKind,
    JobSpec,
    JobState,
    JobStateChanged,
    Priority,
    simulated_profile,
)
from wan_desktop.engine.context import JobContext
from wan_desktop.engine.jobs import JobOutput
from wan_desktop.engine.pipelines.base import JobDescription, LoadedModel, Pipeline
from wan_desktop.engine.pipelines.mock import MockPipeline
from wan_desktop.models import load_manifest
from wan_desktop.models.config import OrchestratorConfig


def engine_settings(root: Path, **overrides: Any) -> EngineSettings:
    models = OrchestratorConfig.from_env(
        {}, models_root=root / "models", manifest_path=REAL_MANIFEST
    )
    base = {"mock": True, "memory_sample_s": 3600.0, "idle_unload_s": 0.0}
    return EngineSettings.from_env(
        {},
        **{
            "data_dir": root / "data",
            "outputs_dir": root / "data" / "outputs",
            "models": models,
            **base,
            **overrides,
        },
    )


def mock_engine(
    root: Path,
    *,
    step_s: float = 0.01,
    pipelines: list[Pipeline] | None = None,
    start: bool = True,
    **overrides: Any,
) -> Engine:
    manifest = load_manifest(REAL_MANIFEST)
    return Engine(
        engine_settings(root, **overrides),
        pipelines=[MockPipeline(manifest, step_s=step_s), *(pipelines or [])],
        hardware=simulated_profile(0),
        start=start,
    )


def wan_spec(**params: Any) -> JobSpec:
    p: dict[str, Any] = {
        "model": "T2V-A14B",
        "prompt": "a red fox running through snow",
        "steps": 5,
        "frames": 9,
        "resolution": "854x480",
    }
    p.update(params)
    priority = Priority.parse(p.pop("priority", None))
    return JobSpec(kind=JobKind.wan, params=p, priority=priority)


class Recorder:
    """Collects every event; waits for conditions on them."""

    def __init__(self, engine: Engine) -> None:
        self.events: list[Event] = []
        self._cond = threading.Condition()
        self.sub = engine.subscribe(self._on, name="test-recorder")

    def _on(self, event: Event) -> None:
        with self._cond:
            self.events.append(event)
            self._cond.notify_all()

    def of(self, kind: type[Any], job_id: str | None = None) -> list[Any]:
        with self._cond:
            return [
                e
                for e in self.events
                if isinstance(e, kind)
                and (
                    job_id is None
                    or getattr(e, "job_id", None) == job_id
                    or getattr(getattr(e, "job", None), "id", None) == job_id
                )
            ]

    def states(self, job_id: str) -> list[JobState]:
        return [e.job.state for e in self.of(JobStateChanged, job_id)]

    def wait(self, pred: Callable[[], bool], timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not pred():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(
                        "condition not met; events: "
                        + ", ".join(type(e).__name__ for e in self.events[-20:])
                    )
                self._cond.wait(left)

    def wait_state(self, job_id: str, *states: JobState, timeout: float = 30.0) -> None:
        self.wait(lambda: any(s in states for s in self.states(job_id)), timeout)


def wait_job(engine: Engine, job_id: str, *states: JobState, timeout: float = 30.0) -> Job:
    deadline = time.monotonic() + timeout
    while True:
        job = engine.get(job_id)
        if job.state in states:
            return job
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id} is {job.state}, not {states}")
        time.sleep(0.01)


class ScriptedPipeline(Pipeline):
    """A pipeline whose run() is a test's function: to drive the engine through odd paths."""

    kind = JobKind.wan
    mock = False

    def __init__(
        self, run: Callable[[JobContext], JobOutput], *, model: LoadedModel | None = None
    ) -> None:
        self._run = run
        self.model = model
        self.unloads: list[str] = []

    def validate(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        return dict(raw)

    def describe(self, params: Mapping[str, Any]) -> JobDescription:
        return JobDescription(model_id="t2v-A14B@2.2.0", variant="bf16")

    def run(self, ctx: JobContext) -> JobOutput:
        return self._run(ctx)

    def loaded(self) -> LoadedModel | None:
        return self.model

    def unload(self, reason: str = "requested") -> None:
        self.unloads.append(reason)
        self.model = None


def engine_child_main() -> None:
    """A process that runs an engine: ``python -c ... root n_jobs step_s`` (killed by the test)."""
    root = Path(sys.argv[1])
    n_jobs, step_s = int(sys.argv[2]), float(sys.argv[3])
    engine = mock_engine(root, step_s=step_s)
    first = engine.submit(wan_spec(steps=2))
    wait_job(engine, first.id, JobState.completed)
    ids = [engine.submit(wan_spec(prompt=f"job {i}", steps=100)).id for i in range(n_jobs)]
    (root / "ids.json").write_text(json.dumps({"first": first.id, "queued": ids}))
    time.sleep(3600)


def cancel_while_loading_child_main() -> None:
    """``python -c ... root``: a job whose model load never checks for cancel; the user cancels it
    during the load, then the test kills this process."""
    root = Path(sys.argv[1])

    def slow_load(ctx: JobContext) -> JobOutput:
        ctx.set_state(JobState.loading)
        ctx.stage("loading_model", 0.05, "a model that takes its time")
        time.sleep(3600)  # e.g. a 60 GB checkpoint being read
        raise AssertionError("killed before")

    engine = mock_engine(root, pipelines=[ScriptedPipeline(slow_load)], mock=False)
    job = engine.submit(JobSpec(kind=JobKind.wan, params={}))
    wait_job(engine, job.id, JobState.loading)
    engine.cancel(job.id)
    (root / "cancelled.json").write_text(json.dumps({"job": job.id}))
    time.sleep(3600)
