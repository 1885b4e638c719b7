"""Helpers for the remote engine's tests: a real ``wan serve --mock`` subprocess and a
``RemoteEngine`` connected to it, both stopped by the test that started them."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.api_helpers import WanServe
from wan_desktop.remote import RemoteEngine

TOKEN = "remote-test-token-0123456789"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def serve(root: Path, *args: str, port: int | None = None) -> WanServe:
    """``wan serve --mock`` for ``root`` (its data and models folders), requiring ``TOKEN``."""
    extra = ("--port", str(port)) if port else ()
    return WanServe(root, *extra, *args, env={"WAN_API_TOKEN": TOKEN})


def wait_for(predicate: Any, timeout: float = 60.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what or predicate}"
        time.sleep(0.05)


@contextmanager
def remote_engine(
    server: WanServe, data_dir: Path, *, url: str | None = None, **kwargs: Any
) -> Iterator[RemoteEngine]:
    engine = RemoteEngine(url or server.url, TOKEN, data_dir=data_dir, **kwargs)
    try:
        wait_for(lambda: engine.link == "up", 30, "the event stream")
        yield engine
    finally:
        engine.shutdown()


@contextmanager
def not_wan_server() -> Iterator[str]:
    """An HTTP server on loopback that answers every request with a web page (not wan serve)."""

    class Page(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"<html><body>router admin</body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_a: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(10)


class CuttingRelay:
    """A TCP relay on loopback to ``target_port`` that cuts the first connection carrying a
    request for ``marker`` once ``cut_after`` bytes of the answer went through, and that can
    go silent (``frozen``) without closing anything."""

    def __init__(self, target_port: int, marker: bytes, cut_after: int) -> None:
        self.target_port = target_port
        self.marker = marker
        self.cut_after = cut_after
        self.cuts = 0
        self.frozen = False  # True: bytes are swallowed both ways, connections stay open
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._socks: list[socket.socket] = []
        self._accept = threading.Thread(target=self._serve, daemon=True)
        self._accept.start()

    def _serve(self) -> None:
        self._listener.settimeout(0.2)
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            self._socks += [client, upstream]
            state = {"armed": False, "sent": 0}
            for src, dst, up in ((client, upstream, True), (upstream, client, False)):
                t = threading.Thread(target=self._pipe, args=(src, dst, up, state), daemon=True)
                t.start()
                self._threads.append(t)

    def _pipe(
        self, src: socket.socket, dst: socket.socket, up: bool, state: dict[str, Any]
    ) -> None:
        try:
            while data := src.recv(65536):
                if self.frozen:
                    continue  # a dead link that nobody closed (a sleeping router, say)
                if up and self.marker in data and self.cuts == 0:
                    state["armed"] = True
                if not up and state["armed"]:
                    room = self.cut_after - state["sent"]
                    if len(data) >= room:
                        dst.sendall(data[:room])
                        self.cuts += 1
                        state["armed"] = False
                        raise OSError("cut")
                    state["sent"] += len(data)
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            with suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def close(self) -> None:
        self._stop.set()
        self._listener.close()
        for s in self._socks:
            with suppress(OSError):
                s.close()
        self._accept.join(5)
