"""Who may call: tokens, origins, binds, and the saved token."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from starlette.websockets import WebSocketDisconnect

from tests.api_helpers import ORIGIN, TOKEN, api_client
from wan_desktop.access import ENV_TOKEN_FILE, load_or_create_token, new_token, token_path
from wan_desktop.api.server import EmbeddedServer
from wan_desktop.api.settings import ApiConfigError, ApiSettings


def test_with_a_token_every_call_needs_it(tmp_path: Path) -> None:
    with api_client(tmp_path, settings=ApiSettings(token=TOKEN)) as (c, _):
        r = c.get("/api/v1/queue")
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert "Authorization: Bearer" in r.json()["detail"]
        assert (
            c.get(
                "/api/v1/queue", headers={"Authorization": "Bearer wrong-token-xxxxxxxx"}
            ).status_code
            == 401
        )
        assert (
            c.get("/api/v1/queue", headers={"Authorization": f"Basic {TOKEN}"}).status_code == 401
        )
        assert c.post("/api/v1/generation/submit", json={}).status_code == 401
        assert c.get("/metrics").status_code == 401
        assert (
            c.get("/api/v1/queue", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
        )
        assert c.get("/health").status_code == 200  # health stays open


def test_websocket_needs_the_token_by_header_or_query(tmp_path: Path) -> None:
    with api_client(tmp_path, settings=ApiSettings(token=TOKEN)) as (c, _):
        with pytest.raises(WebSocketDisconnect), c.websocket_connect("/ws") as ws:
            ws.receive_json()
        with pytest.raises(WebSocketDisconnect), c.websocket_connect("/ws?token=nope") as ws:
            ws.receive_json()
        with c.websocket_connect(f"/ws?token={TOKEN}") as ws:
            assert ws.receive_json()["type"] == "connection_established"
        with c.websocket_connect("/ws", headers={"Authorization": f"Bearer {TOKEN}"}) as ws:
            assert ws.receive_json()["type"] == "connection_established"


def test_foreign_origins_are_refused_allowed_ones_get_cors(tmp_path: Path) -> None:
    with api_client(tmp_path) as (c, _):
        r = c.post(
            "/api/v1/generation/submit",
            json={"model_type": "T2V-A14B", "prompt": "x"},
            headers={"Origin": "http://evil.example"},
        )
        assert r.status_code == 403 and "not allowed" in r.json()["detail"]
        assert c.get("/api/v1/queue", headers={"Origin": "http://evil.example"}).status_code == 403
        pre = c.options(
            "/api/v1/queue",
            headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "GET"},
        )
        assert pre.status_code == 400 and "access-control-allow-origin" not in pre.headers
        ok = c.get("/api/v1/queue", headers={"Origin": ORIGIN})
        assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == ORIGIN
        pre = c.options(
            "/api/v1/queue", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"}
        )
        assert pre.status_code == 200 and pre.headers["access-control-allow-origin"] == ORIGIN
        assert (
            c.get("/api/v1/queue", headers={"Origin": "http://127.0.0.1:8000"}).status_code == 200
        )  # same origin
        with (
            pytest.raises(WebSocketDisconnect),
            c.websocket_connect("/ws", headers={"Origin": "http://evil.example"}) as ws,
        ):
            ws.receive_json()
        with c.websocket_connect("/ws", headers={"Origin": ORIGIN}) as ws:
            assert ws.receive_json()["type"] == "connection_established"


def test_configured_origins_replace_the_defaults(tmp_path: Path) -> None:
    with api_client(tmp_path, settings=ApiSettings(origins=("https://studio.example",))) as (c, _):
        assert c.get("/api/v1/queue", headers={"Origin": ORIGIN}).status_code == 403
        assert (
            c.get("/api/v1/queue", headers={"Origin": "https://studio.example"}).status_code == 200
        )


def test_non_loopback_binds_refuse_to_start_without_a_token(tmp_path: Path) -> None:
    from tests.engine_helpers import mock_engine

    eng = mock_engine(tmp_path, start=False)
    try:
        with pytest.raises(ApiConfigError, match="token"):
            EmbeddedServer(eng, host="0.0.0.0", port=0)
        with pytest.raises(ApiConfigError, match="token"):
            ApiSettings(host="192.168.1.20").check()
        with pytest.raises(ApiConfigError, match="16"):
            ApiSettings(host="0.0.0.0", token="short").check()
        ApiSettings(host="0.0.0.0", token=TOKEN).check()
        for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
            ApiSettings(host=host).check()
        with pytest.raises(ApiConfigError, match="origin"):
            ApiSettings(origins=("evil",)).check()
    finally:
        eng.shutdown()


def test_the_token_is_generated_once_saved_privately_and_can_be_renewed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "cfg" / "api-token"
    monkeypatch.setenv(ENV_TOKEN_FILE, str(path))
    assert token_path() == path
    first = load_or_create_token()
    assert len(first) >= 32 and path.read_text().strip() == first
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_or_create_token() == first
    second = new_token()
    assert second != first and load_or_create_token() == second


def test_without_a_token_only_this_machine_s_host_names_are_served(tmp_path: Path) -> None:
    # A page whose domain was re-bound to 127.0.0.1 sends no Origin on same-origin GETs;
    # its Host header still names the attacker's domain.
    with api_client(tmp_path) as (c, _):
        r = c.get("/api/v1/outputs", headers={"Host": "rebound.evil.example:8000"})
        assert r.status_code == 403 and "not this machine" in r.json()["detail"]
        for host in ("localhost:8000", "127.0.0.1:8000", "[::1]:8000", "127.0.0.1"):
            assert c.get("/api/v1/queue", headers={"Host": host}).status_code == 200, host
    # With a token the server may be reached by any name: the token is the guard.
    with api_client(tmp_path / "t", settings=ApiSettings(token=TOKEN)) as (c, _):
        auth = {"Authorization": f"Bearer {TOKEN}", "Host": "gpu-server.lan:8000"}
        assert c.get("/api/v1/queue", headers=auth).status_code == 200


def test_non_finite_numbers_in_a_bad_body_get_a_422_not_a_500(tmp_path: Path) -> None:
    # Found by the fuzz run: the echoed input (Infinity) could not be written as JSON.
    with api_client(tmp_path) as (c, _):
        r = c.post(
            "/api/v1/prompt/enhance",
            content='{"options": {"apply_cinematic": Infinity, "x": NaN}}',
            headers={"content-type": "application/json"},
        )
        assert r.status_code == 422
        assert "apply_cinematic" in r.text and "inf" in r.text


@pytest.mark.parametrize("how", ["env", "file"])
def test_the_token_stays_off_the_command_line_and_out_of_every_log_line(
    tmp_path: Path, how: str
) -> None:
    import httpx
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect as ws_connect

    from tests.api_helpers import WanServe

    secret = "s3cret-token-" + "x" * 20
    wrong = "wr0ng-token-" + "y" * 20
    token_file = tmp_path / "token"
    token_file.write_text(secret + "\n")
    args, env = (
        (["--token-file", str(token_file)], {})
        if how == "file"
        else ([], {"WAN_API_TOKEN": secret})
    )
    with WanServe(tmp_path, "--log-level", "info", *args, env=env) as server:
        assert secret.encode() not in Path(f"/proc/{server.proc.pid}/cmdline").read_bytes()
        ws_url = server.url.replace("http://", "ws://") + "/ws"
        with ws_connect(f"{ws_url}?token={secret}") as ws:
            assert json.loads(ws.recv(timeout=10))["type"] == "connection_established"
        with pytest.raises(InvalidStatus):
            ws_connect(f"{ws_url}?token={wrong}").close()
        with pytest.raises(InvalidStatus):
            ws_connect(f"{ws_url}?x=1&token={wrong}&y=2").close()
        assert httpx.get(f"{server.url}/api/v1/queue?token={wrong}").status_code == 401
        assert (
            httpx.get(
                f"{server.url}/api/v1/queue", headers={"Authorization": f"Bearer {secret}"}
            ).status_code
            == 200
        )
        server.stop()
    logs = server.stderr
    assert "WebSocket /ws?token=[redacted]" in logs, logs  # the lines are there, redacted
    assert secret not in logs and wrong not in logs, logs


def test_a_missing_or_empty_token_file_is_a_clear_error(tmp_path: Path) -> None:
    from wan_desktop.cli import main

    assert main(["serve", "--token-file", str(tmp_path / "nope")]) == 2
    (tmp_path / "empty").write_text("\n")
    assert main(["serve", "--token-file", str(tmp_path / "empty")]) == 2
