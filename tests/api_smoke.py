"""The smoke flow against a real server: submit, follow over a real WebSocket, download a range."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

import httpx
import websockets

from wan_desktop.api.server import EmbeddedServer


@dataclass
class SmokeResult:
    task_id: str
    submit: dict[str, Any]
    messages: list[dict[str, Any]] = field(default_factory=list)
    video: bytes = b""
    range_part: bytes = b""
    range_headers: dict[str, str] = field(default_factory=dict)
    task: dict[str, Any] = field(default_factory=dict)

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [m["data"] for m in self.messages if m["type"] == kind]


async def smoke(
    server: EmbeddedServer, body: dict[str, Any], *, timeout: float = 240.0
) -> SmokeResult:
    ws_url = server.url.replace("http://", "ws://") + "/ws"
    async with (
        websockets.connect(ws_url) as ws,
        httpx.AsyncClient(base_url=server.url, timeout=30) as http,
    ):
        hello = json.loads(await ws.recv())
        assert hello["type"] == "connection_established", hello
        await ws.send(json.dumps({"type": "subscribe", "data": {"topic": "generation_progress"}}))
        assert json.loads(await ws.recv())["type"] == "subscription_response"
        r = await http.post("/api/v1/generation/submit", json=body)
        assert r.status_code == 200, r.text
        result = SmokeResult(task_id=r.json()["task_id"], submit=r.json())

        async def follow() -> None:
            while True:
                msg = json.loads(await ws.recv())
                result.messages.append(msg)
                d = msg["data"]
                if (
                    msg["type"] == "task_update"
                    and d["task_id"] == result.task_id
                    and d["status"] in ("completed", "failed", "cancelled")
                ):
                    return

        await asyncio.wait_for(follow(), timeout)
        task = (await http.get(f"/api/v1/queue/{result.task_id}")).json()
        result.task = task
        if task["status"] == "completed":
            url = f"/api/v1/outputs/{result.task_id}/download"
            result.video = (await http.get(url)).content
            part = await http.get(url, headers={"Range": "bytes=4-11"})
            assert part.status_code == 206, part.status_code
            result.range_part = part.content
            result.range_headers = dict(part.headers)
    return result


def check_flow(result: SmokeResult, steps: int) -> None:
    """task_update and generation_progress arrive in order, and the MP4 is whole and ranged."""
    mine = [m for m in result.messages if m["data"].get("task_id") == result.task_id]
    updates = [m["data"] for m in mine if m["type"] == "task_update"]
    progress = [m["data"] for m in mine if m["type"] == "generation_progress"]
    assert updates[-1]["status"] == "completed", (result.task, updates[-3:])
    order = {"pending": 0, "processing": 1, "completed": 2}
    ranks = [order[u["status"]] for u in updates]
    assert ranks == sorted(ranks), [u["status"] for u in updates]
    assert "processing" in {u["status"] for u in updates}
    assert [p["current_step"] for p in progress] == list(range(1, steps + 1))
    assert [p["progress"] for p in progress] == sorted(p["progress"] for p in progress)
    # Every step's progress comes before the completed update.
    last_progress = max(i for i, m in enumerate(mine) if m["type"] == "generation_progress")
    first_done = next(
        i
        for i, m in enumerate(mine)
        if m["type"] == "task_update" and m["data"]["status"] == "completed"
    )
    assert last_progress < first_done
    assert result.video[4:8] == b"ftyp", "an MP4"
    assert result.range_part == result.video[4:12]
    assert result.range_headers["content-range"] == f"bytes 4-11/{len(result.video)}"
