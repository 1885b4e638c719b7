"""Disk: what each model takes, pins, leases of models in use, and garbage collection.

- A **pin** is a file ``MODELS_ROOT/.pins/<model dir>``: GC never removes a pinned model. Pins live
  with the models (not in the user's settings) so every process and user of a shared models
  folder respects them.
- A **lease** is a file ``MODELS_ROOT/.in-use/<model dir>/<pid>-<id>.lease`` written while the
  engine uses a model (:meth:`ModelStore.use`). It is live while its process is (same pid and start
  time); a lease of a killed process is stale and ignored. A model whose download lock is held is
  in use too.
- **Last used** is ``.in-use/<model dir>/last-used.json``, written by ``use`` and ``ensure``;
  without it, the completion time counts.

Garbage collection (:mod:`.gc`) reads all of this to decide what may go.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .atomic import atomic_write
from .paths import COMPLETE_MARKER, LEASE_SUFFIX, ModelPaths

if TYPE_CHECKING:
    from .config import OrchestratorConfig


# ----------------------------------------------------------------------------------- pins


def is_pinned(paths: ModelPaths, dir_name: str) -> bool:
    return paths.pin_file(dir_name).exists()


def set_pinned(paths: ModelPaths, dir_name: str, pinned: bool) -> bool:
    """Pin or unpin; returns whether the state changed."""
    pin = paths.pin_file(dir_name)
    if pinned == pin.exists():
        return False
    if pinned:
        pin.parent.mkdir(parents=True, exist_ok=True)
        pin.write_text(json.dumps({"pinned_at": time.time()}), "utf-8")
    else:
        pin.unlink(missing_ok=True)
    return True


# ---------------------------------------------------------------------------------- leases


def _process_start(pid: int) -> float | None:
    import psutil

    try:
        return float(psutil.Process(pid).create_time())
    except (psutil.Error, OSError):
        return None


def _hostname() -> str:
    import socket  # only when leases are read or written: `wan models check` stays light

    return socket.gethostname()


def lease_is_live(data: dict[str, Any]) -> bool:
    if data.get("host") != _hostname():
        return True  # another machine's process (a shared folder): cannot check, so respect it
    try:
        pid = int(data["pid"])
    except (KeyError, TypeError, ValueError):
        return False
    started = _process_start(pid)
    if started is None:
        return False
    recorded = data.get("process_start")
    # The same pid with another start time is a new process that reused the number.
    return recorded is None or abs(float(recorded) - started) < 1.0


def live_leases(paths: ModelPaths, dir_name: str) -> list[dict[str, Any]]:
    folder = paths.in_use_dir(dir_name)
    out = []
    if folder.is_dir():
        for f in folder.glob(f"*{LEASE_SUFFIX}"):
            try:
                data = json.loads(f.read_text("utf-8"))
            except (OSError, ValueError):
                continue
            if lease_is_live(data):
                out.append(data)
            else:
                f.unlink(missing_ok=True)  # stale: its process is gone
    return out


@contextlib.contextmanager
def lease(paths: ModelPaths, dir_name: str) -> Iterator[Path]:
    lease_id = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    path = paths.lease_file(dir_name, lease_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(
            {
                "pid": os.getpid(),
                "process_start": _process_start(os.getpid()),
                "host": _hostname(),
                "since": time.time(),
            }
        ),
        "utf-8",
    )
    touch_last_used(paths, dir_name)
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)
        touch_last_used(paths, dir_name)


def touch_last_used(paths: ModelPaths, dir_name: str) -> None:
    f = paths.last_used_file(dir_name)
    with contextlib.suppress(OSError):
        f.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(f, json.dumps({"at": time.time()}), durable=False)


def last_used(paths: ModelPaths, dir_name: str, folder: Path) -> float | None:
    try:
        return float(json.loads(paths.last_used_file(dir_name).read_text("utf-8"))["at"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    with contextlib.suppress(OSError):
        return (folder / COMPLETE_MARKER).stat().st_mtime
    with contextlib.suppress(OSError):
        return folder.stat().st_mtime
    return None


def folder_bytes(folder: Path) -> int:
    total = 0
    for dirpath, _, names in os.walk(folder):
        for n in names:
            with contextlib.suppress(OSError):
                total += (Path(dirpath) / n).lstat().st_size
    return total


# ---------------------------------------------------------------------------------- usage


@dataclass(frozen=True)
class ModelUsage:
    dir_name: str
    model_id: str
    variant: str | None
    family: str
    path: Path
    bytes: int
    complete: bool  # False: a partial download in the staging folder
    known: bool  # listed in the manifest
    last_used: float | None
    pinned: bool
    in_use: bool
    in_use_by: tuple[int, ...] = ()
    downloading: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "dir_name": self.dir_name,
            "model_id": self.model_id,
            "variant": self.variant,
            "family": self.family,
            "path": str(self.path),
            "bytes": self.bytes,
            "state": "COMPLETE" if self.complete else "PARTIAL",
            "in_manifest": self.known,
            "last_used": _iso(self.last_used),
            "pinned": self.pinned,
            "in_use": self.in_use,
            "in_use_by_pids": list(self.in_use_by),
            "downloading": self.downloading,
        }


@dataclass(frozen=True)
class Layout:
    """What disk accounting and garbage collection see of a store: its folders, its settings,
    and which folder holds which model (from the manifest; ``manifest_error`` when it could not
    be read, so every folder then counts as unknown)."""

    paths: ModelPaths
    config: OrchestratorConfig
    known: dict[str, tuple[str, str, str]]  # dir name → (model id, variant, family)
    manifest_error: str | None = None

    def family_of(self, dir_name: str) -> str:
        known = self.known.get(dir_name)
        return known[2] if known else self.paths.family_dir().name


@dataclass(frozen=True)
class DiskUsage:
    models_root: Path
    total_bytes: int
    free_bytes: int
    quota_bytes: int | None
    family_bytes: dict[str, int]
    family_quota_bytes: dict[str, int]
    models: tuple[ModelUsage, ...]
    # Why the folders could not be matched to the manifest (each then reads "not in manifest").
    manifest_error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "models_root": str(self.models_root),
            "manifest_error": self.manifest_error,
            "total_bytes": self.total_bytes,
            "free_bytes": self.free_bytes,
            "quota_bytes": self.quota_bytes,
            "families": [
                {
                    "family": fam,
                    "bytes": self.family_bytes[fam],
                    "quota_bytes": self.family_quota_bytes.get(fam),
                }
                for fam in sorted(self.family_bytes)
            ],
            "models": [m.to_dict() for m in self.models],
        }


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


def download_running(paths: ModelPaths, dir_name: str) -> bool:
    """Whether a process holds the download lock of model folder ``dir_name`` now."""
    from filelock import FileLock, Timeout

    lock_path = paths.lock_file(dir_name)
    if not lock_path.exists():
        return False
    lock = FileLock(str(lock_path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return True
    lock.release()
    return False


def disk_usage(layout: Layout) -> DiskUsage:
    paths, names = layout.paths, layout.known
    models: list[ModelUsage] = []
    folders: list[tuple[Path, bool]] = []
    for parent, complete in ((paths.family_dir(), True), (paths.staging_root(), False)):
        if parent.is_dir():
            folders += [(p, complete) for p in sorted(parent.iterdir()) if p.is_dir()]
    for folder, complete in folders:
        name = folder.name
        if not complete and name.endswith(".scratch"):
            continue
        model_id, variant, family = names.get(
            name, (name.split("+", 1)[0], name.split("+", 1)[1] if "+" in name else None, "")
        )
        family = family or paths.family_dir().name
        leases = live_leases(paths, name)
        downloading = download_running(paths, name)
        size = folder_bytes(folder)
        if not complete:
            scratch = folder.with_name(name + ".scratch")
            size += folder_bytes(scratch) if scratch.is_dir() else 0
        models.append(
            ModelUsage(
                dir_name=name,
                model_id=model_id,
                variant=variant,
                family=family,
                path=folder,
                bytes=size,
                complete=complete and (folder / COMPLETE_MARKER).is_file(),
                known=name in names,
                last_used=last_used(paths, name, folder),
                pinned=is_pinned(paths, name),
                in_use=bool(leases) or downloading,
                in_use_by=tuple(int(lease["pid"]) for lease in leases if "pid" in lease),
                downloading=downloading,
            )
        )
    fam_bytes: dict[str, int] = {}
    for m in models:
        fam_bytes[m.family] = fam_bytes.get(m.family, 0) + m.bytes
    root = layout.config.models_root
    probe = root if root.exists() else _existing_parent(root)
    return DiskUsage(
        models_root=root,
        total_bytes=sum(m.bytes for m in models),
        free_bytes=shutil.disk_usage(probe).free,
        quota_bytes=layout.config.quota_bytes,
        family_bytes=fam_bytes,
        family_quota_bytes=dict(layout.config.family_quota_bytes),
        models=tuple(models),
        manifest_error=layout.manifest_error,
    )


def _existing_parent(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path
