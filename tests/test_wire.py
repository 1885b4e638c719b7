"""The engine's types survive the wire codec unchanged, through real JSON."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from wan_desktop.engine import events as ev
from wan_desktop.engine.hardware import HardwareProfile
from wan_desktop.engine.jobs import (
    FailureCategory,
    Job,
    JobFailure,
    JobKind,
    JobOutput,
    JobSpec,
    JobState,
    Priority,
)
from wan_desktop.engine.pipelines.base import LoadedModel
from wan_desktop.engine.wire import (
    EVENT_TYPES,
    WIRE_VERSION,
    event_from_wire,
    event_to_wire,
    from_wire,
    to_wire,
)
from wan_desktop.models.types import DownloadProgress, Phase


def _through_json(data: Any) -> Any:
    return json.loads(json.dumps(data, allow_nan=False))


def _job() -> Job:
    return Job(
        id="j1",
        kind=JobKind.wan,
        state=JobState.failed,
        params={"prompt": "a fox", "steps": 8, "size": [320, 192], "lora": None},
        created_at=1700000000.25,
        priority=Priority.high,
        position=2.5,
        model_id="T2V-A14B",
        variant="tiny",
        development=True,
        label="development variant: random weights, output is noise",
        started_at=1700000001.0,
        finished_at=1700000009.5,
        step=3,
        total_steps=8,
        eta_s=None,
        estimate={"vram_gb": 1.5, "strategy": "full"},
        warnings=("image ignored",),
        failure=JobFailure(
            category=FailureCategory.out_of_memory,
            message="out of GPU memory",
            suggestions=("lower the resolution", "close other apps"),
            code="OOM",
            stage="running",
            detail="Traceback ...",
        ),
        output=JobOutput(
            video="/data/outputs/j1.mp4",
            thumbnail="/data/outputs/j1.jpg",
            duration_s=1.0625,
            width=320,
            height=192,
            frames=17,
            fps=16.0,
            size_bytes=12345,
            urls={"s3": "s3://bucket/j1.mp4"},
        ),
        stages_completed=("download", "load"),
        retry_of="j0",
        client="gui",
    )


def _progress() -> DownloadProgress:
    return DownloadProgress(
        model_id="T2V-A14B",
        variant="fp16",
        phase=Phase.downloading,
        bytes_done=1024,
        bytes_total=4096,
        speed_bps=512.5,
        eta_s=6.0,
        files_done=1,
        files_total=3,
        file="transformer/model.safetensors",
        file_bytes_done=10,
        file_bytes_total=None,
        source="hf",
        bytes_transferred=512,
        file_eta_s=None,
    )


def _events() -> list[ev.Event]:
    job = _job()
    return [
        ev.JobStateChanged(job=job, previous=JobState.running, at=1.5),
        ev.JobStateChanged(job=dataclasses.replace(job, failure=None), previous=None),
        ev.JobStage(job_id="j1", stage="load", progress=0.1, message="loading"),
        ev.JobStep(
            job_id="j1",
            step=2,
            total_steps=8,
            progress=0.4,
            eta_s=3.5,
            step_time_s=0.25,
            expert="high_noise",
        ),
        ev.JobPreview(job_id="j1", step=2, width=4, height=2, jpeg=b"\xff\xd8\x00\x01\xff\xd9"),
        ev.JobWarning(job_id=None, message="slow disk", code="SLOW", suggestions=("move it",)),
        ev.JobLog(job_id="j1", level="INFO", message="hello"),
        ev.QueueChanged(reason="reordered", job_ids=("a", "b"), paused=True),
        ev.ModelDownload(progress=_progress(), job_id="j1"),
        ev.ModelDownloadFinished(
            model_id="T2V-A14B", variant="tiny", ok=False, error="no space", code="NO_SPACE"
        ),
        ev.ModelLoaded(model_id="T2V-A14B", variant="tiny", strategy="full", seconds=1.25),
        ev.ModelUnloaded(model_id="T2V-A14B", variant="tiny", reason="idle"),
        ev.MemorySample(
            device_name="cpu",
            has_gpu=False,
            vram_allocated_mb=0.0,
            vram_reserved_mb=0.0,
            vram_free_mb=0.0,
            vram_total_mb=0.0,
            gpu_percent=None,
            ram_used_mb=1000.5,
            ram_total_mb=8000.0,
            cpu_percent=12.0,
        ),
        ev.Alert(kind="vram", severity="warning", message="91 %", suggestions=("unload",)),
    ]


def test_every_event_class_is_known_and_round_trips() -> None:
    events = _events()
    assert {type(e).__name__ for e in events} == set(EVENT_TYPES), "a new Event needs a case here"
    for event in events:
        wire = _through_json(event_to_wire(event))
        assert wire["type"] == type(event).__name__
        back = event_from_wire(wire)
        assert back == event
        assert type(back) is type(event)


def test_job_spec_progress_and_hardware_round_trip() -> None:
    spec = JobSpec(
        kind=JobKind.explainer,
        params={"topic": "entropy", "scenes": 3, "nested": {"a": [1, 2.5, None, True]}},
        priority=Priority.urgent,
        client="remote-app",
        warnings=("x",),
    )
    hw = HardwareProfile(
        device="cuda:0",
        gpu_name="H100",
        vram_total_mb=81559.0,
        ram_total_mb=131072.0,
        cpu_count=16,
        compute_capability=(9, 0),
        cuda_version="12.4",
    )
    loaded = LoadedModel(
        model_id="T2V-A14B", variant="tiny", strategy="full", loaded_at=1.0, last_used=2.0
    )
    for tp, value in (
        (Job, _job()),
        (JobSpec, spec),
        (DownloadProgress, _progress()),
        (HardwareProfile, hw),
        (LoadedModel, loaded),
        (list[Job], [_job(), dataclasses.replace(_job(), id="j2", output=None)]),
    ):
        back = from_wire(tp, _through_json(to_wire(value)))
        assert back == value
    back_hw = from_wire(HardwareProfile, _through_json(to_wire(hw)))
    assert back_hw.compute_capability == (9, 0) and isinstance(back_hw.compute_capability, tuple)
    assert from_wire(Job, _through_json(to_wire(_job()))).priority is Priority.high


def test_ints_in_float_fields_come_back_as_floats() -> None:
    back = from_wire(ev.JobStage, {"job_id": "j", "stage": "s", "progress": 1, "at": 5})
    assert back.progress == 1.0 and isinstance(back.progress, float)
    assert isinstance(back.at, float)


def test_unknown_event_type_is_a_clear_value_error() -> None:
    with pytest.raises(ValueError, match="unknown engine event type 'JobTeleported'"):
        event_from_wire({"type": "JobTeleported", "data": {}})


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"job_id": "j", "stage": "s"}, "'progress' is missing"),
        ({"job_id": "j", "stage": "s", "progress": "half"}, "JobStage.progress"),
        ({"job_id": 3, "stage": "s", "progress": 0.5}, "JobStage.job_id"),
    ],
)
def test_bad_data_names_the_field(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        from_wire(ev.JobStage, data)


def test_fields_a_newer_peer_adds_are_ignored_and_version_is_one() -> None:
    wire = to_wire(ev.JobLog(job_id="j", level="INFO", message="m", at=3.0))
    wire["colour"] = "blue"
    assert from_wire(ev.JobLog, wire) == ev.JobLog(job_id="j", level="INFO", message="m", at=3.0)
    assert WIRE_VERSION == 1


def test_bad_enum_value_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="is not a JobState"):
        from_wire(JobState, "flying")
