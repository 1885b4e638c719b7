"""The server's edge: text UTF-8 cannot hold, deep JSON, body caps, header limits, slow clients."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api_helpers import api_client
from tests.engine_helpers import mock_engine, wan_spec
from wan_desktop.api.server import EmbeddedServer
from wan_desktop.api.settings import ApiSettings

SURROGATE = '"a fox \\ud800"'  # valid JSON; no UTF-8 file, database or log can hold it
WAN = '{"model_type": "T2V-A14B", "steps": 2, "num_frames": 5, "prompt": %s}'
TEXT_ROUTES = {
    "/api/v1/generation/submit": WAN,
    "/api/v1/prompt/enhance": '{"prompt": %s}',
    "/api/v1/prompt/validate": '{"prompt": %s}',
    "/api/v1/videos/generate": '{"configuration": {"topic": %s, "context": "x"}}',
}
LISTINGS = (
    "/api/v1/jobs",
    "/api/v1/queue",
    "/api/v1/queue/poll",
    "/api/v1/outputs",
)


@pytest.fixture
def c(tmp_path: Path) -> Iterator[Any]:
    with api_client(tmp_path, settings=ApiSettings(submit_burst=1000)) as (c, eng):
        eng.pause()
        c.engine = eng  # type: ignore[attr-defined]
        yield c


def post_raw(c: Any, url: str, body: bytes | str, ctype: str = "application/json") -> Any:
    return c.post(url, content=body, headers={"content-type": ctype})


def test_text_that_utf8_cannot_hold_is_refused_with_422_and_nothing_is_queued(c: Any) -> None:
    for url, template in TEXT_ROUTES.items():
        r = post_raw(c, url, template % SURROGATE)
        assert r.status_code == 422, (url, r.text)
        assert "surrogate" in r.text, r.text
        # The same body with ordinary text is accepted, so the refusal is about the text only.
        ok = post_raw(c, url, template % '"a fox"')
        assert ok.status_code in (200, 201), (url, ok.text)
    # As a key, nested, and in a list.
    r = post_raw(c, "/api/v1/prompt/enhance", '{"prompt": "x", "options": {"\\udfff": 1}}')
    assert r.status_code == 422
    assert c.engine.store.counts_by_state()  # the store answers
    queued = sum(c.engine.counts().values())
    assert queued == 2, "only the two valid submissions are in the store"
    for url in LISTINGS:
        assert c.get(url).status_code == 200, url


def test_query_strings_path_and_forms_must_be_utf8_too(c: Any) -> None:
    r = c.get("/api/v1/generation/models/detect?prompt=%ED%A0%80")  # a surrogate, UTF-8 style
    assert r.status_code == 422 and r.json()["detail"][0]["loc"][0] == "query"
    assert c.get("/api/v1/generation/models/detect?prompt=caf%C3%A9").status_code == 200
    assert c.get("/api/v1/outputs/%FF%FE").status_code == 422
    # A urlencoded form and a multipart form whose declared charset decodes to a surrogate.
    r = post_raw(
        c, "/api/v1/lora/x/preview", "base_prompt=%ED%A0%80", "application/x-www-form-urlencoded"
    )
    assert r.status_code == 422
    fields = dict(json.loads(WAN % '"a fox"'))
    fields["prompt"] = "a fox \\ud800"
    boundary = "b0undary"
    parts = "".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'
        for k, v in fields.items()
    )
    body = f"{parts}--{boundary}--\r\n".encode()
    r = post_raw(
        c,
        "/api/v1/generation/submit",
        body,
        f"multipart/form-data; charset=unicode_escape; boundary={boundary}",
    )
    assert r.status_code == 422 and "prompt" in r.text, r.text
    assert sum(c.engine.counts().values()) == 0
    assert c.get("/api/v1/jobs").status_code == 200


@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/generation/submit",  # parsed by hand
        "/api/v1/lora/anything/preview",  # parsed by hand
        "/api/v1/prompt/enhance",  # parsed by FastAPI
    ],
)
def test_deeply_nested_json_is_a_422_not_a_crash(c: Any, url: str) -> None:
    for body in ("[" * 200_000, '{"a":' * 100_000, "[" * 70 + "]" * 70):
        r = post_raw(c, url, body)
        assert r.status_code == 422, (url, body[:10], r.status_code, r.text[:200])
        assert "nested" in r.text
    assert c.get("/api/v1/jobs").status_code == 200


# ------------------------------------------------------------------------ a real server


@pytest.fixture
def server(tmp_path: Path) -> Iterator[EmbeddedServer]:
    eng = mock_engine(tmp_path, start=False)
    srv = EmbeddedServer(eng, port=0, settings=ApiSettings(request_timeout_s=3.0))
    loop = asyncio.new_event_loop()
    loop.run_until_complete(srv.start())
    thread_loop = _LoopThread(loop)
    srv.loop_thread = thread_loop  # type: ignore[attr-defined]
    try:
        yield srv
    finally:
        thread_loop.stop()
        loop.run_until_complete(srv.stop())
        loop.close()
        eng.shutdown()


class _LoopThread:
    """Runs the server's loop in a thread while the test talks to it with blocking sockets."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        import threading

        self.loop = loop
        self.thread = threading.Thread(target=loop.run_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def connect(srv: EmbeddedServer) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)
    return s


def read_answer(s: socket.socket, timeout: float = 30) -> bytes:
    """All the server sends until it closes (or the status line and a bit, at most 64 KB)."""
    s.settimeout(timeout)
    data = b""
    try:
        while len(data) < 65536:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
            if b"\r\n\r\n" in data and b"content-length" in data.lower():
                head, _, rest = data.partition(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                if len(rest) >= length:
                    break
    except (ConnectionResetError, TimeoutError):
        pass
    return data


def closed_within(s: socket.socket, seconds: float) -> bool:
    """True when the server closes the socket (EOF or reset) within ``seconds``."""
    s.settimeout(seconds)
    try:
        while s.recv(65536):
            pass
        return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def test_a_100_mb_json_body_is_refused_with_413_without_being_read(
    server: EmbeddedServer,
) -> None:
    # Declared: answered from the headers.
    s = connect(server)
    s.sendall(
        b"POST /api/v1/generation/submit HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nContent-Length: 104857600\r\n\r\n" + b" " * 65536
    )
    answer = read_answer(s)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    s.close()
    # Chunked: refused once past the cap; the server stops reading long before 100 MB.
    sent = 0

    def body() -> Iterator[bytes]:
        nonlocal sent
        yield b'{"prompt": "'
        chunk = b"a" * 65536
        while sent < 100 * 2**20:
            sent += len(chunk)
            yield chunk
        yield b'"}'

    try:
        r = httpx.post(
            f"{server.url}/api/v1/prompt/validate",
            content=body(),
            headers={"content-type": "application/json"},
            timeout=60,
        )
        assert r.status_code == 413 and "over 512 KB" in r.text
    except (httpx.WriteError, httpx.ReadError, httpx.RemoteProtocolError):
        pass  # the server answered and closed while we were still sending
    assert sent < 10 * 2**20, f"the server read {sent} bytes of an oversized body"
    assert httpx.get(f"{server.url}/health").status_code == 200


def test_oversized_and_too_many_headers_are_refused_fast(server: EmbeddedServer) -> None:
    # One 128 MB header: refused once the first 16 KB have arrived, not parsed whole.
    s = connect(server)
    s.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ")
    sent, t0 = 0, time.monotonic()
    chunk = b"a" * 65536
    with pytest.raises(OSError):  # broken pipe or reset: the server closed on us
        while sent < 128 * 2**20:
            s.sendall(chunk)
            sent += len(chunk)
    took = time.monotonic() - t0
    s.close()
    assert sent < 32 * 2**20, f"the server took {sent} bytes of one header"
    assert took < 20, f"refusing the header took {took:.1f} s"
    # 20,000 headers do not fit the 16 KB; 150 small ones fit, but are more than 100.
    for count, status in ((20_000, b"400"), (150, b"431")):
        s = connect(server)
        extra = b"".join(b"X-%d: 1\r\n" % i for i in range(count))
        with contextlib.suppress(OSError):
            s.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n" + extra + b"\r\n")
        answer = read_answer(s)
        assert answer.startswith(b"HTTP/1.1 " + status) or (status == b"400" and not answer), (
            count,
            answer[:200],
        )
        s.close()
    assert httpx.get(f"{server.url}/health").status_code == 200


def test_slow_and_idle_clients_are_disconnected_within_the_timeout(
    server: EmbeddedServer,
) -> None:
    timeout = server.settings.request_timeout_s
    sockets: dict[str, list[socket.socket]] = {"idle": [], "slow headers": [], "slow body": []}
    keep_alive: list[socket.socket] = []
    for _ in range(20):
        sockets["idle"].append(connect(server))
        s = connect(server)
        s.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        sockets["slow headers"].append(s)
        s = connect(server)
        s.sendall(
            b"POST /api/v1/prompt/validate HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
        )
        sockets["slow body"].append(s)
        s = connect(server)
        s.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert read_answer(s).startswith(b"HTTP/1.1 200")
        keep_alive.append(s)
    sockets["idle keep-alive"] = keep_alive
    # One client trickles a header byte every 0.3 s: trickling does not buy time.
    trickler = connect(server)
    trickler.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Drip: ")
    t0 = time.monotonic()
    closed_at = None
    while time.monotonic() - t0 < timeout + 20:
        try:
            trickler.sendall(b"a")
            trickler.settimeout(0.3)
            if trickler.recv(1024) == b"":
                closed_at = time.monotonic() - t0
                break
        except TimeoutError:
            continue
        except OSError:
            closed_at = time.monotonic() - t0
            break
    assert closed_at is not None, "a trickling client kept its socket"
    assert closed_at >= timeout * 0.8, f"closed after {closed_at:.1f} s, before the timeout"
    for kind, group in sockets.items():
        for s in group:
            assert closed_within(s, 20), f"an {kind} socket stayed open"
            s.close()
    trickler.close()
    assert httpx.get(f"{server.url}/health").status_code == 200


def test_a_slow_but_steady_upload_is_not_cut_off(server: EmbeddedServer) -> None:
    """The deadline grows with the body received: a large body sent steadily gets through."""
    timeout = server.settings.request_timeout_s
    body = json.dumps({"prompt": "a" * 99_000}).encode()
    s = connect(server)
    s.sendall(
        b"POST /api/v1/prompt/validate HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
    )
    step = 12 * 1024  # 12 KB every 0.5 s: 24 KB/s, 1.5 times the minimum rate
    t0 = time.monotonic()
    for i in range(0, len(body), step):
        s.sendall(body[i : i + step])
        time.sleep(0.5)
    assert time.monotonic() - t0 > timeout, "the upload must outlast the plain timeout"
    assert read_answer(s).startswith(b"HTTP/1.1 200")
    s.close()


def test_a_websocket_flood_does_not_slow_other_clients(server: EmbeddedServer) -> None:
    """A client that sends get_status as fast as it can and never reads is closed (1008) once
    over its rate, and a second client's /health stays quick meanwhile."""
    import threading

    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect as ws_connect

    eng = server.engine
    for _ in range(200):  # a store to count
        eng.submit(wan_spec())
    url = server.url.replace("http://", "ws://") + "/ws"
    stop = threading.Event()
    outcome: dict[str, Any] = {"sent": 0}

    def flood() -> None:
        frame = json.dumps({"type": "get_status", "data": {}})
        with ws_connect(url, max_size=None) as ws:
            t0 = time.monotonic()
            try:
                while not stop.is_set() and time.monotonic() - t0 < 6:
                    ws.send(frame)
                    outcome["sent"] += 1
            except ConnectionClosed as exc:
                outcome["closed"] = exc.rcvd.code if exc.rcvd else "dropped"
                return
            # Still open: read what came back to see how it ends.
            try:
                while True:
                    ws.recv(timeout=10)
            except ConnectionClosed as exc:
                outcome["closed"] = exc.rcvd.code if exc.rcvd else "dropped"
            except TimeoutError:
                outcome["closed"] = "still open"

    flooder = threading.Thread(target=flood, daemon=True)
    latencies = []
    with httpx.Client(base_url=server.url, timeout=30) as http:
        http.get("/health")
        flooder.start()
        t0 = time.monotonic()
        while time.monotonic() - t0 < 4:
            s = time.perf_counter()
            assert http.get("/health").status_code == 200
            latencies.append(time.perf_counter() - s)
    stop.set()
    flooder.join(30)
    latencies.sort()
    p90, worst = latencies[len(latencies) * 9 // 10], latencies[-1]
    assert p90 < 0.1 and worst < 1.0, f"p90 {p90 * 1000:.0f} ms, max {worst * 1000:.0f} ms"
    # Closed with 1008, or dropped when it did not read the close frame within a second.
    assert outcome.get("closed") in (1008, "dropped"), outcome
