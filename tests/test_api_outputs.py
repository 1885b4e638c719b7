"""The /outputs routes: list, details, MP4 download with HTTP Range, thumbnail, delete."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.api_helpers import api_client
from tests.engine_helpers import wait_job
from wan_desktop.engine import JobState


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One app with two finished videos, shared by the read-only tests here."""
    root = tmp_path_factory.mktemp("outputs")
    with api_client(root) as (c, eng):
        ids = []
        for prompt in ("a red fox", "a blue whale"):
            r = c.post(
                "/api/v1/generation/submit",
                json={
                    "model_type": "T2V-A14B",
                    "prompt": prompt,
                    "steps": 2,
                    "num_frames": 9,
                    "resolution": "854x480",
                },
            )
            ids.append(r.json()["task_id"])
        for jid in ids:
            wait_job(eng, jid, JobState.completed)
        c.ids = ids  # type: ignore[attr-defined]
        c.engine = eng  # type: ignore[attr-defined]
        yield c


def test_list_shows_each_video_with_urls(finished: Any) -> None:
    body = finished.get("/api/v1/outputs").json()
    assert body["total_count"] == 2
    ids = finished.ids
    assert [v["id"] for v in body["videos"]] == ids[::-1]
    v = body["videos"][0]
    assert set(v) >= {
        "id",
        "filename",
        "prompt",
        "model_type",
        "resolution",
        "file_size_mb",
        "created_at",
        "duration",
        "thumbnail_url",
        "download_url",
    }
    assert v["thumbnail_url"] == f"/api/v1/outputs/{v['id']}/thumbnail"
    assert v["download_url"] == f"/api/v1/outputs/{v['id']}/download"
    assert v["prompt"] == "a blue whale" and v["model_type"] == "T2V-A14B" and v["mock"] is True
    assert v["duration"] > 0 and v["file_size_mb"] > 0
    assert body["total_size_mb"] == pytest.approx(
        sum(x["file_size_mb"] for x in body["videos"]), abs=0.01
    )


def test_details_and_unknown_ids(finished: Any) -> None:
    jid = finished.ids[0]
    r = finished.get(f"/api/v1/outputs/{jid}")
    assert r.status_code == 200 and r.json()["parameters"]["prompt"] == "a red fox"
    for bad in ("0" * 32, "nope", "..%2F..%2Fetc%2Fpasswd", "%2e%2e"):
        assert finished.get(f"/api/v1/outputs/{bad}").status_code == 404
        assert finished.get(f"/api/v1/outputs/{bad}/download").status_code == 404
        assert finished.get(f"/api/v1/outputs/{bad}/thumbnail").status_code == 404


def test_download_whole_and_by_range(finished: Any) -> None:
    jid = finished.ids[0]
    video = Path(finished.engine.get(jid).output.video).read_bytes()
    r = finished.get(f"/api/v1/outputs/{jid}/download")
    assert r.status_code == 200 and r.content == video
    assert (
        r.headers["content-type"] == "video/mp4"
        and "attachment" in r.headers["content-disposition"]
    )
    assert r.headers["accept-ranges"] == "bytes"
    r = finished.get(f"/api/v1/outputs/{jid}/download", headers={"Range": "bytes=0-99"})
    assert r.status_code == 206 and r.content == video[:100]
    assert r.headers["content-range"] == f"bytes 0-99/{len(video)}"
    r = finished.get(f"/api/v1/outputs/{jid}/download", headers={"Range": "bytes=-50"})
    assert r.status_code == 206 and r.content == video[-50:]
    r = finished.get(f"/api/v1/outputs/{jid}/download", headers={"Range": f"bytes={len(video)}-"})
    assert r.status_code == 416
    assert r.headers["content-range"] == f"bytes */{len(video)}"


def test_thumbnail_is_a_jpeg(finished: Any) -> None:
    r = finished.get(f"/api/v1/outputs/{finished.ids[0]}/thumbnail")
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    assert r.content[:3] == b"\xff\xd8\xff"


def test_delete_removes_the_video_and_keeps_the_task(tmp_path: Path) -> None:
    with api_client(tmp_path) as (c, eng):
        jid = c.post(
            "/api/v1/generation/submit",
            json={
                "model_type": "T2V-A14B",
                "prompt": "x",
                "steps": 1,
                "num_frames": 5,
                "resolution": "854x480",
            },
        ).json()["task_id"]
        wait_job(eng, jid, JobState.completed)
        out = eng.get(jid).output
        assert out is not None
        video = Path(out.video)
        r = c.delete(f"/api/v1/outputs/{jid}")
        assert r.status_code == 200 and r.json()["message"] == "Video deleted successfully"
        assert not video.exists()
        assert c.get("/api/v1/outputs").json()["total_count"] == 0
        assert c.get(f"/api/v1/outputs/{jid}/download").status_code == 404
        assert c.delete(f"/api/v1/outputs/{jid}").status_code == 404
        assert c.get(f"/api/v1/queue/{jid}").status_code == 200
