"""Helpers for the remote engine's tests: a real ``wan serve --mock`` subprocess and a
``RemoteEngine`` connected to it, both stopped by the test that started them."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
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
