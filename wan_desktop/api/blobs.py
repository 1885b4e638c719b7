"""Content-addressed uploads for remote clients: a file is named by its sha256 and sent once.

A client asks ``HEAD /engine/blobs/{sha256}`` and uploads with ``PUT`` only what the server does
not have; the server hashes what arrives, refuses a body whose hash is not its name, and stores it
atomically (``models/atomic.py``) under ``<data>/blobs/``. A job's ``image``, ``end_image`` and
LoRA paths may then be ``blob:sha256:<hex>`` references, resolved here to the stored file before
the pipeline validates them.

The folder is bounded: past ``max_total`` bytes the least recently used blobs are removed, except
those an unfinished job still refers to (a queued job never loses its input).
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from collections.abc import AsyncIterator, Iterable, Mapping
from pathlib import Path
from typing import Any

from wan_desktop.engine import InvalidInputError
from wan_desktop.models.atomic import atomic_path

REF_PREFIX = "blob:sha256:"
HEX = re.compile(r"^[0-9a-f]{64}$")
# Parameters that name an input file (the LoRAs' paths are inside ``loras``).
FILE_PARAMS = ("image", "end_image")


class BlobError(Exception):
    """An upload the store refuses: ``status`` is the HTTP answer, the message says what to do."""

    def __init__(self, status: int, message: str, code: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def check_digest(digest: str) -> str:
    if not HEX.match(digest):
        raise BlobError(
            422, f"{digest[:80]!r} is not a sha256 digest: give 64 lowercase hex digits", "bad_hash"
        )
    return digest


def ref_of(digest: str) -> str:
    return f"{REF_PREFIX}{digest}"


class BlobStore:
    def __init__(self, folder: Path, *, max_blob: int, max_total: int) -> None:
        self.folder = folder
        self.max_blob = max_blob
        self.max_total = max_total
        self._lock = threading.Lock()

    def path(self, digest: str) -> Path:
        return self.folder / check_digest(digest)

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    async def put(
        self, digest: str, chunks: AsyncIterator[bytes], *, declared: int | None = None
    ) -> tuple[Path, bool]:
        """Store the body ``chunks`` as ``digest``; (path, whether it was new)."""
        from starlette.concurrency import run_in_threadpool

        dest = self.path(digest)
        if declared is not None and declared > self.max_blob:
            raise self._too_large()
        if dest.is_file():
            async for _ in chunks:  # the client sent it anyway: read and drop it
                pass
            os.utime(dest)
            return dest, False
        self.folder.mkdir(parents=True, exist_ok=True)
        h = hashlib.sha256()
        size = 0
        with atomic_path(dest) as tmp:
            with tmp.open("wb") as out:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > self.max_blob:
                        raise self._too_large()
                    h.update(chunk)
                    await run_in_threadpool(out.write, chunk)
            if h.hexdigest() != digest:
                raise BlobError(
                    422,
                    f"the upload's sha256 is {h.hexdigest()}, not {digest}: it was damaged on "
                    "the way or named wrongly; hash the file again and resend it",
                    "hash_mismatch",
                )
        return dest, True

    def _too_large(self) -> BlobError:
        from wan_desktop.models.settings import format_size

        return BlobError(
            413,
            f"the upload is over {format_size(self.max_blob)}, the largest file a job takes; "
            "send a smaller file",
            "too_large",
        )

    def evict(self, keep: Iterable[str] = ()) -> list[str]:
        """Remove the least recently used blobs until the folder is within ``max_total``;
        never those in ``keep`` (paths an unfinished job uses). The digests removed."""
        kept = {str(Path(p).resolve()) for p in keep}
        with self._lock:
            try:
                entries = [
                    (e.stat().st_mtime, e.stat().st_size, Path(e.path))
                    for e in os.scandir(self.folder)
                    if e.is_file() and HEX.match(e.name)
                ]
            except FileNotFoundError:
                return []
            total = sum(size for _, size, _ in entries)
            removed: list[str] = []
            for _, size, path in sorted(entries):
                if total <= self.max_total:
                    break
                if str(path.resolve()) in kept:
                    continue
                path.unlink(missing_ok=True)
                total -= size
                removed.append(path.name)
            return removed

    # ------------------------------------------------------------------ job parameters

    def resolve(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """``params`` with every ``blob:sha256:`` reference replaced by the stored file's path;
        InvalidInputError naming each reference the server does not hold."""
        out = dict(params)
        errors: dict[str, str] = {}
        for name in FILE_PARAMS:
            if isinstance(out.get(name), str) and out[name].startswith(REF_PREFIX):
                out[name] = self._file(out[name], name, errors)
        loras = out.get("loras")
        if isinstance(loras, list | tuple):
            resolved: list[Any] = []
            for i, item in enumerate(loras):
                field = f"loras[{i}]"
                if isinstance(item, str) and item.startswith(REF_PREFIX):
                    resolved.append(self._file(item, field, errors))
                elif isinstance(item, Mapping) and str(item.get("path", "")).startswith(REF_PREFIX):
                    resolved.append({**item, "path": self._file(str(item["path"]), field, errors)})
                else:
                    resolved.append(item)
            out["loras"] = resolved
        if errors:
            raise InvalidInputError(errors)
        return out

    def _file(self, ref: str, field: str, errors: dict[str, str]) -> str:
        digest = ref.removeprefix(REF_PREFIX)
        if not HEX.match(digest):
            errors[field] = f"{ref[:90]!r} is not a blob reference: blob:sha256:<64 hex digits>"
            return ref
        path = self.folder / digest
        if not path.is_file():
            errors[field] = (
                f"the server does not hold {ref} (uploaded elsewhere, or removed to make room): "
                "upload the file again (PUT /api/v1/engine/blobs/<sha256>)"
            )
            return ref
        os.utime(path)  # used: the last to be evicted
        return str(path)
