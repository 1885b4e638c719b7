"""The event log behind /api/v1/engine/events and the blob store behind /engine/blobs, in
process: backlog bounds and what they mean for a reconnecting client, pings, bad requests,
and a blob folder that stays bounded without losing a queued job's input."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from tests.api_helpers import TOKEN, api_client, image_bytes
from wan_desktop.api.blobs import BlobError, BlobStore
from wan_desktop.api.event_log import EventLog
from wan_desktop.api.settings import ApiSettings
from wan_desktop.engine import JobLog, JobPreview, JobState, JobStateChanged
from wan_desktop.engine.events import MemorySample
from wan_desktop.engine.jobs import Job, JobKind


def _job(state: JobState = JobState.queued) -> Job:
    return Job(id="j", kind=JobKind.wan, state=state, params={}, created_at=1.0)


def _log(i: int) -> JobLog:
    return JobLog(job_id="j", level="INFO", message=f"line {i}")


def _sample() -> MemorySample:
    return MemorySample(
        device_name="cpu",
        has_gpu=False,
        vram_allocated_mb=0,
        vram_reserved_mb=0,
        vram_free_mb=0,
        vram_total_mb=0,
        gpu_percent=None,
        ram_used_mb=1,
        ram_total_mb=2,
    )


@pytest.fixture
def log_of(tmp_path: Path) -> Iterator[Callable[..., EventLog]]:
    """EventLogs over an engine that is never started (only the numbering is exercised)."""
    from tests.engine_helpers import mock_engine

    engine = mock_engine(tmp_path, start=False)
    try:
        yield lambda **kw: EventLog(engine, ApiSettings(), **kw)
    finally:
        engine.shutdown()


def test_replay_is_ok_while_the_backlog_reaches_back_and_gap_after(
    log_of: Callable[..., EventLog],
) -> None:
    log = log_of(max_events=5)
    for i in range(1, 9):
        assert log.record(_log(i)).seq == i
    assert (log.latest, log.oldest) == (8, 4)  # the last 5 kept
    mode, items, hello, latest = log.replay(3, log.epoch)
    assert mode == "ok" and [i.seq for i in items] == [4, 5, 6, 7, 8] and latest == 8
    assert json.loads(hello) == {
        "type": "hello",
        "wire": 1,
        "epoch": log.epoch,
        "seq": 8,
        "oldest": 4,
        "replay": "ok",
    }
    assert log.replay(2, log.epoch)[0] == "gap"  # event 3 is gone
    assert log.replay(8, log.epoch)[:2] == ("ok", [])  # up to date
    assert log.replay(5, "another-server")[0] == "gap"  # a restarted server
    assert log.replay(9, log.epoch)[0] == "gap"  # from a future it never had
    assert log.replay(None, None)[:2] == ("fresh", [])
    first = json.loads(log.replay(7, log.epoch)[1][0].text)
    assert first["seq"] == 8 and first["event"]["type"] == "JobLog"


def test_previews_and_samples_are_numbered_but_not_kept_state_changes_are(
    log_of: Callable[..., EventLog],
) -> None:
    log = log_of(max_events=100)
    log.record(JobStateChanged(job=_job(), previous=None))
    log.record(JobPreview(job_id="j", step=1, width=2, height=2, jpeg=b"\xff" * 1000))
    log.record(_sample())
    log.record(JobStateChanged(job=_job(JobState.running), previous=JobState.queued))
    _, items, _, latest = log.replay(0, log.epoch)
    assert latest == 4 and [i.seq for i in items] == [1, 4]


def test_a_non_finite_figure_does_not_lose_the_event(log_of: Callable[..., EventLog]) -> None:
    from wan_desktop.engine import JobStep
    from wan_desktop.engine.wire import event_from_wire

    log = log_of()
    step = JobStep(
        job_id="j", step=1, total_steps=2, progress=0.5, eta_s=float("inf"), step_time_s=1
    )
    item = log.record(step)
    assert item.seq == 1 and log.latest == 1
    back = event_from_wire(json.loads(item.text)["event"])
    assert back == step


def test_the_backlog_is_bounded_by_bytes_too(log_of: Callable[..., EventLog]) -> None:
    log = log_of(max_events=10_000, max_bytes=2_000)
    for i in range(100):
        log.record(_log(i))
    _, items, _, _ = log.replay(log.oldest - 1, log.epoch)
    assert sum(len(i.text) for i in items) <= 2_000
    assert items[-1].seq == 100 and 5 < len(items) < 100


def test_the_stream_pings_and_refuses_a_bad_after(tmp_path: Path) -> None:
    from starlette.websockets import WebSocketDisconnect

    with api_client(tmp_path) as (c, _):
        with c.websocket_connect("/api/v1/engine/events") as ws:
            hello = ws.receive_json()
            assert hello["replay"] == "fresh"
            started = time.monotonic()
            while True:  # memory samples may come first; a ping within a few seconds
                m = ws.receive_json()
                if m["type"] == "ping":
                    break
                assert time.monotonic() - started < 30
            assert m["seq"] >= hello["seq"] and m["t"] > 0
        with (
            pytest.raises(WebSocketDisconnect) as closed,
            c.websocket_connect("/api/v1/engine/events?after=-3") as ws,
        ):
            ws.receive_json()
        assert closed.value.code == 1008


def test_the_stream_needs_the_token(tmp_path: Path) -> None:
    from starlette.testclient import WebSocketDenialResponse

    settings = ApiSettings(token=TOKEN)
    with api_client(tmp_path, settings=settings) as (c, _):
        with pytest.raises(WebSocketDenialResponse) as denied:
            c.websocket_connect("/api/v1/engine/events").__enter__()
        assert denied.value.status_code == 401
        with c.websocket_connect(
            "/api/v1/engine/events", headers={"Authorization": f"Bearer {TOKEN}"}
        ) as ws:
            assert ws.receive_json()["type"] == "hello"


async def _body(data: bytes, chunk: int = 1000) -> AsyncIterator[bytes]:
    for i in range(0, len(data), chunk):
        yield data[i : i + chunk]


def test_blobs_are_bounded_and_never_lose_a_queued_jobs_input(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs", max_blob=10_000, max_total=25_000)
    digests = []
    for i in range(4):
        data = bytes([i]) * 9_000
        d = hashlib.sha256(data).hexdigest()
        path, new = asyncio.run(store.put(d, _body(data)))
        assert new and path.read_bytes() == data
        os.utime(path, (1000 + i, 1000 + i))  # oldest first
        digests.append(d)
    queued = store.path(digests[0])  # the oldest, but a queued job uses it
    removed = store.evict(keep=[str(queued)])
    assert removed == [digests[1], digests[2]]
    assert sorted(p.name for p in store.folder.iterdir()) == sorted([digests[0], digests[3]])
    # too large, and a body that is not its name: nothing is left behind
    with pytest.raises(BlobError) as big:
        asyncio.run(store.put("a" * 64, _body(b"x" * 10_001)))
    assert big.value.status == 413
    with pytest.raises(BlobError) as wrong:
        asyncio.run(store.put("b" * 64, _body(image_bytes())))
    assert wrong.value.status == 422
    assert sorted(p.name for p in store.folder.iterdir()) == sorted([digests[0], digests[3]])
