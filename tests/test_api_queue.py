"""The /queue routes: list with counts and filters, cancel, delete, clear, reorder, poll."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.api_helpers import api_client
from tests.engine_helpers import wait_job
from wan_desktop.engine import JobState

SUBMIT = "/api/v1/generation/submit"


@pytest.fixture
def client(tmp_path: Path) -> Any:
    with api_client(tmp_path) as (c, eng):
        c.engine = eng  # type: ignore[attr-defined]
        yield c


def submit(c: Any, prompt: str = "a fox", **extra: Any) -> str:
    r = c.post(
        SUBMIT,
        json={
            "model_type": "T2V-A14B",
            "prompt": prompt,
            "steps": 2,
            "num_frames": 5,
            "resolution": "854x480",
            **extra,
        },
    )
    assert r.status_code == 200, r.text
    return str(r.json()["task_id"])


def test_queue_lists_tasks_newest_first_with_counts_and_omits_null_keys(client: Any) -> None:
    done = submit(client, "first")
    wait_job(client.engine, done, JobState.completed)
    client.engine.pause()
    a, b = submit(client, "second"), submit(client, "third")
    body = client.get("/api/v1/queue").json()
    assert [t["id"] for t in body["tasks"]] == [b, a, done]
    assert body["total_tasks"] == 3 and body["pending_tasks"] == 2 and body["completed_tasks"] == 1
    assert body["processing_tasks"] == body["failed_tasks"] == body["cancelled_tasks"] == 0
    pending = body["tasks"][0]
    assert set(pending) >= {
        "id",
        "model_type",
        "prompt",
        "resolution",
        "steps",
        "lora_strength",
        "status",
        "progress",
        "created_at",
    }
    assert (
        pending["status"] == "pending"
        and pending["progress"] == 0
        and pending["model_type"] == "T2V-A14B"
    )
    assert (
        "output_path" not in pending
        and "completed_at" not in pending
        and "error_message" not in pending
    )
    assert all(v is not None for t in body["tasks"] for v in t.values())
    finished = body["tasks"][2]
    assert finished["status"] == "completed" and finished["progress"] == 100
    assert finished["output_path"] == f"/api/v1/outputs/{done}/download"
    assert finished["completed_at"] and finished["started_at"]
    assert finished["mock"] is True and "mock" in finished["model_label"]


def test_limit_and_status_filter(client: Any) -> None:
    client.engine.pause()
    ids = [submit(client, f"job {i}") for i in range(3)]
    client.post(f"/api/v1/queue/{ids[0]}/cancel")
    assert [t["id"] for t in client.get("/api/v1/queue?limit=2").json()["tasks"]] == ids[:0:-1]
    cancelled = client.get("/api/v1/queue?status_filter=cancelled").json()["tasks"]
    assert [t["id"] for t in cancelled] == [ids[0]]
    assert cancelled[0]["status"] == "cancelled"
    assert client.get("/api/v1/queue?status_filter=bogus").status_code == 422
    assert client.get("/api/v1/queue?limit=0").status_code == 422
    assert client.get("/api/v1/queue?limit=x").status_code == 422


def test_the_cache_never_serves_a_stale_task(client: Any) -> None:
    client.engine.pause()
    jid = submit(client)
    assert client.get("/api/v1/queue").json()["tasks"][0]["status"] == "pending"
    client.engine.cancel(jid)
    assert client.get("/api/v1/queue").json()["tasks"][0]["status"] == "cancelled"
    client.engine.delete(jid)
    assert client.get("/api/v1/queue").json()["tasks"] == []


def test_cancel_pending_then_errors(client: Any) -> None:
    client.engine.pause()
    jid = submit(client)
    r = client.post(f"/api/v1/queue/{jid}/cancel")
    assert r.status_code == 200
    assert r.json()["message"] == "Task cancelled successfully" and r.json()["task_id"] == jid
    again = client.post(f"/api/v1/queue/{jid}/cancel")
    assert again.status_code == 400 and "finished" in again.json()["detail"]
    assert client.post("/api/v1/queue/nope/cancel").status_code == 404


def test_cancel_a_running_task(tmp_path: Path) -> None:
    with api_client(tmp_path, step_s=0.2) as (c, eng):
        jid = submit(c, steps=100)
        wait_job(eng, jid, JobState.running)
        assert c.post(f"/api/v1/queue/{jid}/cancel").status_code == 200
        wait_job(eng, jid, JobState.cancelled)
        assert c.get(f"/api/v1/queue/{jid}").json()["status"] == "cancelled"


def test_delete_only_finished_tasks(client: Any) -> None:
    client.engine.pause()
    jid = submit(client)
    r = client.delete(f"/api/v1/queue/{jid}")
    assert r.status_code == 400 and "cancel it first" in r.json()["detail"]
    client.post(f"/api/v1/queue/{jid}/cancel")
    r = client.delete(f"/api/v1/queue/{jid}")
    assert r.status_code == 200 and r.json()["message"] == f"Task {jid} deleted successfully"
    assert client.delete(f"/api/v1/queue/{jid}").status_code == 404
    assert client.get(f"/api/v1/queue/{jid}").status_code == 404


def test_clear_removes_completed_tasks_and_keeps_the_rest(client: Any) -> None:
    done = [submit(client, f"d{i}") for i in range(2)]
    for jid in done:
        wait_job(client.engine, jid, JobState.completed)
    client.engine.pause()
    keep = submit(client, "keep")
    r = client.post("/api/v1/queue/clear")
    assert r.status_code == 200 and r.json()["message"] == "Cleared 2 completed tasks"
    assert [t["id"] for t in client.get("/api/v1/queue").json()["tasks"]] == [keep]
    assert client.post("/api/v1/queue/clear").json()["message"] == "Cleared 0 completed tasks"


@pytest.mark.parametrize("method", ["post", "put"])
def test_reorder_pending_tasks(client: Any, method: str) -> None:
    client.engine.pause()
    a, b, c = submit(client, "a"), submit(client, "b"), submit(client, "c")
    r = getattr(client, method)("/api/v1/queue/reorder", json={"task_ids": [c, a]})
    assert r.status_code == 200, r.text
    assert r.json()["task_ids"] == [c, b, a]
    assert [j.id for j in client.engine.queue()] == [c, b, a]


def test_reorder_errors(client: Any) -> None:
    client.engine.pause()
    a = submit(client, "a")
    b = submit(client, "b")
    assert client.post("/api/v1/queue/reorder", json={"task_ids": [a, a]}).status_code == 422
    assert client.post("/api/v1/queue/reorder", json={"task_ids": []}).status_code == 422
    assert client.post("/api/v1/queue/reorder", json={"ids": [a]}).status_code == 422
    assert client.post("/api/v1/queue/reorder", json={"task_ids": [a, "f" * 32]}).status_code == 404
    client.post(f"/api/v1/queue/{b}/cancel")
    r = client.put("/api/v1/queue/reorder", json={"task_ids": [b, a]})
    assert r.status_code == 409 and "only queued" in r.json()["detail"]


def test_poll_reports_active_tasks(client: Any) -> None:
    body = client.get("/api/v1/queue/poll").json()
    assert body["has_active_tasks"] is False and body["active_tasks"] == []
    client.engine.pause()
    jid = submit(client, "p" * 300)
    body = client.get("/api/v1/queue/poll?active_only=true").json()
    assert body["pending_count"] == 1 and body["processing_count"] == 0 and body["has_active_tasks"]
    (task,) = body["active_tasks"]
    assert task["id"] == jid and len(task["prompt"]) == 100 and task["status"] == "pending"
    assert set(task) == {
        "id",
        "status",
        "progress",
        "model_type",
        "prompt",
        "created_at",
        "started_at",
        "completed_at",
        "error_message",
    }
    assert body["timestamp"]
    client.post(f"/api/v1/queue/{jid}/cancel")
    assert client.get("/api/v1/queue/poll").json()["active_tasks"] == []
    assert len(client.get("/api/v1/queue/poll?active_only=false").json()["active_tasks"]) == 1


def test_a_failed_task_shows_its_error_message(tmp_path: Path) -> None:
    from tests.engine_helpers import ScriptedPipeline
    from wan_desktop.engine import FailureCategory, JobFailedError

    def fail(ctx: Any) -> Any:
        raise JobFailedError(
            FailureCategory.out_of_memory, "out of GPU memory", ("lower the resolution",)
        )

    with api_client(tmp_path, pipelines=[ScriptedPipeline(fail)], mock=False) as (c, eng):
        jid = submit(c)
        wait_job(eng, jid, JobState.failed)
        task = c.get("/api/v1/queue").json()["tasks"][0]
        assert task["status"] == "failed"
        assert (
            "out of GPU memory" in task["error_message"]
            and "lower the resolution" in task["error_message"]
        )
        assert c.get("/api/v1/queue").json()["failed_tasks"] == 1
