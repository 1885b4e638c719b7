"""RemoteEngine against a real ``wan serve --mock`` subprocess on 127.0.0.1: jobs, events,
uploads, result downloads (with a cut link), reconnects after a kill -9, and clear errors."""

from __future__ import annotations

import logging
import signal
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api_helpers import image_bytes, lora_bytes
from tests.engine_helpers import wan_spec
from tests.netproxy import CutProxy
from tests.remote_helpers import (
    TOKEN,
    free_port,
    not_wan_server,
    remote_engine,
    serve,
    wait_for,
)
from wan_desktop.engine import Event, InvalidInputError, JobState, JobStateChanged, JobStep
from wan_desktop.engine.face import EngineFace, LinkChanged
from wan_desktop.engine.jobs import JobKind, JobSpec
from wan_desktop.models.config import default_manifest_path
from wan_desktop.models.manifest_load import load_manifest
from wan_desktop.remote import (
    NotWanServeError,
    RemoteEngine,
    ServerUnreachableError,
    WrongTokenError,
)
from wan_desktop.remote.errors import RemoteCommandError


def server_job(url: str, job_id: str) -> dict[str, Any]:
    """The job as the server's own API tells it."""
    r = httpx.get(
        f"{url}/api/v1/engine/jobs/{job_id}", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    r.raise_for_status()
    body: dict[str, Any] = r.json()
    return body


def test_remote_engine_runs_cancels_and_downloads_jobs_like_the_local_one(tmp_path: Path) -> None:
    with serve(tmp_path / "server") as server, remote_engine(server, tmp_path / "app") as engine:
        face: EngineFace = engine  # mypy: the remote engine implements the app's interface
        events: list[Event] = []
        sub = face.subscribe(events.append)
        assert face.info.location == server.url and face.info.mock
        assert [s.model_type for s in face.models_view.manifest] == [
            "T2V-A14B",
            "I2V-A14B",
            "TI2V-5B",
        ]

        job = face.submit(JobSpec(kind=JobKind.wan, params=wan_spec(steps=4).params))
        wait_for(lambda: face.get(job.id).state is JobState.completed, 60, "the job")
        wait_for(
            lambda: any(
                isinstance(e, JobStateChanged)
                and e.job.id == job.id
                and e.job.state is JobState.completed
                for e in events
            ),
            30,
            "the completed event",
        )
        steps = [e.step for e in events if isinstance(e, JobStep) and e.job_id == job.id]
        assert steps == [1, 2, 3, 4], "every step arrives, in order"
        done = next(
            e.job
            for e in events
            if isinstance(e, JobStateChanged) and e.job.state is JobState.completed
        )
        assert done.output is not None
        local = Path(done.output.video)
        assert local.is_relative_to(tmp_path / "app"), "the app plays its cached copy"
        remote = server_job(server.url, job.id)["output"]["video"]
        assert local.read_bytes() == Path(remote).read_bytes()
        assert Path(face.get(job.id).output.video) == local  # type: ignore[union-attr]

        # An image picked on this computer goes up once, whatever the number of jobs using it.
        picture = tmp_path / "start.png"
        picture.write_bytes(image_bytes())
        for seed in (1, 2):
            spec = wan_spec(model="I2V-A14B", image=str(picture), steps=2, seed=seed)
            i2v = face.submit(JobSpec(kind=JobKind.wan, params=spec.params))
            assert str(i2v.params["image"]) != str(picture), "the server's copy is used"
        assert engine.uploads.sent == 1

        long = face.submit(JobSpec(kind=JobKind.wan, params=wan_spec(steps=100).params))
        wait_for(lambda: face.running_job_id == long.id, 60, "the long job to run")
        face.cancel(long.id)
        wait_for(lambda: face.get(long.id).state is JobState.cancelled, 60, "the cancel")
        assert server_job(server.url, long.id)["state"] == "cancelled"
        sub.close()


def test_a_cut_download_resumes_and_the_file_is_identical(tmp_path: Path) -> None:
    with serve(tmp_path / "server") as server:
        port = int(server.url.rsplit(":", 1)[1])
        with (
            CutProxy(port, cut_after=2500, marker=b"/files/video") as relay,
            remote_engine(server, tmp_path / "app", url=relay.endpoint) as engine,
        ):
            job = engine.submit(JobSpec(kind=JobKind.wan, params=wan_spec(steps=2).params))
            wait_for(lambda: server_job(server.url, job.id)["state"] == "completed", 60)
            remote = Path(server_job(server.url, job.id)["output"]["video"])
            wait_for(lambda: engine.cache.has(job.id, "video", str(remote)), 60, "download")
            cached = engine.cache.path(job.id, "video", str(remote))
            assert relay.cut == 1 and engine.cache.resumed >= 1
            assert cached.read_bytes() == remote.read_bytes()


def test_after_a_kill_9_and_restart_the_link_comes_back_and_states_match(
    tmp_path: Path,
) -> None:
    port = free_port()
    links: list[str] = []
    server = serve(tmp_path / "server", port=port)
    try:
        with remote_engine(server, tmp_path / "app") as engine:
            engine.subscribe(
                lambda e: links.extend([e.state] if isinstance(e, LinkChanged) else [])
            )
            done = engine.submit(JobSpec(kind=JobKind.wan, params=wan_spec(steps=2).params))
            wait_for(lambda: engine.get(done.id).state is JobState.completed, 60)
            running = engine.submit(JobSpec(kind=JobKind.wan, params=wan_spec(steps=100).params))
            wait_for(lambda: engine.running_job_id == running.id, 60)
            server.stop(sig=signal.SIGKILL)
            wait_for(lambda: engine.link != "up", 30, "the link to go down")
            server = serve(tmp_path / "server", port=port)
            wait_for(lambda: engine.link == "up", 60, "the reconnect")
            wait_for(lambda: links[-1:] == ["up"], 30, "the app to be told")
            assert links[0] == "reconnecting", "the app is told the link dropped"
            for job_id in (done.id, running.id):
                assert str(engine.get(job_id).state) == server_job(server.url, job_id)["state"]
            assert engine.get(running.id).state is JobState.interrupted
            assert engine.running_job_id is None
    finally:
        server.stop()


def test_wrong_token_unreachable_and_not_a_wan_server_are_clear_errors(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    with serve(tmp_path / "server") as server, pytest.raises(WrongTokenError, match="Engine"):
        RemoteEngine(server.url, "not-the-token-at-all", data_dir=tmp_path / "app")
    with pytest.raises(ServerUnreachableError, match="`wan serve` runs there"):
        RemoteEngine(f"127.0.0.1:{free_port()}", TOKEN, data_dir=tmp_path / "app")
    with not_wan_server() as url, pytest.raises(NotWanServeError, match="address and port"):
        RemoteEngine(url, TOKEN, data_dir=tmp_path / "app")
    assert "Traceback" not in caplog.text
    assert TOKEN not in caplog.text, "the token never appears in logs"


def test_the_servers_models_loras_and_fit_through_the_interface(tmp_path: Path) -> None:
    with serve(tmp_path / "server") as server, remote_engine(server, tmp_path / "app") as engine:
        face: EngineFace = engine
        view = face.models_view
        rows = view.catalog().rows
        assert len(rows) == 9 and all(not r.status.complete for r in rows), "the server's folder"
        assert view.pin("t2v-A14B@2.2.0", "tiny", pinned=True)
        assert [r.pinned for r in view.catalog().rows if r.key == ("t2v-A14B@2.2.0", "tiny")] == [
            True
        ]
        with pytest.raises(RemoteCommandError, match="wan models ensure"):
            view.verify("t2v-A14B@2.2.0", "tiny")
        report = view.gc(dry_run=True)  # the server's clean-up: nothing there to remove
        assert report.dry_run and report.removed == () and report.total_before == 0
        # The presets the server's LoRA packs make, as the local manifest has them.
        local = load_manifest(default_manifest_path())
        assert view.manifest.loras == local.loras and local.loras
        assert view.manifest.lora_pack("t2v-A14B@2.2.0", "fast") is not None
        face.set_dev_mode(True)
        assert [r.variant.name for r in view.catalog().rows] == ["tiny"] * 3
        assert view.resolve("T2V-A14B")[1].name == "tiny"
        face.set_dev_mode(False)

        lora = tmp_path / "style.safetensors"
        lora.write_bytes(lora_bytes())
        params = {**wan_spec(steps=2).params, "loras": [{"path": str(lora), "strength": 0.8}]}
        job = face.submit(JobSpec(kind=JobKind.wan, params=params))
        sent = Path(job.params["loras"][0]["path"])
        assert sent != lora and sent.read_bytes() == lora.read_bytes(), "uploaded, kept there"
        verdict = face.fit("T2V-A14B", {"resolution": "320x192", "frames": 5, "steps": 3})
        assert verdict.model_id == "t2v-A14B@2.2.0" and not verdict.development


def test_a_silent_link_is_found_dead_by_the_missed_pings_and_comes_back(tmp_path: Path) -> None:
    with serve(tmp_path / "server") as server:
        port = int(server.url.rsplit(":", 1)[1])
        with (
            CutProxy(port, cut_after=0, cuts=0) as relay,
            remote_engine(server, tmp_path / "app", url=relay.endpoint) as engine,
        ):
            relay.frozen = True  # nothing closes: only the server's pings going missing tell
            wait_for(lambda: engine.link != "up", 30, "the dead link to be noticed")
            relay.frozen = False
            wait_for(lambda: engine.link == "up", 60, "the reconnect")
            job = engine.submit(JobSpec(kind=JobKind.wan, params=wan_spec(steps=2).params))
            wait_for(lambda: engine.get(job.id).state is JobState.completed, 60)


def test_the_form_is_checked_without_a_round_trip_by_the_servers_rules(tmp_path: Path) -> None:
    with serve(tmp_path / "server") as server, remote_engine(server, tmp_path / "app") as engine:
        picture = tmp_path / "start.png"
        picture.write_bytes(image_bytes())
        good = wan_spec(model="I2V-A14B", image=str(picture)).params
        engine.validate(JobKind.wan, good)
        engine.validate(JobKind.wan, {**good, "steps": 3})  # the form changed: the same image
        # The image goes up in the background while the user edits, once; submitting finds it.
        wait_for(lambda: engine.uploads.sent == 1, 30, "the image sent ahead")
        with pytest.raises(InvalidInputError) as bad:
            engine.validate(JobKind.wan, {**good, "steps": 500, "image": str(tmp_path / "no.png")})
        assert set(bad.value.errors) == {"steps", "image"}
        with pytest.raises(InvalidInputError) as refused:  # the server says the same
            engine.submit(JobSpec(kind=JobKind.wan, params={**good, "steps": 500}))
        assert set(refused.value.errors) == {"steps"}
        engine.submit(JobSpec(kind=JobKind.wan, params=good))
        assert engine.uploads.sent == 1, "not sent again"
