"""Keeping the job history safe: a check at start, rolling backups, recovery from a damaged file.

What trusted desktop apps do with their SQLite files: a quick integrity check before use, a few
rolling copies made with SQLite's backup API, and on damage the bad file moved aside (never
deleted) and the newest good copy put in its place. Nothing of this is silent: ``StoreHealth``
says what happened, for the log, the app and ``/health``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from .errors import JobStoreError

log = logging.getLogger("wan_desktop.engine.store")

BACKUP_KEEP = 5
BACKUP_INTERVAL_S = 600.0
BACKUP_PREFIX = "jobs-"
# Written beside the store when damage is found while running; the next start recovers.
DAMAGE_MARK_SUFFIX = ".needs-recovery"

# SQLite's primary result codes that mean "this file is not a sound database".
_DAMAGE_CODES = {
    sqlite3.SQLITE_CORRUPT,
    sqlite3.SQLITE_NOTADB,
    sqlite3.SQLITE_IOERR,
}


def primary_code(exc: sqlite3.Error) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)
    return None if code is None else int(code) & 0xFF


def is_damage(exc: sqlite3.Error) -> bool:
    return primary_code(exc) in _DAMAGE_CODES


@dataclass(frozen=True)
class StoreHealth:
    """How the job store is. ``problem`` is None when all is well."""

    problem: str | None = None  # what is or was wrong, in words, without paths
    action: str | None = None  # what was done about it, in words, without paths
    read_only: bool = False
    moved_to: Path | None = None  # where the damaged file was put
    restored_from: Path | None = None  # the backup that replaced it

    @property
    def ok(self) -> bool:
        return self.problem is None

    @property
    def summary(self) -> str:
        """One sentence for the app and ``/health`` (no paths: /health is open to anyone)."""
        if self.problem is None:
            return "ok"
        return f"{self.problem}; {self.action}" if self.action else self.problem

    @property
    def message(self) -> str:
        """The summary with where the files are, for the log and the local app."""
        where = []
        if self.moved_to is not None:
            where.append(f"the damaged file was kept as {self.moved_to}")
        if self.restored_from is not None:
            where.append(f"the backup used was {self.restored_from}")
        return "; ".join([self.summary, *where])


def store_uri(path: Path, *, frozen: bool = False) -> str:
    """How to open an existing store: ``mode=rw`` never creates the file (a write-protected one
    opens read-only); ``frozen`` for a folder that cannot be written (a read-only disk), where
    SQLite could not make its shared-memory file and must read the file as it is."""
    mode = "mode=ro&immutable=1" if frozen else "mode=rw"
    return f"file:{quote(str(path))}?{mode}"


def folder_is_read_only(path: Path) -> bool:
    return path.exists() and not os.access(path.parent, os.W_OK)


def _connect_existing(path: Path, *, frozen: bool = False) -> sqlite3.Connection:
    return sqlite3.connect(store_uri(path, frozen=frozen), uri=True, timeout=10.0)


def check(path: Path, *, empty_is_damage: bool = True) -> str | None:
    """What is wrong with the store file at ``path`` (None: sound, or not there yet).

    ``empty_is_damage``: whether a 0-byte file means lost history. SQLite creates the file empty
    an instant before it writes the first page, so a store with no backup yet may be new.
    """
    mark = damage_mark(path)
    if mark.exists():
        try:
            reason = mark.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError):
            reason = ""
        return f"the job store was found damaged while running ({reason or 'unreadable'})"
    if not path.exists():
        return None
    if path.stat().st_size == 0:
        if not empty_is_damage:
            return None
        return "the job store file was empty (0 bytes): it had been truncated"
    try:
        db = _connect_existing(path, frozen=folder_is_read_only(path))
        try:
            rows = db.execute("PRAGMA quick_check").fetchall()
            db.execute("SELECT COUNT(*) FROM jobs").fetchone()
        finally:
            db.close()
    except sqlite3.DatabaseError as exc:
        if is_damage(exc) or "no such table" in str(exc):
            return f"the job store could not be read ({exc})"
        raise JobStoreError(f"cannot open the job store {path}: {exc}") from exc
    if rows != [("ok",)]:
        found = "; ".join(str(r[0]) for r in rows[:3])
        return f"the job store failed its integrity check ({found})"
    return None


def damage_mark(path: Path) -> Path:
    return path.with_name(path.name + DAMAGE_MARK_SUFFIX)


def mark_damaged(path: Path, reason: str) -> None:
    with contextlib.suppress(OSError):
        damage_mark(path).write_text(reason + "\n", encoding="utf-8")


def _stamp() -> str:
    now = time.time()
    return (
        time.strftime("%Y%m%d-%H%M%S", time.localtime(now)) + f"-{int(now * 1e6) % 1_000_000:06d}"
    )


def move_aside(path: Path) -> Path:
    """Rename the store and its WAL files to ``<name>.damaged-STAMP``; returns the new name."""
    target = path.with_name(f"{path.name}.damaged-{_stamp()}")
    path.replace(target)
    for suffix in ("-wal", "-shm"):
        side = path.with_name(path.name + suffix)
        if side.exists():
            side.replace(target.with_name(target.name + suffix))
    return target


def backups(backups_dir: Path) -> list[Path]:
    """Backups, newest first."""
    if not backups_dir.is_dir():
        return []
    found = [p for p in backups_dir.glob(f"{BACKUP_PREFIX}*.sqlite3") if p.is_file()]
    return sorted(found, key=lambda p: p.name, reverse=True)


def newest_good_backup(backups_dir: Path) -> Path | None:
    for candidate in backups(backups_dir):
        try:
            problem = check(candidate)
        except sqlite3.Error as exc:
            problem = str(exc)
        if problem is None:
            return candidate
        log.warning("job store backup %s is not usable: %s", candidate, problem)
    return None


def make_backup(db: sqlite3.Connection, backups_dir: Path, *, keep: int = BACKUP_KEEP) -> Path:
    """Copy the open store ``db`` into ``backups_dir`` (SQLite backup API) and keep ``keep``."""
    backups_dir.mkdir(parents=True, exist_ok=True)
    final = backups_dir / f"{BACKUP_PREFIX}{_stamp()}.sqlite3"
    partial = final.with_name(final.name + ".partial")
    try:
        dst = sqlite3.connect(str(partial))
        try:
            db.backup(dst)
        finally:
            dst.close()
        partial.replace(final)
    finally:
        with contextlib.suppress(OSError):
            partial.unlink()
    for old in backups(backups_dir)[keep:]:
        with contextlib.suppress(OSError):
            old.unlink()
    return final


def _copy_into(backup: Path, path: Path) -> int:
    """Restore ``backup`` as the store at ``path``; returns how many jobs it holds."""
    src = _connect_existing(backup)
    try:
        dst = sqlite3.connect(str(path))
        try:
            src.backup(dst)
            return int(dst.execute("SELECT COUNT(*) FROM jobs").fetchone()[0])
        finally:
            dst.close()
    finally:
        src.close()


def recover(path: Path, backups_dir: Path, problem: str) -> StoreHealth:
    """Move the damaged store aside and put the newest good backup in its place (or nothing)."""
    moved: Path | None = None
    if path.exists():
        try:
            moved = move_aside(path)
        except OSError as exc:
            raise JobStoreError(
                f"{problem}, and it could not be moved aside ({exc.strerror or exc}): move "
                f"{path} away yourself (keep it: it may be repairable) and start again"
            ) from exc
    with contextlib.suppress(OSError):
        damage_mark(path).unlink()
    backup = newest_good_backup(backups_dir)
    if backup is None:
        action = "no good backup was found, so the job history starts empty"
        if moved is not None:
            action += " (the damaged file was kept)"
        health = StoreHealth(problem=problem, action=action, moved_to=moved)
    else:
        jobs = _copy_into(backup, path)
        taken = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(backup.stat().st_mtime))
        health = StoreHealth(
            problem=problem,
            action=(
                f"the newest good backup ({taken}, {jobs} jobs) was restored; "
                "jobs changed after it are missing (the damaged file was kept)"
            ),
            moved_to=moved,
            restored_from=backup,
        )
    log.error("job store: %s", health.message)
    return health
