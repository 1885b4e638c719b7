"""What an ensure fetches: the planned files, which shards a model needs, and each file's check."""

from __future__ import annotations

import fnmatch
import json
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path

from .errors import ErrorCode, SourceError
from .integrity import git_blob_sha1
from .logs import LOGGER_NAME
from .manifest import LORA_PIPELINE, ModelSpec, VariantSpec
from .paths import check_no_case_collisions, check_relative_path
from .sources import RemoteFile, Source

log = logging.getLogger(LOGGER_NAME)

# Files without a published sha256 but with a git blob id are checked against it up to this size.
GIT_CHECK_MAX_BYTES = 64 * 1024 * 1024
# Index files read while planning to find which shards a model needs.
SHARD_INDEX_SUFFIX = ".index.json"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")


@dataclass(frozen=True)
class PlannedFile:
    path: str
    size: int | None
    sha256: str | None
    remote: RemoteFile
    # The whole content when planning already read it (a shard index): not fetched again.
    data: bytes | None = field(default=None, repr=False, compare=False)


def plan_files(spec: ModelSpec, var: VariantSpec, source: Source) -> list[PlannedFile]:
    """The files to fetch: the manifest's list, or the source's filtered by ``allow_patterns``."""
    remote = {f.path: f for f in source.list_files()}
    for f in remote.values():
        check_relative_path(f.path, where=f"from {source.describe()}")
    check_no_case_collisions(list(remote), where=f"from {source.describe()}")
    planned: list[PlannedFile] = []
    if var.files:
        for fs in var.files:
            rf = remote.get(fs.path)
            if rf is None:
                if fs.optional:
                    continue
                raise SourceError(
                    f"{source.describe()} does not have {fs.path}",
                    code=ErrorCode.incomplete_download,
                    fix="the source is incomplete; another source may have it",
                )
            planned.append(
                PlannedFile(
                    fs.path,
                    fs.size if fs.size is not None else rf.size,
                    fs.sha256 or rf.sha256,
                    rf,
                )
            )
    else:
        patterns = spec.allow_patterns or ("*",)
        for rf in remote.values():
            if any(fnmatch.fnmatchcase(rf.path, pat) for pat in patterns):
                planned.append(PlannedFile(rf.path, rf.size, rf.sha256, rf))
        planned = only_indexed_shards(planned, source)
    if not planned:
        raise SourceError(
            f"{source.describe()} has none of the model's files",
            code=ErrorCode.incomplete_download,
            fix="check the source path; another source may have the model",
        )
    if spec.pipeline != LORA_PIPELINE and "model_index.json" not in {p.path for p in planned}:
        raise SourceError(
            f"{source.describe()} has no model_index.json: not a diffusers model folder",
            code=ErrorCode.incomplete_download,
            fix="point the source at the diffusers-format model (the *-Diffusers repository)",
        )
    return sorted(planned, key=lambda p: p.path)


def integrity_problem(
    p: PlannedFile, size: int, digest: str | None, dest: Path, source: str, hashing: bool
) -> tuple[ErrorCode, str] | None:
    if p.size is not None and size != p.size:
        code = ErrorCode.size_mismatch if size > p.size else ErrorCode.incomplete_download
        return code, f"{p.path} from {source} has {size} bytes, expected {p.size}"
    if hashing and p.sha256 is not None and digest != p.sha256:
        return (
            ErrorCode.checksum_fail,
            f"{p.path} from {source} has sha256 {digest}, expected {p.sha256}",
        )
    if hashing and p.sha256 is None and p.remote.git_sha1 and size <= GIT_CHECK_MAX_BYTES:
        # No sha256 is published for small files on the Hub, but their git blob id is.
        actual = git_blob_sha1(dest)
        if actual != p.remote.git_sha1:
            return (
                ErrorCode.checksum_fail,
                f"{p.path} from {source} has git blob id {actual}, expected {p.remote.git_sha1}",
            )
    return None


def only_indexed_shards(planned: list[PlannedFile], source: Source) -> list[PlannedFile]:
    """Drop weight files that sit beside a ``*.index.json`` which does not name them.

    A repository may hold a sharded checkpoint next to other copies of the same weights (a
    single-file fp32 export, another precision); the index says which files the model loads.
    """
    by_dir: dict[str, list[PlannedFile]] = {}
    for p in planned:
        by_dir.setdefault(p.path.rpartition("/")[0], []).append(p)
    keep: set[str] = set()
    drop: set[str] = set()
    read: dict[str, bytes] = {}
    for folder, members in by_dir.items():
        indexes = [p for p in members if p.path.endswith(SHARD_INDEX_SUFFIX)]
        if not indexes:
            continue
        named: set[str] = set()
        for idx in indexes:
            try:
                read[idx.path] = source.read_bytes(idx.remote, limit=64 << 20)
                doc = json.loads(read[idx.path])
                weight_map = doc["weight_map"]
                named |= {str(v) for v in weight_map.values()}
            except (ValueError, KeyError, TypeError, AttributeError):
                # Not an index we understand: take everything rather than guess.
                return _with_data(planned, read)
        for p in members:
            base = p.path.rpartition("/")[2]
            if base.endswith(WEIGHT_SUFFIXES) and not p.path.endswith(SHARD_INDEX_SUFFIX):
                (keep if base in named else drop).add(p.path)
        missing = named - {p.path.rpartition("/")[2] for p in members}
        if missing:
            raise SourceError(
                f"{source.describe()}: {folder}/ index names shards the source does not have: "
                f"{', '.join(sorted(missing)[:3])}",
                code=ErrorCode.incomplete_download,
                fix="the source is incomplete; another source may have the model",
            )
    if drop:
        log.info("skipping %d weight file(s) no index names: %s", len(drop), sorted(drop)[:5])
    return _with_data([p for p in planned if p.path not in drop], read)


def _with_data(planned: list[PlannedFile], read: dict[str, bytes]) -> list[PlannedFile]:
    """The index files read while planning carry their bytes, so they are fetched only once."""
    return [replace(p, data=read[p.path]) if p.path in read else p for p in planned]
