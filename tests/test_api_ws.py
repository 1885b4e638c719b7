"""The /ws protocol: envelope, subscribe/unsubscribe/ping/get_status, errors, and every server
message type from real engine events."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.api_helpers import api_client
from wan_desktop.api.mapping import STAGES
from wan_desktop.api.ws import TOPICS, Client
from wan_desktop.engine import Alert, JobWarning, ModelDownload
from wan_desktop.engine.events import ModelDownloadFinished
from wan_desktop.models.types import DownloadProgress, Phase

Msg = dict[str, Any]


def recv_until(ws: Any, pred: Callable[[Msg], bool], *, limit: int = 500) -> list[Msg]:
    """Messages up to and including the first that matches (each checked for the envelope)."""
    seen = []
    for _ in range(limit):
        msg = ws.receive_json()
        assert set(msg) == {"type", "data"} and isinstance(msg["data"], dict), msg
        assert "timestamp" in msg["data"], msg
        seen.append(msg)
        if pred(msg):
            return seen
    raise AssertionError(f"no matching message in {limit}: {[m['type'] for m in seen][-20:]}")


def of_type(kind: str) -> Callable[[Msg], bool]:
    return lambda m: m["type"] == kind


def subscribed(ws: Any, topic: str) -> Any:
    """A freshly connected client, subscribed to ``topic`` (its answers read)."""
    recv_until(ws, of_type("connection_established"))
    ws.send_json({"type": "subscribe", "data": {"topic": topic}})
    recv_until(ws, of_type("subscription_response"))
    return ws


@pytest.fixture
def client(tmp_path: Path) -> Any:
    with api_client(tmp_path) as (c, eng):
        c.engine = eng  # type: ignore[attr-defined]
        yield c


def test_connect_subscribe_unsubscribe_ping_status(client: Any) -> None:
    with client.websocket_connect("/ws") as ws:
        (hello,) = recv_until(ws, of_type("connection_established"))
        d = hello["data"]
        assert d["connection_id"] and d["available_topics"] == list(TOPICS) and d["message"]
        ws.send_json({"type": "subscribe", "data": {"topic": "alerts"}})
        (r,) = recv_until(ws, lambda m: True)
        assert r["type"] == "subscription_response"
        assert (
            r["data"]["topic"] == "alerts"
            and r["data"]["subscribed"] is True
            and r["data"]["message"]
        )
        ws.send_json({"type": "unsubscribe", "data": {"topic": "alerts"}})
        (r,) = recv_until(ws, lambda m: True)
        assert r["type"] == "unsubscription_response" and r["data"]["subscribed"] is False
        ws.send_json({"type": "ping"})
        assert recv_until(ws, lambda m: True)[0]["type"] == "pong"
        ws.send_json({"type": "get_status", "data": {}})
        (st,) = recv_until(ws, lambda m: True)
        assert st["type"] == "status_response" and st["data"]["connection_id"] == d["connection_id"]
        assert st["data"]["subscribed_topics"] == [] and st["data"]["connected_clients"] == 1


@pytest.mark.parametrize(
    "raw",
    [
        "not json",
        "[1, 2]",
        '{"data": {}}',
        '{"type": "dance"}',
        '{"type": "subscribe", "data": {"topic": "nope"}}',
        '{"type": 5}',
    ],
)
def test_bad_messages_get_an_error_envelope_never_an_echo(client: Any, raw: str) -> None:
    with client.websocket_connect("/ws") as ws:
        recv_until(ws, of_type("connection_established"))
        ws.send_text(raw)
        (err,) = recv_until(ws, lambda m: True)
        assert err["type"] == "error" and err["data"]["message"] and err["data"]["message"] != raw
        ws.send_json({"type": "ping"})  # the connection survives
        assert recv_until(ws, lambda m: True)[0]["type"] == "pong"


def test_a_job_sends_task_updates_to_everyone_and_progress_to_subscribers(client: Any) -> None:
    with client.websocket_connect("/ws") as plain, client.websocket_connect("/ws") as sub:
        recv_until(plain, of_type("connection_established"))
        recv_until(sub, of_type("connection_established"))
        sub.send_json({"type": "subscribe", "data": {"topic": "generation_progress"}})
        recv_until(sub, of_type("subscription_response"))
        r = client.post(
            "/api/v1/generation/submit",
            json={
                "model_type": "T2V-A14B",
                "prompt": "x",
                "steps": 4,
                "num_frames": 5,
                "resolution": "854x480",
            },
        )
        jid = r.json()["task_id"]

        def done(m: Msg) -> bool:
            return m["type"] == "task_update" and m["data"]["status"] == "completed"

        got = recv_until(sub, done)
        plain_got = recv_until(plain, done)
    kinds = {m["type"] for m in plain_got}
    assert "task_update" in kinds and "queue_update" in kinds
    assert not kinds & {"generation_progress", "detailed_generation_progress"}, (
        "only subscribers get these"
    )
    updates = [m["data"] for m in got if m["type"] == "task_update"]
    assert all(u["task_id"] == jid for u in updates)
    statuses = [u["status"] for u in updates]
    assert statuses[0] == "pending" and statuses[-1] == "completed"
    assert set(statuses) == {"pending", "processing", "completed"}
    assert (
        updates[-1]["output_path"] == f"/api/v1/outputs/{jid}/download"
        and updates[-1]["progress"] == 100
    )
    assert all("mock" in u["message"] for u in updates)
    progress = [m["data"] for m in got if m["type"] == "generation_progress"]
    assert [p["current_step"] for p in progress] == [1, 2, 3, 4]
    assert all(
        p["total_steps"] == 4 and p["status"] == "processing" and p["task_id"] == jid
        for p in progress
    )
    assert [p["progress"] for p in progress] == sorted(p["progress"] for p in progress)
    assert {"eta_seconds"} <= set(progress[-1])
    step_updates = [u for u in updates if u.get("current_step")]
    assert [u["current_step"] for u in step_updates] == [1, 2, 3, 4], "a task_update per step"
    stages = [m["data"] for m in got if m["type"] == "detailed_generation_progress"]
    assert stages[0]["stage"] == "initializing" and stages[-1]["stage"] == "completed"
    assert {s["stage"] for s in stages} <= set(STAGES)
    assert all({"task_id", "stage", "progress", "message"} <= set(s) for s in stages)
    queue_updates = [m for m in plain_got if m["type"] == "queue_update"]
    assert queue_updates[0]["data"]["message"] == "Task added to the queue"


def test_cancel_and_delete_send_queue_updates(client: Any) -> None:
    client.engine.pause()
    with client.websocket_connect("/ws") as ws:
        recv_until(ws, of_type("connection_established"))
        jid = client.post(
            "/api/v1/generation/submit", json={"model_type": "T2V-A14B", "prompt": "x"}
        ).json()["task_id"]
        recv_until(ws, lambda m: m["type"] == "queue_update" and m["data"]["reason"] == "submitted")
        client.post(f"/api/v1/queue/{jid}/cancel")
        msgs = recv_until(
            ws, lambda m: m["type"] == "queue_update" and m["data"]["reason"] == "cancelled"
        )
        assert any(m["type"] == "task_update" and m["data"]["status"] == "cancelled" for m in msgs)
        client.delete(f"/api/v1/queue/{jid}")
        recv_until(ws, lambda m: m["type"] == "queue_update" and m["data"]["reason"] == "deleted")


def test_system_stats_and_vram_monitoring_to_subscribers(client: Any) -> None:
    with client.websocket_connect("/ws") as ws:
        recv_until(ws, of_type("connection_established"))
        ws.send_json({"type": "subscribe", "data": {"topic": "system_stats"}})
        msgs = recv_until(ws, of_type("vram_monitoring"), limit=20)
    stats = next(m["data"] for m in msgs if m["type"] == "system_stats_update")
    assert {
        "cpu_percent",
        "ram_used_gb",
        "ram_total_gb",
        "ram_percent",
        "gpu_percent",
        "vram_used_mb",
        "vram_total_mb",
        "vram_percent",
        "system_info",
        "real_ai_integration",
    } <= set(stats)
    assert stats["vram_total_mb"] == 0 and "no GPU" in stats["system_info"]["note"]
    vram = msgs[-1]["data"]
    assert {
        "allocated_mb",
        "reserved_mb",
        "free_mb",
        "total_mb",
        "allocated_percent",
        "warning_level",
        "device_name",
    } <= set(vram)
    assert vram["warning_level"] == "normal"


def test_downloads_alerts_and_warnings_reach_their_topics(client: Any) -> None:
    bus = client.engine.bus
    with client.websocket_connect("/ws") as ws:
        recv_until(ws, of_type("connection_established"))
        for topic in ("download_progress", "alerts", "model_status"):
            ws.send_json({"type": "subscribe", "data": {"topic": topic}})
            recv_until(ws, of_type("subscription_response"))
        progress = DownloadProgress(
            "t2v-A14B@2.2.0",
            "bf16",
            Phase.downloading,
            bytes_done=50,
            bytes_total=200,
            speed_bps=10.0,
            eta_s=15.0,
            file="vae/x.safetensors",
        )
        bus.publish(ModelDownload(progress=progress))
        (dl,) = recv_until(ws, lambda m: True)
        assert dl["type"] == "download_progress_update"
        assert {
            k: dl["data"][k]
            for k in ("model_id", "file", "bytes_done", "bytes_total", "speed_bps", "eta_seconds")
        } == {
            "model_id": "t2v-A14B@2.2.0",
            "file": "vae/x.safetensors",
            "bytes_done": 50,
            "bytes_total": 200,
            "speed_bps": 10.0,
            "eta_seconds": 15.0,
        }
        assert (
            client.get("/api/v1/models/download/progress").json()["downloads"][0]["bytes_done"]
            == 50
        )
        bus.publish(
            ModelDownloadFinished(
                model_id="t2v-A14B@2.2.0", variant="bf16", ok=False, error="no space"
            )
        )
        msgs = recv_until(ws, of_type("model_status_update"))
        assert (
            msgs[0]["type"] == "download_progress_update" and msgs[0]["data"]["phase"] == "failed"
        )
        bus.publish(Alert(kind="vram", severity="warning", message="GPU memory is 91% full"))
        (alert,) = recv_until(ws, lambda m: True)
        assert alert["type"] == "alert"
        assert alert["data"]["alert_type"] == "vram" and alert["data"]["severity"] == "warning"
        bus.publish(
            JobWarning(job_id=None, message="LoRA shapes do not match; generating without it")
        )
        (warn,) = recv_until(ws, lambda m: True)
        assert warn["type"] == "alert" and "LoRA" in warn["data"]["message"]


def test_a_lagging_client_loses_progress_first_then_is_dropped() -> None:
    async def go() -> None:
        c = Client(ws=None, maxsize=4)  # type: ignore[arg-type]
        assert all(c.offer(f"m{i}") for i in range(3))
        assert c.offer("progress", droppable=True) and c.dropped == 1
        assert c.offer("state change") and c.queue.qsize() == 4
        assert c.offer("one more") is False

    asyncio.run(go())
