"""The orchestrator's result and event types: frozen, JSON-friendly."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class ModelState(enum.StrEnum):
    not_present = "NOT_PRESENT"
    partial = "PARTIAL"
    complete = "COMPLETE"
    corrupt = "CORRUPT"


class Phase(enum.StrEnum):
    waiting = "waiting_for_lock"
    planning = "planning"
    downloading = "downloading"
    verifying = "verifying"
    finalizing = "finalizing"
    complete = "complete"


@dataclass(frozen=True)
class ModelStatus:
    model_id: str
    variant: str
    state: ModelState
    path: Path
    development: bool
    label: str
    reason: str
    files_total: int | None = None
    files_present: int = 0
    missing: tuple[str, ...] = ()
    corrupt_files: tuple[str, ...] = ()
    bytes_present: int = 0
    bytes_total: int | None = None
    bytes_needed: int | None = None
    approx_size_bytes: int | None = None
    source: str | None = None
    completed_at: str | None = None
    verified_at: str | None = None

    @property
    def complete(self) -> bool:
        return self.state is ModelState.complete

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_id": self.model_id,
            "variant": self.variant,
            "state": str(self.state),
            "path": str(self.path),
            "development": self.development,
            "label": self.label,
            "reason": self.reason,
            "files_total": self.files_total,
            "files_present": self.files_present,
            "missing": list(self.missing),
            "corrupt_files": list(self.corrupt_files),
            "bytes_present": self.bytes_present,
            "bytes_total": self.bytes_total,
            "bytes_needed": self.bytes_needed,
            "approx_size_bytes": self.approx_size_bytes,
            "source": self.source,
            "completed_at": self.completed_at,
            "verified_at": self.verified_at,
        }


@dataclass(frozen=True)
class Mismatch:
    path: str
    expected_size: int | None
    actual_size: int
    expected_sha256: str | None
    actual_sha256: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "expected_size": self.expected_size,
            "actual_size": self.actual_size,
            "expected_sha256": self.expected_sha256,
            "actual_sha256": self.actual_sha256,
        }


@dataclass(frozen=True)
class VerifyReport:
    model_id: str
    variant: str
    path: Path
    checked: tuple[str, ...]
    mismatches: tuple[Mismatch, ...]
    missing: tuple[str, ...]
    extra: tuple[str, ...]
    bytes_hashed: int
    seconds: float

    @property
    def ok(self) -> bool:
        return not self.mismatches and not self.missing

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_id": self.model_id,
            "variant": self.variant,
            "path": str(self.path),
            "ok": self.ok,
            "state": str(ModelState.complete if self.ok else ModelState.corrupt),
            "checked": len(self.checked),
            "mismatches": [m.to_dict() for m in self.mismatches],
            "missing": list(self.missing),
            "extra": list(self.extra),
            "bytes_hashed": self.bytes_hashed,
            "seconds": round(self.seconds, 3),
        }


@dataclass(frozen=True)
class DownloadProgress:
    """One progress sample of an ensure; the caller decides how to show it."""

    model_id: str
    variant: str
    phase: Phase
    bytes_done: int = 0
    bytes_total: int | None = None
    speed_bps: float = 0.0
    eta_s: float | None = None
    files_done: int = 0
    files_total: int = 0
    file: str | None = None
    file_bytes_done: int = 0
    file_bytes_total: int | None = None
    source: str | None = None
    bytes_transferred: int = 0  # fetched in this run (resumed bytes excluded)
    file_eta_s: float | None = None  # of ``file``, from its own rate in this run

    @property
    def fraction(self) -> float | None:
        if not self.bytes_total:
            return None
        return min(1.0, self.bytes_done / self.bytes_total)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_id": self.model_id,
            "variant": self.variant,
            "phase": str(self.phase),
            "bytes_done": self.bytes_done,
            "bytes_total": self.bytes_total,
            "speed_bps": round(self.speed_bps, 1),
            "eta_seconds": None if self.eta_s is None else round(self.eta_s, 1),
            "files_done": self.files_done,
            "files_total": self.files_total,
            "file": self.file,
            "file_bytes_done": self.file_bytes_done,
            "file_bytes_total": self.file_bytes_total,
            "source": self.source,
            "bytes_transferred": self.bytes_transferred,
            "file_eta_seconds": None if self.file_eta_s is None else round(self.file_eta_s, 1),
        }


@dataclass(frozen=True)
class WanPaths:
    """Where a complete model's parts are, for the engine."""

    model_id: str
    variant: str
    dtype: str
    development: bool
    label: str
    root: Path
    components: Mapping[str, Path] = field(default_factory=dict)

    @property
    def model_index(self) -> Path:
        return self.root / "model_index.json"

    def component(self, name: str) -> Path | None:
        return self.components.get(name)
