"""``local://<folder>``: a folder on this machine or a mounted share.

The folder can be another Wan Desktop models folder (its completion marker supplies sizes and
hashes), a ``hf download --local-dir`` snapshot (the Hub's cache metadata supplies the LFS
hashes), or any folder with the model's files (sizes only; hashes are computed while copying).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import SourceError
from ..marker import file_hashes
from ..paths import COMPLETE_MARKER, check_relative_path
from .base import CHUNK_BYTES, FileSink, RemoteFile, Source

_SHA256_LEN = 64


@dataclass
class LocalSource(Source):
    scheme = "local"

    @property
    def folder(self) -> Path:
        return Path(self.uri.removeprefix("local://")).expanduser()

    def list_files(self) -> list[RemoteFile]:
        folder = self.folder
        if not folder.is_dir():
            raise SourceError(
                f"local folder {folder} does not exist",
                fix="mount the share or fix the path, or let the next source download it",
            )
        known = _marker_hashes(folder) or _hf_cache_hashes(folder)
        files: list[RemoteFile] = []
        for path in sorted(folder.rglob("*")):
            if not path.is_file():
                continue
            rel = path.relative_to(folder).as_posix()
            if rel.startswith(".") or "/." in rel:
                continue  # markers, caches, hidden files
            check_relative_path(rel, where=f"in {folder}")
            size = path.stat().st_size
            meta = known.get(rel)
            sha = meta[1] if meta and meta[0] in (None, size) else None
            files.append(RemoteFile(path=rel, size=size, sha256=sha, ref=str(path)))
        if not files:
            raise SourceError(
                f"local folder {folder} is empty", fix="point the source at the model's folder"
            )
        return files

    def fetch(self, file: RemoteFile, sink: FileSink) -> None:
        src = Path(file.ref)

        def read_failed(exc: OSError) -> SourceError:
            return SourceError(
                f"reading {src} failed: {exc.strerror or exc}",
                fix="check the disk or share and try again",
            )

        try:
            fh = src.open("rb")
        except OSError as exc:
            raise read_failed(exc) from exc
        with fh:
            while True:
                try:
                    fh.seek(sink.offset)
                    chunk = fh.read(CHUNK_BYTES)
                except OSError as exc:
                    raise read_failed(exc) from exc
                if not chunk:
                    break
                # A failed write (the models folder's disk is full) is not this source's fault:
                # it goes up as it is, for the store to tell.
                sink.write(chunk)


def _marker_hashes(folder: Path) -> dict[str, tuple[int | None, str]]:
    try:
        return file_hashes(json.loads((folder / COMPLETE_MARKER).read_text("utf-8")))
    except (OSError, ValueError):
        return {}


def _hf_cache_hashes(folder: Path) -> dict[str, tuple[int | None, str]]:
    """Read ``.cache/huggingface/download/<path>.metadata``: commit, etag, timestamp lines.

    For LFS files the etag is the file's sha256; for small git files it is a git hash, which we
    ignore (it is not 64 hex digits).
    """
    base = folder / ".cache" / "huggingface" / "download"
    if not base.is_dir():
        return {}
    out: dict[str, tuple[int | None, str]] = {}
    for meta in base.rglob("*.metadata"):
        try:
            lines = meta.read_text("utf-8").splitlines()
        except OSError:
            continue
        if len(lines) < 2:
            continue
        etag = lines[1].strip().strip('"').lower()
        if len(etag) == _SHA256_LEN and all(c in "0123456789abcdef" for c in etag):
            rel = os.path.relpath(meta, base)[: -len(".metadata")].replace(os.sep, "/")
            out[rel] = (None, etag)
    return out
