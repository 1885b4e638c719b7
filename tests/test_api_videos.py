"""The explainer routes (/videos) and the job routes (/jobs) without rendering: validation, the
queued / cancelled / failed answers, paging, cancel and delete, logs, and WebSocket stages.

A full render through these routes (with Range streaming, and S3 redirects) is in
test_api_explainer_render.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.api_helpers import api_client
from tests.engine_helpers import wait_job
from tests.fake_chat import FakeChat
from tests.test_api_ws import recv_until, subscribed
from tests.test_explainer_pipeline import llm_engine
from wan_desktop.api.settings import ApiSettings
from wan_desktop.engine import Engine, JobState

CONFIG = {"topic": "Photosynthesis", "context": "Plants turn light into sugar.", "quality": "low"}
WAN = {"model_type": "T2V-A14B", "prompt": "a fox", "steps": 2, "num_frames": 5}
OTHER_ROUTES = ("video-url", "stream", "download", "thumbnail", "subtitles", "metadata")


@pytest.fixture
def client(tmp_path: Path) -> Iterator[Any]:
    with api_client(tmp_path, settings=ApiSettings(submit_burst=1000)) as (c, eng):
        eng.pause()  # jobs stay queued unless a test resumes the queue
        c.engine = eng  # type: ignore[attr-defined]
        yield c


def generate(c: Any, **config: Any) -> Any:
    priority = config.pop("priority", "normal")
    return c.post(
        "/api/v1/videos/generate",
        json={"configuration": {**CONFIG, **config}, "priority": priority},
    )


def fields(r: Any) -> set[str]:
    return {".".join(str(x) for x in d["loc"][1:]) for d in r.json()["detail"]}


def test_generate_answers_201_with_the_contract_shape(client: Any) -> None:
    r = generate(client, priority="urgent", model="template", scene_count=3)
    assert r.status_code == 201, r.text
    body = r.json()
    assert set(body) >= {"job_id", "status", "priority", "progress", "created_at"}
    assert "estimated_completion" in body
    assert body["status"] == "queued" and body["priority"] == "urgent"
    assert body["progress"] == {
        "percentage": 0.0,
        "current_stage": "queued",
        "stages_completed": [],
        "estimated_completion": body["estimated_completion"],
        "processing_time_seconds": None,
        "message": None,
    }
    created = datetime.fromisoformat(body["created_at"])
    assert datetime.fromisoformat(body["estimated_completion"]) > created
    job = client.engine.get(body["job_id"])
    # Contract names reach the engine's explainer parameters; the rest are the defaults.
    assert job.kind == "explainer" and job.priority.name == "urgent"
    p = job.params
    assert (p["topic"], p["context"], p["quality"]) == (
        CONFIG["topic"],
        CONFIG["context"],
        "low",
    )
    assert p["model"] == "template" and p["scene_count"] == 3 and p["use_rag"] is False
    assert p["enable_subtitles"] is True and p["output_format"] == "mp4"
    assert p["storage_mode"] == "local_only"


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"topic": ""}, "configuration.topic"),
        ({"topic": "x" * 501}, "configuration.topic"),
        ({"topic": "   "}, "configuration.topic"),  # blank after trimming (the engine says so)
        ({"topic": "a\x07b"}, "configuration.topic"),
        ({"context": ""}, "configuration.context"),
        ({"context": "x" * 2001}, "configuration.context"),
        ({"quality": "extreme"}, "configuration.quality"),
        ({"quality": 3}, "configuration.quality"),
        ({"use_rag": "sometimes"}, "configuration.use_rag"),
        ({"output_format": "avi"}, "configuration.output_format"),
        ({"model": "gpt-x"}, "configuration.model"),  # no LLM_BASE_URL configured
        ({"storage_mode": "s3_only"}, "configuration.storage_mode"),  # no bucket configured
        ({"scene_count": 9}, "configuration.scene_count"),
        ({"colour": "red"}, "configuration.colour"),
    ],
)
def test_generate_refuses_bad_fields_by_name(client: Any, config: Any, field: str) -> None:
    r = generate(client, **config)
    assert r.status_code == 422, r.text
    assert field in fields(r), r.json()
    assert not client.engine.jobs(), "nothing was queued"


def test_generate_refuses_bad_bodies(client: Any) -> None:
    url = "/api/v1/videos/generate"
    assert "priority" in fields(client.post(url, json={"configuration": CONFIG, "priority": "now"}))
    assert "configuration" in fields(client.post(url, json={"priority": "low"}))
    assert "extra" in fields(client.post(url, json={"configuration": CONFIG, "extra": 1}))
    assert (
        client.post(url, content=b"{nope", headers={"content-type": "application/json"}).status_code
        == 422
    )
    # Every error at once: topic and quality in one answer.
    assert {"configuration.topic", "configuration.quality"} <= fields(
        generate(client, topic="", quality="x")
    )


def test_generate_is_rate_limited_per_client(tmp_path: Path) -> None:
    with api_client(tmp_path, settings=ApiSettings(submit_burst=2, submit_per_s=0.01)) as (c, e):
        e.pause()
        # Refused requests (by the schema or by the engine) do not spend the budget.
        assert generate(c, topic="   ").status_code == generate(c, topic="").status_code == 422
        assert [generate(c).status_code for _ in range(3)] == [201, 201, 429]
        assert generate(c, topic="   ").status_code == 422, "a bad request still hears why"


def test_a_queued_job_has_a_status_and_no_video_yet(client: Any) -> None:
    jid = generate(client).json()["job_id"]
    st = client.get(f"/api/v1/videos/jobs/{jid}/status").json()
    assert st["job_id"] == jid and st["status"] == "queued" and "error" not in st
    assert st["progress"]["current_stage"] == "queued" and st["completed_at"] is None
    assert st["created_at"] == st["updated_at"] and st["kind"] == "explainer"
    for route in OTHER_ROUTES:
        r = client.get(f"/api/v1/videos/jobs/{jid}/{route}")
        assert r.status_code == 409, route
        assert r.json()["detail"] == {
            "message": f"job {jid} is not finished yet; poll its status",
            "status": "queued",
            "progress": 0.0,
            "current_stage": "queued",
        }


def test_unknown_and_malformed_ids_are_404(client: Any) -> None:
    for bad in ("0" * 32, "nope", "..%2F..%2Fetc%2Fpasswd", "%2e%2e", "A" * 32):
        for route in ("status", *OTHER_ROUTES):
            assert client.get(f"/api/v1/videos/jobs/{bad}/{route}").status_code == 404
        assert client.get(f"/api/v1/jobs/{bad}").status_code == 404
        assert client.get(f"/api/v1/jobs/{bad}/logs").status_code == 404
        assert client.post(f"/api/v1/jobs/{bad}/cancel").status_code == 404
        assert client.delete(f"/api/v1/jobs/{bad}").status_code == 404


def test_jobs_lists_both_kinds_paged_and_filtered(client: Any) -> None:
    explainers = [generate(client, topic=f"Topic {i}").json()["job_id"] for i in range(5)]
    wans = [client.post("/api/v1/generation/submit", json=WAN).json()["task_id"] for _ in range(2)]
    newest_first = (explainers + wans)[::-1]
    page = client.get("/api/v1/jobs?items_per_page=3").json()
    assert [j["job_id"] for j in page["jobs"]] == newest_first[:3]
    assert (page["total_count"], page["page"], page["total_pages"]) == (7, 1, 3)
    assert page["has_next"] is True and page["has_previous"] is False
    last = client.get("/api/v1/jobs?items_per_page=3&page=3").json()
    assert [j["job_id"] for j in last["jobs"]] == newest_first[6:]
    assert last["has_next"] is False and last["has_previous"] is True
    beyond = client.get("/api/v1/jobs?items_per_page=3&page=9").json()
    assert beyond["jobs"] == [] and beyond["total_count"] == 7
    kinds = {j["job_id"]: j["kind"] for j in client.get("/api/v1/jobs").json()["jobs"]}
    assert kinds == {**dict.fromkeys(explainers, "explainer"), **dict.fromkeys(wans, "wan")}
    only_wan = client.get("/api/v1/jobs?kind=wan").json()
    assert only_wan["total_count"] == 2 and {j["title"] for j in only_wan["jobs"]} == {"a fox"}
    # Statuses are the explainer API's: queued (the React routes call it pending).
    client.post(f"/api/v1/jobs/{explainers[0]}/cancel")
    assert client.get("/api/v1/jobs?status=queued").json()["total_count"] == 6
    cancelled = client.get("/api/v1/jobs?status=cancelled").json()
    assert [j["job_id"] for j in cancelled["jobs"]] == [explainers[0]]
    for bad in (
        "status=pending",
        "status=done",
        "page=0",
        "items_per_page=0",
        "items_per_page=101",
        "kind=other",
    ):
        r = client.get(f"/api/v1/jobs?{bad}")
        assert r.status_code == 422, bad
        assert bad.split("=")[0] in fields(r), r.json()


def test_one_job_with_parameters_estimate_and_no_local_paths(client: Any) -> None:
    jid = generate(client, model="template").json()["job_id"]
    job = client.get(f"/api/v1/jobs/{jid}").json()
    assert job["job_id"] == jid and job["status"] == "queued" and job["kind"] == "explainer"
    assert job["parameters"]["topic"] == CONFIG["topic"] and job["result"] is None
    assert job["estimate"]["minutes"] > 0 and job["estimate"]["writer"]
    assert job["label"] is None  # the offline planner was asked for by name: nothing to flag
    unlabeled = client.get(f"/api/v1/jobs/{generate(client).json()['job_id']}").json()
    assert "offline template planner" in unlabeled["label"]


def test_cancel_and_delete(client: Any) -> None:
    jid = generate(client).json()["job_id"]
    r = client.delete(f"/api/v1/jobs/{jid}")
    assert r.status_code == 409 and "cancel it first" in r.json()["detail"]
    r = client.post(f"/api/v1/jobs/{jid}/cancel")
    assert r.status_code == 200
    assert r.json() | {"message": None} == {
        "success": True,
        "job_id": jid,
        "previous_status": "queued",
        "new_status": "cancelled",
        "message": None,
    }
    r = client.post(f"/api/v1/jobs/{jid}/cancel")
    assert r.status_code == 409 and "already finished (cancelled)" in r.json()["detail"]
    st = client.get(f"/api/v1/videos/jobs/{jid}/status").json()
    assert st["status"] == "cancelled" and st["completed_at"] and "error" not in st
    r = client.get(f"/api/v1/videos/jobs/{jid}/video-url")
    assert r.status_code == 409 and r.json()["detail"]["status"] == "cancelled"
    assert client.delete(f"/api/v1/jobs/{jid}").json() == {
        "success": True,
        "job_id": jid,
        "message": f"Job {jid} deleted",
    }
    assert client.get(f"/api/v1/jobs/{jid}").status_code == 404


def test_cancelling_a_running_job_waits_for_it_to_stop(tmp_path: Path) -> None:
    with api_client(tmp_path, step_s=0.2) as (c, eng):
        jid = c.post("/api/v1/generation/submit", json={**WAN, "steps": 100}).json()["task_id"]
        wait_job(eng, jid, JobState.running)
        r = c.post(f"/api/v1/jobs/{jid}/cancel").json()
        assert (r["previous_status"], r["new_status"]) == ("processing", "cancelled")
        assert eng.get(jid).state is JobState.cancelled


@pytest.fixture
def failed(tmp_path: Path) -> Iterator[tuple[Any, Engine, str, list[dict[str, Any]]]]:
    """An explainer job that fails at planning: the chat server refuses our key."""
    with FakeChat({}, api_key="expected").running() as chat:
        eng = llm_engine(tmp_path, chat)
        try:
            with api_client(tmp_path, engine=eng) as (c, _):
                with c.websocket_connect("/ws") as ws:
                    subscribed(ws, "generation_progress")
                    jid = generate(c).json()["job_id"]
                    msgs = recv_until(
                        ws,
                        lambda m: (
                            m["type"] == "task_update"
                            and m["data"]["task_id"] == jid
                            and m["data"]["status"] == "failed"
                        ),
                    )
                yield c, eng, jid, msgs
        finally:
            eng.shutdown()


def test_a_failed_job_reports_its_error_code_stage_and_logs(failed: Any) -> None:
    c, _, jid, _ = failed
    st = c.get(f"/api/v1/videos/jobs/{jid}/status").json()
    assert st["status"] == "failed" and st["completed_at"]
    err = st["error"]
    assert err["error_code"] == "LLM_UNAVAILABLE" and err["stage"] == "planning"
    assert "LLM_API_KEY" in err["error_message"] and err["category"] == "model_unavailable"
    assert st["progress"]["stages_completed"] == ["initializing"]
    r = c.get(f"/api/v1/videos/jobs/{jid}/video-url")
    assert r.status_code == 409
    d = r.json()["detail"]
    assert d["status"] == "failed" and "LLM_API_KEY" in d["message"]
    logs = c.get(f"/api/v1/jobs/{jid}/logs").json()
    assert logs["job_id"] == jid and logs["total_count"] == len(logs["logs"]) > 0
    assert {"timestamp", "level", "message"} == set(logs["logs"][0])
    errors = c.get(f"/api/v1/jobs/{jid}/logs?level=error").json()["logs"]
    assert errors and all(line["level"] == "error" for line in errors)
    assert c.get(f"/api/v1/jobs/{jid}/logs?level=loud").status_code == 422
    assert c.delete(f"/api/v1/jobs/{jid}").status_code == 200


def test_explainer_jobs_send_their_own_stages_on_the_websocket(failed: Any) -> None:
    _, _, jid, msgs = failed
    mine = [m for m in msgs if m["data"].get("task_id") == jid]
    stages = [
        (m["data"]["stage"], m["data"]["progress"])
        for m in mine
        if m["type"] == "detailed_generation_progress"
    ]
    assert stages == [("initializing", 5), ("planning", 15), ("failed", 15)]
    assert all(
        m["data"]["kind"] == "explainer"
        for m in mine
        if m["type"] == "detailed_generation_progress"
    )
    updates = [m["data"]["status"] for m in mine if m["type"] == "task_update"]
    assert updates[0] == "pending" and updates[-1] == "failed" and "processing" in updates


def test_a_wan_jobs_video_streams_through_the_same_routes(tmp_path: Path) -> None:
    with api_client(tmp_path) as (c, eng):
        jid = c.post("/api/v1/generation/submit", json=WAN).json()["task_id"]
        done = wait_job(eng, jid, JobState.completed)
        assert done.output is not None
        video = Path(done.output.video).read_bytes()
        r = c.get(f"/api/v1/videos/jobs/{jid}/stream", headers={"Range": "bytes=10-19"})
        assert r.status_code == 206 and r.content == video[10:20]
        for route in ("stream", "download"):
            head = c.head(f"/api/v1/videos/jobs/{jid}/{route}")
            assert head.status_code == 200 and head.content == b""
            assert head.headers["content-length"] == str(len(video))
            assert head.headers["accept-ranges"] == "bytes"
        body = c.get(f"/api/v1/videos/jobs/{jid}/video-url").json()
        assert body["metadata"]["quality"] is None and body["metadata"]["format"] == "mp4"
        assert body["metadata"]["file_size"] == len(video) and body["subtitles_url"] is None
        assert c.get(f"/api/v1/videos/jobs/{jid}/thumbnail").status_code == 200
        r = c.get(f"/api/v1/videos/jobs/{jid}/subtitles")
        assert r.status_code == 404 and r.json()["detail"] == f"job {jid} has no subtitles"
        meta = c.get(f"/api/v1/videos/jobs/{jid}/metadata").json()
        assert meta["kind"] == "wan" and meta["details"]["job_id"] == jid
        st = c.get(f"/api/v1/jobs/{jid}").json()
        assert st["status"] == "completed" and st["result"]["download_url"].endswith("/download")
        r = c.delete(f"/api/v1/jobs/{jid}?delete_output=true")
        assert r.status_code == 200 and r.json()["message"].endswith("with its files")
        assert not Path(done.output.video).exists()
