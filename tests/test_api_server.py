"""Real servers on 127.0.0.1: the embedded server, the smoke flow (mock and real Wan), wan serve."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from tests.api_smoke import check_flow, smoke
from tests.engine_helpers import engine_settings, mock_engine
from tests.helpers import REAL_MANIFEST, ROOT
from wan_desktop.api.server import EmbeddedServer
from wan_desktop.api.settings import ApiConfigError


def is_running(server: EmbeddedServer) -> bool:
    return server.running


@pytest.mark.asyncio
async def test_embedded_server_starts_on_a_free_port_and_stops_with_clients_connected(
    tmp_path: Path,
) -> None:
    eng = mock_engine(tmp_path)
    server = EmbeddedServer(eng, port=0)
    try:
        await server.start()
        assert (
            server.running and server.port > 0 and server.url == f"http://127.0.0.1:{server.port}"
        )
        async with httpx.AsyncClient(base_url=server.url) as http:
            assert (await http.get("/health")).json()["port"] == server.port
        clients = [
            await websockets.connect(server.url.replace("http", "ws") + "/ws") for _ in range(3)
        ]
        for ws in clients:
            assert json.loads(await ws.recv())["type"] == "connection_established"
        t0 = time.monotonic()
        await server.stop()
        assert time.monotonic() - t0 < 5, "shutdown must not wait for WebSocket clients"
        assert not is_running(server)
        for ws in clients:
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 5)
        # A second server can take the same port at once.
        again = EmbeddedServer(eng, port=server.port)
        await again.start()
        await again.stop()
    finally:
        await server.stop()
        eng.shutdown()


@pytest.mark.asyncio
async def test_a_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    eng = mock_engine(tmp_path, start=False)
    first = EmbeddedServer(eng, port=0)
    await first.start()
    try:
        with pytest.raises(ApiConfigError, match="cannot listen"):
            await EmbeddedServer(eng, port=first.port).start()
    finally:
        await first.stop()
        eng.shutdown()


@pytest.mark.asyncio
async def test_smoke_flow_with_the_mock_pipeline(tmp_path: Path) -> None:
    eng = mock_engine(tmp_path)
    server = EmbeddedServer(eng, port=0)
    await server.start()
    try:
        body = {
            "model_type": "T2V-A14B",
            "prompt": "a fox",
            "steps": 4,
            "num_frames": 9,
            "resolution": "854x480",
        }
        result = await smoke(server, body)
        assert result.submit["real_ai_enabled"] is False
        check_flow(result, steps=4)
    finally:
        await server.stop()
        eng.shutdown()


@pytest.mark.asyncio
async def test_smoke_flow_with_the_real_wan_pipeline_in_development_mode(
    tmp_path: Path, tiny_models_root: Path
) -> None:
    pytest.importorskip(
        "wan_desktop.engine.pipelines.wan",
        reason="the real Wan pipeline (engine/pipelines/wan.py) is not on this branch yet",
    )
    from wan_desktop.engine import Engine
    from wan_desktop.models.config import OrchestratorConfig

    root = tmp_path / "models"
    shutil.copytree(tiny_models_root, root, symlinks=True)
    models = OrchestratorConfig.from_env(
        {}, models_root=root, manifest_path=REAL_MANIFEST, dev_mode=True
    )
    eng = Engine(engine_settings(tmp_path, mock=False, models=models))
    server = EmbeddedServer(eng, port=0)
    await server.start()
    try:
        body = {
            "model_type": "T2V-A14B",
            "prompt": "a fox in snow",
            "steps": 2,
            "num_frames": 5,
            "resolution": "854x480",
            "seed": 1,
        }
        result = await smoke(server, body, timeout=600)
        assert result.submit["real_ai_enabled"] is True
        assert (
            result.submit["development"] is True
            and "development variant" in result.submit["message"]
        )
        check_flow(result, steps=2)
        assert "development variant" in result.of("task_update")[-1]["message"]
    finally:
        await server.stop()
        eng.shutdown()


def test_wan_serve_runs_headless_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "WAN_DATA_DIR": str(tmp_path / "data"),
        "MODELS_ROOT": str(tmp_path / "models"),
        "WAN_MODELS_MANIFEST": str(REAL_MANIFEST),
        "WAN_HARDWARE_PROFILE": json.dumps(
            {"device": "cpu", "gpu_name": None, "vram_total_mb": 0, "ram_total_mb": 8192}
        ),
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "wan_desktop.cli",
            "serve",
            "--port",
            "0",
            "--mock",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert "Wan Desktop API at http://127.0.0.1:" in line and "mock mode" in line, line
        url = line.split(" at ", 1)[1].split(" ", 1)[0].rstrip(";")
        r = httpx.post(
            f"{url}/api/v1/generation/submit",
            json={
                "model_type": "T2V-A14B",
                "prompt": "x",
                "steps": 1,
                "num_frames": 5,
                "resolution": "854x480",
            },
        )
        assert r.status_code == 200 and r.json()["real_ai_enabled"] is False
        proc.send_signal(2)  # SIGINT, as Ctrl-C
        assert proc.wait(timeout=30) == 130  # the shell's code for Ctrl-C, after a clean stop
        rest = proc.stderr.read()
        assert "Traceback" not in rest and "stopped" in rest, rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize(
    ("how", "sig", "code"),
    [("background", signal.SIGINT, 130), ("foreground", signal.SIGTERM, 143)],
)
def test_wan_serve_reports_the_signal_that_stopped_it(
    tmp_path: Path, how: str, sig: int, code: int
) -> None:
    """Started by a script in the background, SIGINT is ignored on entry; uvicorn re-raised the
    captured SIGINT into that and wan serve exited 0. SIGTERM killed it before the engine was shut
    down. Both now stop cleanly and exit 128 + the signal."""
    from tests.api_helpers import WanServe

    with WanServe(tmp_path, "--log-level", "warning", ignore_sigint=how == "background") as s:
        r = httpx.post(
            f"{s.url}/api/v1/generation/submit",
            json={"model_type": "T2V-A14B", "prompt": "x", "steps": 1, "num_frames": 5},
        )
        assert r.status_code == 200
        got, rest = s.stop(sig=sig)
    assert got == code, rest
    assert "Traceback" not in rest and "stopped" in rest, rest


def test_wan_serve_refuses_bad_settings(tmp_path: Path) -> None:
    from wan_desktop.cli import main

    assert main(["serve", "--host", "0.0.0.0", "--token", "short"]) == 2
    assert main(["serve", "--origins", "not-an-origin"]) == 2


@pytest.mark.asyncio
async def test_an_oversized_chunked_upload_is_refused_before_it_is_all_sent(tmp_path: Path) -> None:
    from wan_desktop.api.settings import ApiSettings

    eng = mock_engine(tmp_path, start=False)
    server = EmbeddedServer(eng, port=0, settings=ApiSettings(max_lora_bytes=100_000))
    await server.start()
    sent = 0
    total = 200 * 2**20
    boundary = "b0undary"

    async def body() -> Any:
        nonlocal sent
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
            'filename="big.safetensors"\r\nContent-Type: application/octet-stream\r\n\r\n'
        ).encode()
        yield head
        chunk = b"\0" * 2**16
        while sent < total:
            sent += len(chunk)
            yield chunk
        yield f"\r\n--{boundary}--\r\n".encode()

    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
            try:
                r = await http.post(
                    "/api/v1/lora/upload",
                    content=body(),  # chunked: no Content-Length to check up front
                    headers={"content-type": f"multipart/form-data; boundary={boundary}"},
                )
                assert r.status_code == 422 and "over" in r.text
            except (httpx.WriteError, httpx.ReadError, httpx.RemoteProtocolError):
                pass  # the server answered and closed while we were still sending
        assert sent < total // 10, f"the server read {sent} bytes of an oversized upload"
        assert not any(eng.settings.loras_dir.glob("*.safetensors"))
        async with httpx.AsyncClient(base_url=server.url) as http:
            assert (await http.get("/health")).status_code == 200
    finally:
        await server.stop()
        eng.shutdown()
