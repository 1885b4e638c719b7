"""A Hugging Face Hub-compatible HTTP server on 127.0.0.1, with a request log and fault injection.

It speaks what ``huggingface_hub.snapshot_download`` and our ``hf://`` source use:

- ``GET /api/models/{repo}/revision/{rev}`` → ``{"id", "sha", "siblings", …}``
- ``GET /api/models/{repo}/tree/{rev}?recursive=true`` → entries, paged with ``Link: rel="next"``
  (LFS entries carry ``lfs.oid`` = sha256 and ``lfs.size``)
- ``HEAD|GET /{repo}/resolve/{rev}/{path}`` with ``Range``; ``X-Repo-Commit``, ``ETag`` and, for
  LFS files, ``X-Linked-Etag``/``X-Linked-Size``. LFS files may redirect to a signed "CDN" URL.
- tokens (``Authorization: Bearer``), private repos (401) and gated repos (403 ``GatedRepo``).

It never sends ``xetHash`` or ``X-Xet-Hash``, so clients take the plain HTTP path. File bodies come
from memory, from a file on disk (``sendfile``) or from a pattern generated on the fly (multi-GB
files that occupy no disk on the server side).
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import json
import os
import random
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

PAGE_SIZE = 20
CDN_SIGNATURE = "cdnsig-6f1d0c9a7be24e3f8d51"  # a "secret" query parameter of redirect URLs


# --------------------------------------------------------------------------------- contents


class Content:
    size: int

    def chunks(self, start: int, end: int) -> Iterator[memoryview]:
        raise NotImplementedError

    def sha256(self) -> str:
        h = hashlib.sha256()
        for c in self.chunks(0, self.size):
            h.update(c)
        return h.hexdigest()

    def read(self, start: int, end: int) -> bytes:
        return b"".join(bytes(c) for c in self.chunks(start, end))


@dataclass
class BytesContent(Content):
    data: bytes

    @property
    def size(self) -> int:  # type: ignore[override]
        return len(self.data)

    def chunks(self, start: int, end: int) -> Iterator[memoryview]:
        yield memoryview(self.data)[start:end]


@dataclass
class DiskContent(Content):
    path: Path

    @property
    def size(self) -> int:  # type: ignore[override]
        return self.path.stat().st_size

    def chunks(self, start: int, end: int) -> Iterator[memoryview]:
        with self.path.open("rb") as fh:
            fh.seek(start)
            left = end - start
            while left > 0:
                data = fh.read(min(1 << 20, left))
                if not data:
                    return
                left -= len(data)
                yield memoryview(data)


@lru_cache(maxsize=8)
def _block(seed: int, period: int) -> memoryview:
    rng = random.Random(seed)
    data = rng.randbytes(period)
    return memoryview(data + data)  # doubled so any window of `period` bytes is one slice


@lru_cache(maxsize=16)
def _pattern_sha256(size: int, seed: int, period: int) -> str:
    return PatternContent(size, seed, period)._hash()


@dataclass
class PatternContent(Content):
    """``size`` bytes of a repeating random block: served on the fly, never stored."""

    size: int
    seed: int = 0
    period: int = (1 << 20) + 13  # not a power of two: parts never line up with the block

    def chunks(self, start: int, end: int) -> Iterator[memoryview]:
        block = _block(self.seed, self.period)
        pos = start
        while pos < end:
            off = pos % self.period
            n = min(self.period, end - pos)
            yield block[off : off + n]
            pos += n

    def _hash(self) -> str:
        return Content.sha256(self)

    def first_difference(self, path: Path) -> int | None:
        """Where ``path`` first differs from this content (None: identical), read once: a
        byte-for-byte check far cheaper than sha256 (one block compared ``size / period`` times).
        """
        block = _block(self.seed, self.period)
        whole = bytes(block[: self.period])
        buf = bytearray(self.period)
        pos = 0
        with path.open("rb", buffering=0) as fh:
            while pos < self.size:
                want = min(self.period, self.size - pos)
                n = fh.readinto(memoryview(buf)[:want])
                if n < want:
                    return pos + n
                if (buf != whole) if want == self.period else (buf[:want] != whole[:want]):
                    return pos + next(i for i in range(want) if buf[i] != whole[i])
                pos += want
            return None if fh.read(1) == b"" else pos

    def sha256(self) -> str:
        return _pattern_sha256(self.size, self.seed, self.period)


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


@dataclass
class HubFile:
    path: str
    content: Content
    lfs: bool

    _sha: str | None = None

    @property
    def sha256(self) -> str:
        if self._sha is None:
            self._sha = self.content.sha256()
        return self._sha

    def oid(self) -> str:
        if self.lfs:
            return hashlib.sha1(self.sha256.encode(), usedforsecurity=False).hexdigest()
        return git_blob_sha1(self.content.read(0, self.content.size))


@dataclass
class HubRepo:
    repo_id: str
    files: dict[str, HubFile]
    sha: str = field(default_factory=lambda: os.urandom(20).hex())
    private: bool = False
    gated: bool = False
    revisions: tuple[str, ...] = ("main",)

    def add(self, path: str, content: Content | bytes, *, lfs: bool | None = None) -> HubFile:
        c = BytesContent(content) if isinstance(content, bytes) else content
        f = HubFile(path, c, lfs=c.size > 10_000 if lfs is None else lfs)
        self.files[path] = f
        return f


# ----------------------------------------------------------------------------------- faults


@dataclass
class Fault:
    """Applied to the next ``times`` GETs of file bodies whose path matches ``pattern``.

    kinds: ``drop`` (close the connection mid-body), ``500``, ``429`` (with ``Retry-After``),
    ``truncate`` (a well-formed but short body), ``wrong`` (flipped bytes), ``stall`` (stop
    sending for ``seconds``, then close), ``slow`` (trickle ``trickle_bps`` bytes a second for
    ``seconds``, then close: never silent long enough for a read timeout).
    """

    kind: str
    pattern: str = "*"
    times: int = 1
    seconds: float = 5.0
    retry_after: float = 1.0
    after_bytes: int = 100_000  # where drop/truncate/stall/wrong/slow strike within the body
    trickle_bps: int = 200


@dataclass
class LoggedRequest:
    method: str
    path: str
    status: int
    start: int | None = None
    end: int | None = None  # exclusive
    sent: int = 0
    pid_hint: str | None = None
    authorized: bool = False


# ----------------------------------------------------------------------------------- server


class HubServer:
    """``tls``: a server-side context to speak HTTPS (its certificate is the test's to trust)."""

    def __init__(self, *, redirect_lfs: bool = False, tls: ssl.SSLContext | None = None) -> None:
        self.repos: dict[str, HubRepo] = {}
        self.tokens: set[str] = set()
        self.faults: list[Fault] = []
        self.log: list[LoggedRequest] = []
        self.redirect_lfs = redirect_lfs
        self.rate_bps: float | None = None  # per-response throttle
        self.active = 0  # connections being served
        self._lock = threading.Lock()
        handler = type("Handler", (_Handler,), {"hub": self})
        self.httpd = _QuietServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        # Links the server writes (next page, CDN redirects) use `url`: a test may rename it.
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def start(self) -> HubServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(5)

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def add_repo(self, repo_id: str, **kw: Any) -> HubRepo:
        repo = HubRepo(repo_id, {}, **kw)
        self.repos[repo_id] = repo
        return repo

    def add_fault(self, kind: str, pattern: str = "*", **kw: Any) -> Fault:
        f = Fault(kind, pattern, **kw)
        with self._lock:
            self.faults.append(f)
        return f

    def take_fault(self, path: str) -> Fault | None:
        with self._lock:
            for f in self.faults:
                if f.times > 0 and fnmatch.fnmatchcase(path, f.pattern):
                    f.times -= 1
                    return f
        return None

    def record(self, entry: LoggedRequest) -> None:
        with self._lock:
            self.log.append(entry)

    def body_requests(self, path: str | None = None) -> list[LoggedRequest]:
        """GETs of file bytes (resolve or CDN), optionally for one file."""
        with self._lock:
            return [
                r
                for r in self.log
                if r.method == "GET"
                and r.start is not None
                and (path is None or r.path.endswith("/" + path))
            ]

    def bytes_sent(self, path: str | None = None) -> int:
        return sum(r.sent for r in self.body_requests(path))

    def wait_idle(self, timeout: float = 30.0) -> None:
        """Until no connection is being served (a killed client's requests are all logged)."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                if self.active == 0:
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.active} connections still open after {timeout} s")
            time.sleep(0.01)

    def clear_log(self) -> None:
        with self._lock:
            self.log.clear()


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients killed mid-request (the kill tests) are expected; anything else is shown.
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    hub: HubServer
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out at once, no 40 ms delayed-ACK stall

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def handle(self) -> None:
        with self.hub._lock:
            self.hub.active += 1
        try:
            super().handle()
        finally:
            with self.hub._lock:
                self.hub.active -= 1

    # --------------------------------------------------------------------------- plumbing

    def _send_json(self, status: int, doc: Any, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)
        self.hub.record(LoggedRequest(self.command, self.path.split("?")[0], status))

    def _error(self, status: int, code: str, message: str, **headers: str) -> None:
        self._send_json(
            status,
            {"error": message},
            {"X-Error-Code": code, "X-Error-Message": message, **headers},
        )

    def _authorized(self, repo: HubRepo) -> bool | None:
        """True: may read; None: answered with an error already."""
        auth = self.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ").strip() if auth.startswith("Bearer ") else None
        if token is not None and token not in self.hub.tokens:
            self._error(401, "InvalidCredentials", "Invalid credentials in Authorization header")
            return None
        if repo.private and token is None:
            self._error(401, "RepoNotFound", "Repository Not Found")
            return None
        if repo.gated and token is None:
            self._error(
                403,
                "GatedRepo",
                f"Access to model {repo.repo_id} is restricted. You must have access to it and "
                "be authenticated to access it. Please log in.",
            )
            return None
        return True

    def _repo(self, repo_id: str) -> HubRepo | None:
        repo = self.hub.repos.get(repo_id)
        if repo is None:
            # As the Hub: a logged-in user learns the repository does not exist (404); to anyone
            # else it may as well be private (401).
            auth = self.headers.get("Authorization", "")
            known = auth.removeprefix("Bearer ").strip() in self.hub.tokens
            self._error(404 if known else 401, "RepoNotFound", "Repository Not Found")
        return repo

    # ----------------------------------------------------------------------------- routes

    def do_GET(self) -> None:
        self._route()

    def do_HEAD(self) -> None:
        self._route()

    def _route(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        path = urllib.parse.unquote(url.path)
        query = urllib.parse.parse_qs(url.query)
        try:
            if path.startswith("/api/models/"):
                rest = path.removeprefix("/api/models/")
                if "/revision/" in rest:
                    repo_id, rev = rest.split("/revision/", 1)
                    return self._revision(repo_id, rev)
                if "/tree/" in rest:
                    repo_id, tail = rest.split("/tree/", 1)
                    rev = tail.split("/", 1)[0]
                    return self._tree(repo_id, rev, query)
                return self._error(404, "EntryNotFound", "no such API route")
            if path.startswith("/cdn/"):
                return self._cdn(path, query)
            if "/resolve/" in path:
                repo_id, tail = path.lstrip("/").split("/resolve/", 1)
                rev, _, file_path = tail.partition("/")
                return self._resolve(repo_id, rev, file_path)
            self._error(404, "EntryNotFound", "not found")
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _revision(self, repo_id: str, rev: str) -> None:
        repo = self._repo(repo_id)
        if repo is None or not self._authorized(repo):
            return None
        if rev not in (*repo.revisions, repo.sha):
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
        self._send_json(
            200,
            {
                "id": repo.repo_id,
                "modelId": repo.repo_id,
                "sha": repo.sha,
                "private": repo.private,
                "gated": "manual" if repo.gated else False,
                "siblings": [{"rfilename": p} for p in sorted(repo.files)],
            },
        )
        return None

    def _tree(self, repo_id: str, rev: str, query: dict[str, list[str]]) -> None:
        repo = self._repo(repo_id)
        if repo is None or not self._authorized(repo):
            return None
        if rev not in (*repo.revisions, repo.sha):
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
        entries: list[dict[str, Any]] = []
        dirs = sorted({p.rsplit("/", 1)[0] for p in repo.files if "/" in p})
        for d in dirs:
            entries.append({"type": "directory", "oid": "0" * 40, "size": 0, "path": d})
        for p in sorted(repo.files):
            f = repo.files[p]
            e: dict[str, Any] = {"type": "file", "oid": f.oid(), "size": f.content.size, "path": p}
            if f.lfs:
                e["lfs"] = {"oid": f.sha256, "size": f.content.size, "pointerSize": 134}
            entries.append(e)
        cursor = int(query.get("cursor", ["0"])[0])
        page = entries[cursor : cursor + PAGE_SIZE]
        headers = {}
        if cursor + PAGE_SIZE < len(entries):
            nxt = f"{self.hub.url}/api/models/{repo_id}/tree/{rev}?recursive=true&cursor="
            headers["Link"] = f'<{nxt}{cursor + PAGE_SIZE}>; rel="next"'
        self._send_json(200, page, headers)
        return None

    def _file_headers(self, repo: HubRepo, f: HubFile) -> dict[str, str]:
        h = {"X-Repo-Commit": repo.sha, "Accept-Ranges": "bytes"}
        if f.lfs:
            h["ETag"] = f'"{f.sha256}"'
            h["X-Linked-Etag"] = f'"{f.sha256}"'
            h["X-Linked-Size"] = str(f.content.size)
        else:
            h["ETag"] = f'"{f.oid()}"'
        return h

    def _resolve(self, repo_id: str, rev: str, file_path: str) -> None:
        repo = self._repo(repo_id)
        if repo is None or not self._authorized(repo):
            return None
        if rev not in (*repo.revisions, repo.sha):
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
        f = repo.files.get(file_path)
        if f is None:
            return self._error(404, "EntryNotFound", f"{file_path} does not exist")
        headers = self._file_headers(repo, f)
        if f.lfs and self.hub.redirect_lfs:
            location = f"{self.hub.url}/cdn/{repo_id}/{file_path}?X-Amz-Signature={CDN_SIGNATURE}"
            self.send_response(302)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Location", location)
            self.send_header("Content-Length", "0")
            self.end_headers()
            self.hub.record(LoggedRequest(self.command, self.path.split("?")[0], 302))
            return None
        self._body(f, headers)
        return None

    def _cdn(self, path: str, query: dict[str, list[str]]) -> None:
        if query.get("X-Amz-Signature") != [CDN_SIGNATURE]:
            return self._error(403, "SignatureDoesNotMatch", "bad signature")
        repo_id_and_path = path.removeprefix("/cdn/")
        for repo in self.hub.repos.values():
            prefix = repo.repo_id + "/"
            if repo_id_and_path.startswith(prefix):
                f = repo.files.get(repo_id_and_path.removeprefix(prefix))
                if f is not None:
                    return self._body(f, {"ETag": f'"{f.sha256}"', "Accept-Ranges": "bytes"})
        self._error(404, "EntryNotFound", "not found")
        return None

    # ---------------------------------------------------------------------------------- bodies

    def _range(self, size: int) -> tuple[int, int] | bool | None:
        """(start, end exclusive); None: no Range header; False: unsatisfiable (416 sent)."""
        header = self.headers.get("Range")
        if not header:
            return None
        spec = header.strip().removeprefix("bytes=")
        first, _, last = spec.partition("-")
        if first == "":
            start, end = max(0, size - int(last)), size
        else:
            start = int(first)
            end = min(size, int(last) + 1) if last else size
        if start >= size or start >= end:
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{size}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            self.hub.record(LoggedRequest(self.command, self.path.split("?")[0], 416))
            return False
        return start, end

    def _body(self, f: HubFile, headers: dict[str, str]) -> None:
        size = f.content.size
        rng = self._range(size)
        if rng is False:
            return None
        fault = self.hub.take_fault(f.path) if self.command == "GET" else None
        if fault is not None and fault.kind in ("500", "429"):
            status = int(fault.kind)
            extra = {"Retry-After": f"{fault.retry_after:g}"} if status == 429 else {}
            return self._error(status, "Fault", f"injected {status}", **extra)
        start, end = rng if isinstance(rng, tuple) else (0, size)
        status = 206 if rng else 200
        length = end - start
        declared = length
        if fault is not None and fault.kind == "truncate":
            declared = min(length, fault.after_bytes)
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(declared))
        if rng:
            self.send_header("Content-Range", f"bytes {start}-{start + declared - 1}/{size}")
        self.end_headers()
        entry = LoggedRequest(
            self.command,
            self.path.split("?")[0],
            status,
            start,
            end,
            authorized="Authorization" in self.headers,
        )
        self.hub.record(entry)
        if self.command == "HEAD":
            return None
        if fault is not None and fault.kind == "truncate":
            end = start + declared
        limit = end
        if fault is not None and fault.kind in ("drop", "stall", "slow"):
            limit = min(end, start + fault.after_bytes)
        t0 = time.monotonic()
        pos = start
        try:
            if isinstance(f.content, DiskContent) and fault is None and self.hub.rate_bps is None:
                self.wfile.flush()
                with f.content.path.open("rb") as fh:
                    while pos < limit:
                        n = os.sendfile(self.connection.fileno(), fh.fileno(), pos, limit - pos)
                        if n == 0:
                            break
                        pos += n
                        entry.sent += n
            else:
                for chunk in f.content.chunks(start, limit):
                    for i in range(0, len(chunk), 256 * 1024):
                        piece = chunk[i : i + 256 * 1024]
                        if fault is not None and fault.kind == "wrong":
                            piece = _flip(piece, start + fault.after_bytes - pos)
                        self.wfile.write(piece)
                        pos += len(piece)
                        entry.sent += len(piece)
                        if self.hub.rate_bps:
                            ahead = (pos - start) / self.hub.rate_bps - (time.monotonic() - t0)
                            if ahead > 0:
                                time.sleep(ahead)
            if fault is not None and fault.kind == "slow":
                self._trickle(f, pos, end, fault, entry)
        except (BrokenPipeError, ConnectionResetError):
            return None
        if fault is not None and fault.kind == "stall":
            time.sleep(fault.seconds)
        if fault is not None and fault.kind in ("drop", "stall", "slow"):
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
        return None

    def _trickle(self, f: HubFile, pos: int, end: int, fault: Fault, entry: LoggedRequest) -> None:
        """A few bytes every 0.1 s: the connection is alive but the body crawls."""
        step = max(1, fault.trickle_bps // 10)
        deadline = time.monotonic() + fault.seconds
        while pos < end and time.monotonic() < deadline:
            piece = f.content.read(pos, min(end, pos + step))
            self.wfile.write(piece)
            self.wfile.flush()
            pos += len(piece)
            entry.sent += len(piece)
            time.sleep(0.1)


def _flip(piece: memoryview, at: int) -> memoryview:
    if not 0 <= at < len(piece):
        return piece
    data = bytearray(piece)
    data[at] ^= 0xFF
    return memoryview(bytes(data))
