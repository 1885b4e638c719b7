"""The program-facing engine surface of a real ``wan --dev serve`` (docs/remote-wire.md): jobs
and their numbered events over the stream, replay after a reconnect, a restart's gap, resumed
downloads through a link that drops, the token, and content-addressed uploads."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api_helpers import WanServe, image_bytes
from tests.netproxy import CutProxy
from wan_desktop.engine import Job, JobState, JobStateChanged, JobStep
from wan_desktop.engine.events import Event
from wan_desktop.engine.jobs import JobKind, JobSpec
from wan_desktop.engine.wire import event_from_wire, from_wire, to_wire
from wan_desktop.models.types import ModelState, ModelStatus, VerifyReport

TOKEN = "remote-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ENGINE = "/api/v1/engine"
TIMEOUT = 60.0  # generous: two cores shared with other test runs


def serve(root: Path, *, mock: bool = True) -> WanServe:
    env = {"WAN_API_TOKEN": TOKEN, "WAN_DEV_MODE": "1"}
    return WanServe(root, "--log-level", "warning", env=env, mock=mock)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WanServe]:
    with serve(tmp_path_factory.mktemp("remote")) as s:
        yield s
        s.stop()
    # Whatever the tests sent (cut-off uploads, bad bodies, wrong tokens): no traceback.
    assert "Traceback" not in s.stderr, s.stderr


def client(server: WanServe) -> httpx.Client:
    return httpx.Client(base_url=server.url + ENGINE, headers=AUTH, timeout=TIMEOUT)


class Stream:
    """A program's connection to the event stream, reading typed messages."""

    def __init__(self, url: str, query: str = "", token: str = TOKEN) -> None:
        from websockets.sync.client import connect

        ws_url = url.replace("http://", "ws://") + f"{ENGINE}/events{query}"
        self._connection = connect(ws_url, additional_headers={"Authorization": f"Bearer {token}"})
        self.ws = self._connection.__enter__()
        self.hello = self.recv()
        assert self.hello["type"] == "hello", self.hello

    def recv(self) -> dict[str, Any]:
        message: dict[str, Any] = json.loads(self.ws.recv(timeout=TIMEOUT))
        return message

    def events_until(self, done: Any) -> list[tuple[int, Event]]:
        """(seq, event) until ``done(event)`` is true; pings skipped."""
        out: list[tuple[int, Event]] = []
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            m = self.recv()
            if m["type"] != "event":
                assert m["type"] == "ping", m
                continue
            event = event_from_wire(m["event"])
            out.append((m["seq"], event))
            if done(event):
                return out
        raise AssertionError(f"no end event within {TIMEOUT} s; got {out[-5:]}")

    def close(self) -> None:
        self._connection.__exit__(None, None, None)


def finished(job_id: str) -> Any:
    return lambda e: isinstance(e, JobStateChanged) and e.job.id == job_id and e.job.finished


def spec(**params: Any) -> dict[str, Any]:
    base = {"prompt": "a fox in the snow", "model": "T2V-A14B", "resolution": "320x192"}
    return to_wire(JobSpec(kind=JobKind.wan, params={**base, "steps": 4, "frames": 9, **params}))


def test_a_job_over_the_engine_routes_streams_its_events_in_order_and_replays_them(
    server: WanServe,
) -> None:
    with client(server) as c:
        hello = c.get("/hello").json()
        assert (hello["server"], hello["wire"], hello["dev_mode"]) == ("wan-desktop", 1, True)
        stream = Stream(server.url)
        assert stream.hello["replay"] == "fresh"
        r = c.post("/jobs", json=spec())
        assert r.status_code == 201, r.text
        job = from_wire(Job, r.json())
        assert job.state is JobState.queued and job.mock  # wan --dev serve --mock
        try:
            seen = stream.events_until(finished(job.id))
        finally:
            stream.close()
        seqs = [s for s, _ in seen]
        # A client that keeps up gets every event, numbered one after another.
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), seqs
        assert seqs[0] > stream.hello["seq"]
        mine = [e for _, e in seen if getattr(e, "job_id", None) == job.id]
        steps = [e.step for e in mine if isinstance(e, JobStep)]
        assert steps == [1, 2, 3, 4]
        states = [e.job.state for _, e in seen if isinstance(e, JobStateChanged)]
        assert states[-1] is JobState.completed and JobState.running in states
        # The job as the API has it now equals the one the last event carried.
        final = from_wire(Job, c.get(f"/jobs/{job.id}").json())
        assert final == seen[-1][1].job  # type: ignore[attr-defined]

        # Reconnect after the first step: exactly what came after it, once, in order.
        first_step = next(s for s, e in seen if isinstance(e, JobStep))
        again = Stream(server.url, f"?after={first_step}&epoch={stream.hello['epoch']}")
        try:
            assert again.hello["replay"] == "ok"
            assert again.hello["epoch"] == stream.hello["epoch"]
            replayed = again.events_until(finished(job.id))
        finally:
            again.close()
        kept = [(s, e) for s, e in seen if s > first_step and type(e).__name__ != "MemorySample"]
        assert [(s, e) for s, e in replayed if type(e).__name__ != "MemorySample"] == kept
        assert len({s for s, _ in replayed}) == len(replayed)  # no duplicates


def test_a_result_download_resumes_after_the_link_drops_and_is_identical(
    server: WanServe,
) -> None:
    with client(server) as c:
        job = from_wire(Job, c.post("/jobs", json=spec(resolution="480x272", frames=33)).json())
        deadline = time.monotonic() + TIMEOUT
        while not job.finished and time.monotonic() < deadline:
            time.sleep(0.2)
            job = from_wire(Job, c.get(f"/jobs/{job.id}").json())
        assert job.state is JobState.completed and job.output is not None
        original = Path(job.output.video).read_bytes()  # the server's file (same machine)
    assert len(original) > 20_000
    port = int(server.url.rsplit(":", 1)[1])
    cut_after = len(original) // 3
    with CutProxy(port, cut_after=cut_after) as relay:
        url = f"{relay.endpoint}{ENGINE}/jobs/{job.id}/files/video"
        got = bytearray()
        etag = ""
        with pytest.raises(httpx.HTTPError), httpx.stream("GET", url, headers=AUTH) as r:
            assert r.status_code == 200
            etag = r.headers["etag"]
            assert not etag.startswith("W/")  # strong: usable with If-Range
            for chunk in r.iter_bytes():
                got += chunk
        assert relay.cut == 1 and 0 < len(got) < len(original)
        resume = {**AUTH, "Range": f"bytes={len(got)}-", "If-Range": etag}
        r2 = httpx.get(url, headers=resume)
        assert r2.status_code == 206, r2.text
        assert (
            r2.headers["content-range"] == f"bytes {len(got)}-{len(original) - 1}/{len(original)}"
        )
        got += r2.content
        assert bytes(got) == original
        # A file that changed since (another ETag) comes whole, not as a wrong tail.
        stale = {**AUTH, "Range": "bytes=10-", "If-Range": '"not-this-file"'}
        r3 = httpx.get(url, headers=stale)
        assert r3.status_code == 200 and r3.content == original


def test_a_wrong_token_is_401_on_http_and_on_the_event_stream(server: WanServe) -> None:
    from websockets.exceptions import InvalidStatus

    wrong = {"Authorization": "Bearer wrong-token-0123456789abcdef"}
    r = httpx.get(f"{server.url}{ENGINE}/jobs", headers=wrong, timeout=TIMEOUT)
    assert r.status_code == 401 and "token" in r.json()["detail"]
    assert httpx.get(f"{server.url}{ENGINE}/hello", timeout=TIMEOUT).status_code == 401
    with pytest.raises(InvalidStatus) as refused:
        Stream(server.url, token="wrong-token-0123456789abcdef")
    assert refused.value.response.status_code == 401
    assert b"token" in refused.value.response.body


def test_uploads_are_stored_once_by_their_hash_and_jobs_use_them(server: WanServe) -> None:
    image = image_bytes(size=(320, 192))
    digest = hashlib.sha256(image).hexdigest()
    with client(server) as c:
        assert c.head(f"/blobs/{digest}").status_code == 404
        first = c.put(f"/blobs/{digest}", content=image)
        assert first.status_code == 200, first.text
        assert first.json() == {"ref": f"blob:sha256:{digest}", "stored": True}
        assert c.head(f"/blobs/{digest}").status_code == 200
        second = c.put(f"/blobs/{digest}", content=image)
        assert second.json() == {"ref": f"blob:sha256:{digest}", "stored": False}
        wrong = c.put(f"/blobs/{'0' * 64}", content=image)
        assert wrong.status_code == 422 and wrong.json()["code"] == "hash_mismatch"
        assert c.head(f"/blobs/{'0' * 64}").status_code == 404  # nothing kept of it
        bad_name = c.put("/blobs/not-a-hash", content=image)
        assert bad_name.status_code == 422 and bad_name.json()["code"] == "bad_hash"

        # A job refers to the upload; the server resolves it to the stored file.
        ref = first.json()["ref"]
        r = c.post("/jobs", json=spec(model="I2V-A14B", image=ref))
        assert r.status_code == 201, r.text
        job = from_wire(Job, r.json())
        stored = Path(job.params["image"])
        assert stored.name == digest and stored.read_bytes() == image
        blobs = stored.parent
        assert sorted(p.name for p in blobs.iterdir() if not p.name.startswith(".")) == [digest]
        # An unknown reference is a 422 on its field, with the other bad fields.
        missing = f"blob:sha256:{'1' * 64}"
        v = c.post("/validate", json={"kind": "wan", "params": {"image": missing, "prompt": ""}})
        assert v.status_code == 422
        assert set(v.json()["errors"]) >= {"image", "prompt"}
        assert "upload the file again" in v.json()["errors"]["image"]
        cancel = c.post(f"/jobs/{job.id}/cancel")
        assert cancel.status_code in (200, 409)


def test_an_upload_cut_off_midway_leaves_nothing_behind(server: WanServe) -> None:
    import socket

    data = os.urandom(200_000)
    digest = hashlib.sha256(data).hexdigest()
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=TIMEOUT) as s:
        s.sendall(
            f"PUT {ENGINE}/blobs/{digest} HTTP/1.1\r\nHost: {host}\r\n"
            f"Authorization: Bearer {TOKEN}\r\nContent-Length: {len(data)}\r\n\r\n".encode()
            + data[:50_000]
        )
        time.sleep(0.5)  # part of the body on its way, then the link is gone
    with client(server) as c:
        blobs = Path(c.get("/hello").json()["settings"]["data_dir"]) / "blobs"
        deadline = time.monotonic() + TIMEOUT
        while any(blobs.glob(".wan-tmp-*")) and time.monotonic() < deadline:
            time.sleep(0.1)  # the server notices the disconnect and removes its temporary file
        assert not any(blobs.glob(".wan-tmp-*"))
        assert c.head(f"/blobs/{digest}").status_code == 404
        whole = c.put(f"/blobs/{digest}", content=data)  # sent again, whole
        assert whole.json()["stored"] is True
        assert (blobs / digest).read_bytes() == data


def test_engine_errors_carry_a_code_the_client_can_rebuild(server: WanServe) -> None:
    with client(server) as c:
        r = c.get("/jobs/no-such-job")
        assert r.status_code == 404
        assert r.json() == {
            "detail": "no job with id 'no-such-job'",
            "code": "job_not_found",
            "job_id": "no-such-job",
        }
        r = c.post("/jobs", json=spec(steps=0, prompt=""))
        assert r.status_code == 422 and r.json()["code"] == "invalid_input"
        assert {"steps", "prompt"} <= set(r.json()["errors"])
        r = c.post("/jobs", json={"kind": "wan"})
        assert r.status_code == 422 and "params" in r.json()["errors"]["body"]
        r = c.post("/jobs", json={"kind": "teleport", "params": {}})
        assert r.status_code == 422 and "JobSpec.kind" in r.json()["detail"]
        r = c.post("/models/no-such-model/ensure", json={})
        assert r.status_code == 404 and r.json()["model_code"] == "MODEL_NOT_FOUND"
        r = c.get("/jobs", params={"state": "flying"})
        assert r.status_code == 422 and r.json()["code"] == "invalid_input"


def test_after_a_kill_and_restart_the_stream_says_gap_and_the_job_is_interrupted(
    tmp_path: Path,
) -> None:
    with serve(tmp_path) as first:
        stream = Stream(first.url)
        with client(first) as c:
            job = from_wire(Job, c.post("/jobs", json=spec(steps=100)).json())
        try:
            seen = stream.events_until(lambda e: isinstance(e, JobStep) and e.job_id == job.id)
        finally:
            stream.close()
        last = seen[-1][0]
        epoch = stream.hello["epoch"]
        os.kill(first.proc.pid, signal.SIGKILL)
        first.proc.wait(TIMEOUT)
    with serve(tmp_path) as second:
        again = Stream(second.url, f"?after={last}&epoch={epoch}")
        try:
            assert again.hello["replay"] == "gap"
            assert again.hello["epoch"] != epoch
        finally:
            again.close()
        with client(second) as c:
            refetched = from_wire(Job, c.get(f"/jobs/{job.id}").json())
            assert refetched.state is JobState.interrupted
            assert job.id in c.get("/state").json()["recovered"]
            jobs = [
                from_wire(Job, j) for j in c.get("/jobs", params={"state": "interrupted"}).json()
            ]
            assert [j.id for j in jobs] == [job.id]
        second.stop()


def test_a_real_tiny_model_job_streams_its_steps_and_its_video_comes_back_whole(
    tmp_path: Path,
) -> None:
    """``wan --dev serve`` without --mock: the real pipeline on the tiny T2V-A14B (built by the
    server on first use), every event it publishes through the codec, the video downloaded."""
    with serve(tmp_path, mock=False) as server:
        stream = Stream(server.url)
        with client(server) as c:
            r = c.post("/jobs", json=spec(steps=2, frames=5, resolution="160x96", seed=7))
            assert r.status_code == 201, r.text
            job = from_wire(Job, r.json())
            assert job.development and not job.mock
            try:
                seen = stream.events_until(finished(job.id))
            finally:
                stream.close()
            final = seen[-1][1].job  # type: ignore[attr-defined]
            assert final.state is JobState.completed, final.failure
            steps = [e for _, e in seen if isinstance(e, JobStep)]
            assert [e.step for e in steps] == [1, 2]
            assert {e.expert for e in steps} <= {"high_noise", "low_noise"}  # two experts
            assert "ModelLoaded" in {type(e).__name__ for _, e in seen}
            video = c.get(f"/jobs/{job.id}/files/video")
            assert video.status_code == 200
            assert final.output is not None
            assert video.content == Path(final.output.video).read_bytes()
            sidecar = c.get(f"/jobs/{job.id}/files/sidecar").json()
            assert sidecar["seed"] == 7 and "random weights" in sidecar["model"]["label"]

            # The server's model store through the same surface: state, pin, verify, delete.
            t2v = next(m for m in c.get("/models").json() if m["spec"]["id"] == "t2v-A14B@2.2.0")
            assert t2v["variant"] == "tiny"
            status = from_wire(ModelStatus, t2v["variants"]["tiny"]["status"])
            assert status.state is ModelState.complete and t2v["variants"]["tiny"]["loaded"]
            model = "/models/t2v-A14B@2.2.0"
            assert c.post(f"{model}/pin", json={"pinned": True}).json() == {"pinned": True}
            report = from_wire(VerifyReport, c.post(f"{model}/verify", json={}).json())
            assert report.ok and report.checked
            assert c.post("/unload").status_code == 204
            deadline = time.monotonic() + TIMEOUT
            while c.get("/state").json()["loaded"] and time.monotonic() < deadline:
                time.sleep(0.1)
            freed = c.delete(model, params={"variant": "tiny"})
            assert freed.status_code == 200 and freed.json()["freed"] > 0, freed.text
            gone = next(m for m in c.get("/models").json() if m["spec"]["id"] == t2v["spec"]["id"])
            assert gone["variants"]["tiny"]["status"]["state"] == "NOT_PRESENT"
        server.stop()
