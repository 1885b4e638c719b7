"""``wan models lock ID``: record a variant's files (path, size, sha256) in ``models.toml``.

Sizes and hashes come from the first source that answers (the Hub's LFS sha256, an S3 marker or
metadata, a mirror's completion marker). A file the source publishes no sha256 for (the Hub's
small git files, a plain S3 object) is streamed once through sha256, never stored. The manifest
is edited with tomlkit, so its comments and layout stay as they were; only the variant's
``files`` array is replaced.
"""

from __future__ import annotations

import hashlib
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import sources as _sources
from .atomic import atomic_path
from .errors import AllSourcesFailedError, ModelError, SourceAttempt
from .signing import signature_path
from .sources import RemoteFile, Source

if TYPE_CHECKING:
    from .store import ModelStore


@dataclass(frozen=True)
class LockedFile:
    path: str
    size: int
    sha256: str
    component: str | None
    hashed_here: bool  # the source published no sha256; it was computed by streaming the file

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "size": self.size,
            "sha256": self.sha256,
            "component": self.component,
            "hashed_here": self.hashed_here,
        }


@dataclass(frozen=True)
class LockResult:
    model_id: str
    variant: str
    source: str
    manifest: Path
    files: tuple[LockedFile, ...]
    written: bool
    signature_stale: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_id": self.model_id,
            "variant": self.variant,
            "source": self.source,
            "manifest": str(self.manifest),
            "written": self.written,
            "signature_stale": self.signature_stale,
            "files": [f.to_dict() for f in self.files],
        }


class _HashSink:
    """Enough of a sink for ``fetch``: hashes, stores nothing."""

    def __init__(self) -> None:
        self.hash = hashlib.sha256()
        self.offset = 0

    def write(self, data: bytes | memoryview) -> None:
        self.hash.update(data)
        self.offset += len(data)

    def truncate(self) -> None:
        self.hash = hashlib.sha256()
        self.offset = 0


def _hash_remote(source: Source, f: RemoteFile) -> tuple[int, str]:
    sink = _HashSink()
    source.fetch(f, sink)  # type: ignore[arg-type]  # resumes at sink.offset after a failure
    return sink.offset, sink.hash.hexdigest()


def lock_model(
    store: ModelStore,
    model_id: str,
    variant: str | None = None,
    *,
    source_uri: str | None = None,
    dry_run: bool = False,
    on_file: Callable[[str], None] | None = None,
) -> LockResult:
    spec, var = store.resolve(model_id, variant)
    name = store.dir_name(spec, var)
    unlocked = replace(var, files=())  # plan from the source, as if nothing were recorded
    uris = [source_uri] if source_uri else list(var.sources)
    attempts: list[SourceAttempt] = []
    for expanded, shown in _sources.configured(uris, model_dir=name, attempts=attempts):
        scratch = store.paths.staging_root() / f".lock-{uuid.uuid4().hex[:8]}.scratch"
        scratch.mkdir(parents=True, exist_ok=True)
        try:
            source = store.open_source(spec, unlocked, expanded, scratch=scratch)
            try:
                planned = store._plan(spec, unlocked, source)
                files = []
                for p in planned:
                    if on_file is not None:
                        on_file(p.path)
                    size, sha = p.size, p.sha256
                    hashed_here = sha is None
                    if sha is None or size is None:
                        size, sha = _hash_remote(source, p.remote)
                    top = p.path.split("/", 1)[0]
                    known = (*spec.components, *spec.optional_components)
                    comp = top if "/" in p.path and top in known else None
                    files.append(LockedFile(p.path, int(size), sha, comp, hashed_here))
            finally:
                source.close()
        except ModelError as exc:
            attempts.append(SourceAttempt(shown, exc.code, str(exc)))
            continue
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        manifest = store.config.manifest_path
        if not dry_run:
            write_files(manifest, spec.id, var.name, files)
        return LockResult(
            model_id=spec.id,
            variant=var.name,
            source=shown,
            manifest=manifest,
            files=tuple(files),
            written=not dry_run,
            signature_stale=not dry_run and signature_path(manifest).exists(),
        )
    raise AllSourcesFailedError(
        f"{spec.id} ({var.name})",
        attempts,
        fix="lock needs one source that answers; set its variable or token, or pass --source",
    )


def write_files(manifest: Path, model_id: str, variant: str, files: list[LockedFile]) -> None:
    """Replace the variant's ``files`` array in ``manifest``, keeping everything else as it is."""
    import tomlkit

    doc = tomlkit.parse(manifest.read_text("utf-8"))
    section = "loras" if model_id in doc.get("loras", {}) else "models"  # a LoRA pack's own table
    table: Any = doc[section][model_id]["variants"][variant]
    array = tomlkit.array()
    array.multiline(True)
    for f in files:
        item = tomlkit.inline_table()
        item["path"] = f.path
        item["size"] = f.size
        item["sha256"] = f.sha256
        if f.component:
            item["component"] = f.component
        array.append(item)
    table["files"] = array
    from .manifest_load import load_manifest

    with atomic_path(manifest) as tmp:
        tmp.write_text(tomlkit.dumps(doc), "utf-8")
        # Checked before it replaces the original: a lock never leaves a manifest that cannot load.
        load_manifest(tmp)


__all__ = ["LockResult", "LockedFile", "lock_model", "write_files"]
