"""The staging folder of a download: its plan record, what it already holds, why it stopped.

A model downloads into ``{models}/.staging/<dir name>`` on the same filesystem as its final place.
``.wan-plan.json`` there lists the planned files, the ones already verified and the ones that
failed verification (with the source and the verdict, which ``status`` reports). The store reads
and writes it through ``PlanState``; ``status`` reads it without a lock.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import partials
from .atomic import TMP_PREFIX, atomic_write_json
from .errors import ModelError
from .planning import PlannedFile

PLAN_FILE = ".wan-plan.json"
PLAN_SAVE_INTERVAL_S = 0.5


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def read_plan(staging: Path) -> dict[str, Any] | None:
    return read_json(staging / PLAN_FILE)


class PlanState:
    """The staging folder's record of the plan and of the files already verified.

    Written as files finish (at most every ``PLAN_SAVE_INTERVAL_S``, and when the fetching
    stops), so a restarted ensure skips them without re-hashing (their size and modification
    time must still match). A kill loses at most the last interval's entries: those files are
    hashed again, never fetched again.
    """

    def __init__(
        self,
        path: Path,
        source: str,
        files: dict[str, dict[str, Any]],
        done: dict[str, dict[str, Any]],
        failed: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        self.path = path
        self.source = source
        self.files = files
        self.done = done
        # Files whose bytes failed verification (what status tells until the entry changes).
        self.failed = failed or {}
        self._lock = threading.Lock()
        self._saved_at = 0.0
        self._dirty = False

    @classmethod
    def open(cls, staging: Path, source: str, planned: list[PlannedFile]) -> PlanState:
        path = staging / PLAN_FILE
        for stale in staging.glob(f"{TMP_PREFIX}*"):
            stale.unlink(missing_ok=True)  # left by a process killed mid-write
        old = read_json(path) or {}
        old_files = {f["path"]: f for f in old.get("files", [])}
        old_done = old.get("done", {})
        old_failed = old.get("failed", {})
        same_source = old.get("source") == source
        files = {p.path: {"path": p.path, "size": p.size, "sha256": p.sha256} for p in planned}
        done: dict[str, dict[str, Any]] = {}
        failed: dict[str, dict[str, Any]] = {}
        for rel, new in files.items():
            dest = staging / rel
            prev = old_files.get(rel)
            compatible = (
                prev is not None
                and prev.get("size") == new["size"]
                and (
                    (new["sha256"] is not None and prev.get("sha256") == new["sha256"])
                    or (new["sha256"] is None and same_source)
                )
            )
            if not compatible:
                # Bytes staged for another version of this file are useless now.
                partials.discard(dest)
                continue
            if isinstance(old_failed, dict) and rel in old_failed:
                failed[rel] = old_failed[rel]  # same file expected: the verdict still holds
            rec = old_done.get(rel)
            if rec and dest.is_file():
                st = dest.stat()
                if st.st_size == rec["size"] and st.st_mtime_ns == rec["mtime_ns"]:
                    done[rel] = rec
        state = cls(path, source, files, done, failed)
        state._save()
        return state

    def mark_done(self, rel: str, size: int, sha256: str, dest: Path) -> None:
        with self._lock:
            self.done[rel] = {"size": size, "sha256": sha256, "mtime_ns": dest.stat().st_mtime_ns}
            self.failed.pop(rel, None)
            self._dirty = True
            # Rewriting the whole plan per file costs O(files²): hundreds of small files add up.
            if time.monotonic() - self._saved_at >= PLAN_SAVE_INTERVAL_S:
                self._save()

    def mark_failed(self, rel: str, error: ModelError, source: str) -> None:
        """``rel`` failed verification from ``source``: recorded at once, for status."""
        with self._lock:
            self.failed[rel] = {
                "source": source,
                "code": str(error.code),
                "message": error.message,
                "at": utc_now(),
            }
            self._save()

    def flush(self) -> None:
        with self._lock:
            if self._dirty:
                self._save()

    def _save(self) -> None:
        self._saved_at, self._dirty = time.monotonic(), False
        # Not fsynced: the files it lists were, and a lost or older record only means re-checking.
        atomic_write_json(
            self.path,
            {
                "source": self.source,
                "files": list(self.files.values()),
                "done": self.done,
                "failed": self.failed,
            },
            durable=False,
        )


def partial_reason(model_id: str, failed: Any) -> str:
    """Why a download stopped: interrupted (ensure resumes it), or a file that failed its
    check, which a rerun from the same source would fail the same way."""
    if not isinstance(failed, dict) or not failed:
        return "download interrupted; ensure resumes it"
    rel, rec = sorted(failed.items())[0]
    more = f" (and {len(failed) - 1} more file(s))" if len(failed) > 1 else ""
    source = rec.get("source")
    detail = str(rec.get("message")).removeprefix(f"{rel} from {source} ")
    return (
        f"{rel} failed verification from {source}{more}: {detail}; "
        "running ensure again will fail the same way. The manifest's size or sha256 may be "
        f"wrong or the source's copy damaged: check the file's entry in the manifest, or write "
        f"sizes and hashes from a source you trust with 'wan models lock {model_id}'"
    )


def folder_bytes(folder: Path) -> int:
    """Bytes of model data in a folder: hidden files (markers, plans, temp files) excluded."""
    if not folder.is_dir():
        return 0
    total = 0
    for p in folder.rglob("*"):
        if p.is_file() and not p.name.startswith("."):
            with contextlib.suppress(OSError):
                total += p.stat().st_size
    return total
