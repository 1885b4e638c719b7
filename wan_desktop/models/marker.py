"""The completion marker: the record, written last, that makes a folder an installed model.

``.wan-complete.json`` in a model folder lists every file with its size and sha256, where the
files came from, and when they were installed and last verified. It is written atomically after
every file has been verified, so a folder without it is never taken for a model. The store writes
and reads it; the engine asks the store (``ModelStore.completion``) rather than reading the file;
a local mirror's or an S3 prefix's marker supplies sizes and hashes for a download
(``file_hashes``, lenient: another program may have written it).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from .atomic import atomic_write_json
from .paths import COMPLETE_MARKER

MARKER_FORMAT = 1
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class MarkedFile:
    path: str  # relative, POSIX
    size: int
    sha256: str

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "size": self.size, "sha256": self.sha256}


@dataclass(frozen=True)
class CompletionMarker:
    model_id: str
    variant: str
    source: str
    completed_at: str
    files: tuple[MarkedFile, ...]
    verified_at: str | None = None
    dtype: str | None = None
    development: bool = False
    label: str | None = None
    format: int = MARKER_FORMAT
    extra: Mapping[str, Any] = field(default_factory=dict)  # keys a newer version wrote

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    def verified(self, at: str) -> CompletionMarker:
        return replace(self, verified_at=at)

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.extra,
            "format": self.format,
            "model_id": self.model_id,
            "variant": self.variant,
            "dtype": self.dtype,
            "development": self.development,
            "label": self.label,
            "source": self.source,
            "completed_at": self.completed_at,
            "verified_at": self.verified_at,
            "files": [f.to_dict() for f in self.files],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CompletionMarker:
        """Raises ValueError when ``data`` is not a marker this version can use."""
        try:
            files = tuple(
                MarkedFile(str(f["path"]), int(f["size"]), str(f["sha256"])) for f in data["files"]
            )
            known = {f.name for f in fields(cls)}
            return cls(
                model_id=str(data["model_id"]),
                variant=str(data["variant"]),
                source=str(data.get("source") or ""),
                completed_at=str(data.get("completed_at") or ""),
                files=files,
                verified_at=data.get("verified_at"),
                dtype=data.get("dtype"),
                development=bool(data.get("development", False)),
                label=data.get("label"),
                format=int(data.get("format", MARKER_FORMAT)),
                extra={k: v for k, v in data.items() if k not in known},
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a completion marker: {exc}") from None


def read_marker(folder: Path) -> CompletionMarker | None:
    """The folder's marker; None when it has none or it cannot be read (then it is no model)."""
    try:
        data = json.loads((folder / COMPLETE_MARKER).read_text("utf-8"))
        return CompletionMarker.from_dict(data) if isinstance(data, dict) else None
    except (OSError, ValueError):
        return None


def write_marker(folder: Path, marker: CompletionMarker) -> None:
    atomic_write_json(folder / COMPLETE_MARKER, marker.to_dict())


def file_hashes(data: Any) -> dict[str, tuple[int | None, str]]:
    """``{path: (size, sha256)}`` from a marker written by any program (a mirror's, an S3
    prefix's); entries without a usable sha256 are left out; anything unreadable gives {}."""
    try:
        return {
            str(f["path"]): (int(f["size"]), str(f["sha256"]))
            for f in data["files"]
            if _SHA256.match(str(f.get("sha256", "")))
        }
    except (KeyError, TypeError, ValueError, AttributeError):
        return {}
