"""The job store: SQLite in WAL mode, the single source of truth for the queue and its history.

A job is written before it is queued and every state change is committed before it is announced,
so a crash or a kill loses nothing: queued jobs come back queued, a job that was running comes back
interrupted (or queued again, by setting), and outputs stay linked to their job.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from .errors import JobStoreError, StoreUnavailableError
from .job_rows import UnreadableJobError, job_from_row, replace_bad, to_row
from .job_schema import open_store
from .jobs import ACTIVE_STATES, FailureCategory, Job, JobFailure, JobKind, JobState
from .store_recovery import (
    StoreHealth,
    backups,
    check,
    is_damage,
    make_backup,
    mark_damaged,
    primary_code,
    recover,
)

__all__ = ["JobStore", "JobStoreError"]

log = logging.getLogger("wan_desktop.engine.store")

_STATE_VALUES = {s.value for s in JobState}
# What the disk or the file does to SQLite (full, read-only, damaged, busy), as opposed to bugs.
_UNAVAILABLE_CODES = {
    sqlite3.SQLITE_FULL,
    sqlite3.SQLITE_READONLY,
    sqlite3.SQLITE_CORRUPT,
    sqlite3.SQLITE_NOTADB,
    sqlite3.SQLITE_IOERR,
    sqlite3.SQLITE_CANTOPEN,
    sqlite3.SQLITE_BUSY,
    sqlite3.SQLITE_LOCKED,
    sqlite3.SQLITE_PERM,
}
MAX_LOG_LINES_PER_JOB = 2000
CANCEL_KEY = "cancel_requested:"  # meta key prefix: a running job the user cancelled


class JobStore:
    def __init__(self, path: Path, *, backups_dir: Path | None = None) -> None:
        self.path = path
        self.backups_dir = backups_dir if backups_dir is not None else path.parent / "backups"
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        # Bumped by every write of this store: readers that cache (the API's queue view) can tell
        # in O(1) that nothing changed. Writes by other processes are not counted.
        self.generation = 0
        self._backed_up_generation = -1
        self.last_backup_at = 0.0
        # Jobs whose stored record cannot be read: id -> why (listings skip them).
        self.unreadable: dict[str, str] = {}
        self.health = StoreHealth()
        problem = check(path, empty_is_damage=bool(backups(self.backups_dir)))
        if problem is not None:
            self.health = recover(path, self.backups_dir, problem)
        with self._lock:
            self._db, self.health = open_store(path, self.health)

    @property
    def read_only(self) -> bool:
        return self.health.read_only

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _access(self) -> Iterator[None]:
        """Hold the lock; SQLite errors become StoreUnavailableError saying what to do."""
        with self._lock:
            try:
                yield
            except sqlite3.DatabaseError as exc:
                if self._db.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        self._db.execute("ROLLBACK")
                if primary_code(exc) not in _UNAVAILABLE_CODES:
                    raise  # a bug (a constraint, a closed store), not the disk: as it is
                raise self._unavailable(exc) from exc

    def _unavailable(self, exc: sqlite3.DatabaseError) -> StoreUnavailableError:
        code = primary_code(exc)
        folder = self.path.parent
        if code == sqlite3.SQLITE_FULL or (
            code == sqlite3.SQLITE_IOERR and shutil.disk_usage(folder).free < 1 << 20
        ):
            log.error("job store %s: the disk is full (%s)", self.path, exc)
            return StoreUnavailableError(
                f"the data folder is full: the job store could not be written ({exc})",
                reason="storage_full",
                suggestions=(
                    # No paths: the answer may go to a remote client (the log has the path).
                    "free space on the disk that holds the data folder (WAN_DATA_DIR)",
                    "delete old videos (Gallery → delete) or unused models (Models → delete)",
                    "or set WAN_DATA_DIR to a folder on a disk with free space and restart",
                ),
            )
        if code == sqlite3.SQLITE_READONLY:
            return StoreUnavailableError(
                "the job store is read-only: no job can be added or changed",
                reason="read_only",
                suggestions=(
                    f"make {self.path.name} and the data folder writable (or remount the "
                    "disk read-write), then restart the app",
                ),
            )
        if is_damage(exc):
            reason = f"{type(exc).__name__}: {exc}"
            if self.health.ok:
                self.health = replace(
                    self.health,
                    problem=f"the job store is damaged ({exc})",
                    action="restart the app to move it aside and restore the newest backup",
                )
                log.error("job store %s: %s", self.path, self.health.message)
            mark_damaged(self.path, reason)
            return StoreUnavailableError(
                f"the job store is damaged ({exc})",
                reason="damaged",
                suggestions=(
                    "restart the app: it moves the damaged file aside and restores the newest "
                    "backup",
                ),
            )
        return StoreUnavailableError(
            f"the job store cannot be used now ({exc})",
            reason="busy",
            suggestions=("try again in a moment",),
        )

    # ----------------------------------------------------------------------------- backups

    def backup_if_changed(self, *, min_interval_s: float = 0.0) -> Path | None:
        """Copy the store into ``backups_dir`` when it changed since the last copy."""
        if not self.health.ok and self.health.read_only:
            return None
        now = time.time()
        if now - self.last_backup_at < min_interval_s:
            return None
        with self._lock:
            if self.generation == self._backed_up_generation:
                return None
            newest = backups(self.backups_dir)
            if self._backed_up_generation < 0 and newest and self.generation == 0:
                # Just opened and unchanged: back up only if the file is newer than its copy.
                mtime = max(
                    (p.stat().st_mtime for p in (self.path, self._wal()) if p.exists()),
                    default=0.0,
                )
                if mtime <= newest[0].stat().st_mtime:
                    self._backed_up_generation = self.generation
                    return None
            try:
                made = make_backup(self._db, self.backups_dir)
            except (sqlite3.Error, OSError) as exc:
                log.warning("job store backup failed: %s", exc)
                return None
            self._backed_up_generation = self.generation
            self.last_backup_at = now
            return made

    def _wal(self) -> Path:
        return self.path.with_name(self.path.name + "-wal")

    def _jobs(self, rows: Iterable[sqlite3.Row]) -> list[Job]:
        """Rows as jobs; a row that cannot be read is skipped, logged and kept in ``unreadable``."""
        out: list[Job] = []
        for row in rows:
            try:
                out.append(job_from_row(row))
            except UnreadableJobError as exc:
                if exc.job_id not in self.unreadable:
                    log.warning("job store: skipping job %s: %s", exc.job_id, exc.reason)
                self.unreadable[exc.job_id] = exc.reason
        return out

    # ---------------------------------------------------------------------------------- writes

    def insert(self, job: Job) -> Job:
        row = to_row(job)
        cols = ", ".join(row)
        marks = ", ".join(f":{c}" for c in row)
        with self._access():
            self._db.execute(f"INSERT INTO jobs ({cols}) VALUES ({marks})", row)
            self.generation += 1
        return job

    def update(self, job_id: str, **changes: Any) -> Job:
        """Apply ``changes`` to a job and return the new snapshot (atomically)."""
        with self._access():
            current = self.get(job_id)
            if current is None:
                raise KeyError(job_id)
            new = replace(current, updated_at=time.time(), **changes)
            row = to_row(new)
            changed = {k: v for k, v in row.items() if k in changes or k == "updated_at"}
            sets = ", ".join(f"{k} = :{k}" for k in changed)
            self._db.execute(
                f"UPDATE jobs SET {sets} WHERE id = :id",
                {**changed, "id": job_id},
            )
            self.generation += 1
            return new

    def delete(self, job_id: str) -> None:
        with self._access():
            self._db.execute("BEGIN")
            self._db.execute("DELETE FROM job_logs WHERE job_id = ?", (job_id,))
            self._db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
            self._db.execute("COMMIT")
            self.generation += 1
            self.unreadable.pop(job_id, None)

    def set_positions(self, positions: Mapping[str, float]) -> None:
        with self._access():
            self._db.execute("BEGIN")
            self._db.executemany(
                "UPDATE jobs SET position = ? WHERE id = ?", [(p, j) for j, p in positions.items()]
            )
            self._db.execute("COMMIT")
            self.generation += 1

    def recover_after_crash(self, *, requeue: bool) -> list[Job]:
        """Jobs left active by a crash become interrupted (or queued again)."""
        with self._access():
            active = [s.value for s in ACTIVE_STATES]
            marks = ",".join("?" * len(active))
            rows = self._db.execute(
                f"SELECT id FROM jobs WHERE state IN ({marks})",
                active,
            ).fetchall()
            out = []
            for (job_id,) in rows:
                if job_id in self.unreadable or self.get_or_skip(job_id) is None:
                    continue
                if self.get_meta(CANCEL_KEY + job_id) is not None:
                    # Cancelled by the user, who must not find it back as "interrupted".
                    out.append(
                        self.update(
                            job_id,
                            state=JobState.cancelled,
                            finished_at=time.time(),
                            eta_s=None,
                            stage="cancelled",
                            stage_message="cancelled (the app stopped before the job did)",
                        )
                    )
                elif requeue:
                    out.append(
                        self.update(
                            job_id,
                            state=JobState.queued,
                            stage=None,
                            progress=0.0,
                            step=None,
                            eta_s=None,
                            stage_message="re-queued after the app stopped",
                        )
                    )
                else:
                    out.append(
                        self.update(
                            job_id,
                            state=JobState.interrupted,
                            finished_at=time.time(),
                            eta_s=None,
                            failure=JobFailure(
                                FailureCategory.interrupted,
                                "the app stopped while this job was running",
                                ("retry the job",),
                            ),
                        )
                    )
            self._db.execute("DELETE FROM meta WHERE key LIKE ?", (CANCEL_KEY + "%",))
            return out

    def request_cancel(self, job_id: str) -> None:
        """Remember that the user cancelled this running job, in case the app stops first."""
        self.set_meta(CANCEL_KEY + job_id, str(time.time()))

    def forget_cancel(self, job_id: str) -> None:
        with self._access():
            self._db.execute("DELETE FROM meta WHERE key = ?", (CANCEL_KEY + job_id,))

    # ----------------------------------------------------------------------------------- reads

    def get(self, job_id: str) -> Job | None:
        with self._access():
            row = self._db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return None if row is None else job_from_row(row)

    def get_or_skip(self, job_id: str) -> Job | None:
        """Like get, but a job that cannot be read is reported in ``unreadable`` (and None)."""
        with self._access():
            rows = self._db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchall()
        jobs = self._jobs(rows)
        return jobs[0] if jobs else None

    def list_jobs(
        self,
        *,
        states: Iterable[JobState] | None = None,
        kinds: Iterable[JobKind] | None = None,
        limit: int | None = None,
        offset: int = 0,
        newest_first: bool = True,
    ) -> list[Job]:
        where, args = self._filters(states, kinds)
        order = "created_at DESC, rowid DESC" if newest_first else "created_at, rowid"
        sql = f"SELECT * FROM jobs {where} ORDER BY {order}"
        if limit is not None:
            sql += " LIMIT ? OFFSET ?"
            args += [limit, offset]
        with self._access():
            rows = self._db.execute(sql, args).fetchall()
        return self._jobs(rows)

    def versions(
        self,
        *,
        states: Iterable[JobState] | None = None,
        kinds: Iterable[JobKind] | None = None,
        limit: int | None = None,
    ) -> list[tuple[str, float | None]]:
        """(id, updated_at) newest first: lets a reader rebuild only the jobs that changed."""
        where, args = self._filters(states, kinds)
        sql = f"SELECT id, updated_at FROM jobs {where} ORDER BY created_at DESC, rowid DESC"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        with self._access():
            return [(r[0], r[1]) for r in self._db.execute(sql, args).fetchall()]

    def get_many(self, job_ids: Sequence[str]) -> list[Job]:
        out: list[Job] = []
        for i in range(0, len(job_ids), 500):  # SQLite's bound-parameter limit
            chunk = list(job_ids[i : i + 500])
            with self._access():
                rows = self._db.execute(
                    f"SELECT * FROM jobs WHERE id IN ({','.join('?' * len(chunk))})", chunk
                ).fetchall()
            out += self._jobs(rows)
        return out

    def count(
        self, *, states: Iterable[JobState] | None = None, kinds: Iterable[JobKind] | None = None
    ) -> int:
        where, args = self._filters(states, kinds)
        with self._access():
            return int(
                self._db.execute(
                    f"SELECT COUNT(*) FROM jobs {where}",
                    args,
                ).fetchone()[0]
            )

    def counts_by_state(self, *, kinds: Iterable[JobKind] | None = None) -> dict[JobState, int]:
        where, args = self._filters(None, kinds)
        with self._access():
            rows = self._db.execute(
                f"SELECT state, COUNT(*) FROM jobs {where} GROUP BY state", args
            ).fetchall()
        counts = dict.fromkeys(JobState, 0)
        for state, n in rows:
            if state in _STATE_VALUES:
                counts[JobState(state)] = n
        return counts

    def queued(self) -> list[Job]:
        """Queued jobs in the order they will run."""
        with self._access():
            rows = self._db.execute(
                "SELECT * FROM jobs WHERE state = ? ORDER BY position, created_at",
                (JobState.queued.value,),
            ).fetchall()
        return self._jobs(rows)

    def next_queued(self) -> Job | None:
        with self._access():
            rows = self._db.execute(
                "SELECT * FROM jobs WHERE state = ? ORDER BY position, created_at LIMIT ?",
                (JobState.queued.value, len(self.unreadable) + 1),
            ).fetchall()
        jobs = self._jobs(rows)
        return jobs[0] if jobs else None

    @staticmethod
    def _filters(
        states: Iterable[JobState] | None, kinds: Iterable[JobKind] | None
    ) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        args: list[Any] = []
        if states is not None:
            s = [str(x) for x in states]
            clauses.append(f"state IN ({','.join('?' * len(s))})" if s else "0")
            args += s
        if kinds is not None:
            k = [str(x) for x in kinds]
            clauses.append(f"kind IN ({','.join('?' * len(k))})" if k else "0")
            args += k
        return ("WHERE " + " AND ".join(clauses)) if clauses else "", args

    # ------------------------------------------------------------------------------ logs, meta

    def add_log(self, job_id: str, level: str, message: str) -> None:
        with self._access():
            self._db.execute(
                "INSERT INTO job_logs (job_id, at, level, message) VALUES (?,?,?,?)",
                (job_id, time.time(), level, replace_bad(message)),
            )

    def logs(self, job_id: str, *, limit: int = MAX_LOG_LINES_PER_JOB) -> list[dict[str, Any]]:
        with self._access():
            rows = self._db.execute(
                "SELECT at, level, message FROM job_logs WHERE job_id = ? ORDER BY id LIMIT ?",
                (job_id, limit),
            ).fetchall()
        return [dict(r) for r in rows]

    def get_meta(self, key: str, default: str | None = None) -> str | None:
        with self._access():
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return default if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        with self._access():
            self._db.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    def positions(self, job_ids: Sequence[str]) -> dict[str, float]:
        if not job_ids:
            return {}
        with self._access():
            rows = self._db.execute(
                f"SELECT id, position FROM jobs WHERE id IN ({','.join('?' * len(job_ids))})",
                list(job_ids),
            ).fetchall()
        return {r[0]: r[1] for r in rows}
