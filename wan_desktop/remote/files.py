"""Files to and from a server: content-addressed uploads, and results kept in a local cache.

Uploads (images, LoRAs picked on this computer) are named by their sha256: the client asks the
server whether it has the bytes (HEAD) and sends them (PUT) only if not, so the same file goes
over the wire once. Results (videos, thumbnails, subtitles, sidecars) are downloaded into a
per-server cache folder under the app's data folder with HTTP Range: a dropped transfer resumes
where it stopped (``If-Range`` with the server's ETag makes sure the bytes are the same file's).
The cache is bounded; the least recently used jobs' files go first.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from wan_desktop.models.retry import Backoff

from .errors import RemoteCommandError, ServerUnreachableError
from .http import Http

log = logging.getLogger("wan_desktop.remote")

CHUNK = 1024 * 1024
DEFAULT_CACHE_BYTES = 20 * 1024**3
RESUME = Backoff(tries=6, base_s=0.5, max_s=8.0)
BLOB_PREFIX = "blob:sha256:"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _chunks(path: Path) -> Iterator[bytes]:
    """A file's bytes a chunk at a time (a LoRA of hundreds of MB is never held whole)."""
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            yield chunk


class Uploads:
    """Local files → ``blob:sha256:…`` refs on the server, each sent at most once."""

    def __init__(self, http: Http) -> None:
        self.http = http
        self._known: dict[tuple[str, int, int], str] = {}  # (path, size, mtime) → sha256
        self._gates: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()
        self.sent = 0  # uploads that carried bytes (for tests and the log)

    def ref(self, path: str | Path) -> str:
        """The server's ref for this file's bytes, uploading them if it has none."""
        p = Path(path)
        st = p.stat()
        key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
        with self._lock:
            digest = self._known.get(key)
        if digest is None:
            digest = sha256_file(p)
            with self._lock:
                self._known[key] = digest
        # One upload of these bytes at a time: a second asker waits, then finds them there.
        with self._lock:
            gate = self._gates.setdefault(digest, threading.Lock())
        with gate:
            try:
                self.http.request("HEAD", f"/blobs/{digest}")
                return BLOB_PREFIX + digest
            except RemoteCommandError as exc:
                if exc.status != 404:
                    raise
            headers = {"Content-Length": str(st.st_size)}
            body = self.http.request(
                "PUT", f"/blobs/{digest}", content=_chunks(p), headers=headers
            ).json()
            self.sent += 1
        return str(body.get("ref") or BLOB_PREFIX + digest)


class ResultCache:
    """A job's result files, downloaded once into ``root/<job id>/``; bounded by ``max_bytes``."""

    def __init__(self, root: Path, http: Http, *, max_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        self.root = root
        self.http = http
        self.max_bytes = max_bytes
        self.root.mkdir(parents=True, exist_ok=True)
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self.resumed = 0  # downloads that continued a partial file

    def path(self, job_id: str, what: str, remote_path: str) -> Path:
        suffix = Path(remote_path).suffix
        return self.root / job_id / f"{what}{suffix}"

    def has(self, job_id: str, what: str, remote_path: str) -> bool:
        return self.path(job_id, what, remote_path).is_file()

    def fetch(self, job_id: str, what: str, remote_path: str) -> Path:
        """The local copy of a job's file (``what``: video, thumbnail, subtitles, sidecar)."""
        target = self.path(job_id, what, remote_path)
        with self._guard:
            lock = self._locks.setdefault(str(target), threading.Lock())
        with lock:
            if target.is_file():
                os.utime(target.parent)  # used now: evicted last
                return target
            target.parent.mkdir(parents=True, exist_ok=True)
            failures = 0
            while True:
                try:
                    self._download(job_id, what, target)
                    break
                except (httpx.TransportError, ServerUnreachableError) as exc:
                    failures += 1
                    if failures >= RESUME.tries:
                        raise
                    log.info("download of %s %s dropped (%s): resuming", job_id, what, exc)
                    time.sleep(RESUME.delay(failures))
        self.evict(keep=job_id)
        return target

    def _download(self, job_id: str, what: str, target: Path) -> None:
        part = target.with_name(target.name + ".part")
        tag_file = target.with_name(target.name + ".etag")
        have = part.stat().st_size if part.is_file() else 0
        etag = tag_file.read_text() if have and tag_file.is_file() else None
        headers = {"Range": f"bytes={have}-", "If-Range": etag} if have and etag else {}
        if have and not etag:
            have = 0
        url = f"/jobs/{job_id}/files/{what}"
        with self.http.client.stream("GET", url, headers=headers) as r:
            if r.status_code == 416:  # the partial file is bigger than the file: start again
                part.unlink(missing_ok=True)
                raise httpx.RemoteProtocolError("the partial download did not match")
            if r.status_code >= 400:
                r.read()
                raise self.http.error(r, url)
            resumed = r.status_code == 206
            if resumed:
                self.resumed += 1
            if r.headers.get("etag"):
                tag_file.write_text(r.headers["etag"])
            with part.open("ab" if resumed else "wb") as f:
                for chunk in r.iter_bytes():  # as they come: a cut keeps what arrived
                    f.write(chunk)
            expected = r.headers.get("content-range", "").rpartition("/")[2]
            size = part.stat().st_size
            if expected.isdigit() and size != int(expected):
                raise httpx.RemoteProtocolError(f"got {size} of {expected} bytes")
        part.replace(target)
        tag_file.unlink(missing_ok=True)

    def evict(self, keep: str | None = None) -> int:
        """Remove the least recently used jobs' files until the cache fits; returns bytes freed."""
        folders = []
        total = 0
        for d in self.root.iterdir():
            if not d.is_dir():
                continue
            size = sum(f.stat().st_size for f in d.iterdir() if f.is_file())
            folders.append((d.stat().st_mtime, d, size))
            total += size
        freed = 0
        for _mtime, d, size in sorted(folders, key=lambda t: t[0]):
            if total - freed <= self.max_bytes:
                break
            if d.name == keep:
                continue
            shutil.rmtree(d, ignore_errors=True)
            freed += size
        return freed
