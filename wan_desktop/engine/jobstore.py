"""The job store: SQLite in WAL mode, the single source of truth for the queue and its history.

A job is written before it is queued and every state change is committed before it is announced,
so a crash or a kill loses nothing: queued jobs come back queued, a job that was running comes back
interrupted (or queued again, by setting), and outputs stay linked to their job.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from .jobs import (
    ACTIVE_STATES,
    FailureCategory,
    Job,
    JobFailure,
    JobKind,
    JobOutput,
    JobState,
    Priority,
)

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    state TEXT NOT NULL,
    params TEXT NOT NULL,
    priority INTEGER NOT NULL,
    position REAL NOT NULL,
    mock INTEGER NOT NULL DEFAULT 0,
    model_id TEXT,
    variant TEXT,
    development INTEGER NOT NULL DEFAULT 0,
    label TEXT,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    updated_at REAL,
    stage TEXT,
    stage_message TEXT,
    progress REAL NOT NULL DEFAULT 0,
    step INTEGER,
    total_steps INTEGER,
    eta_s REAL,
    estimate TEXT,
    memory_plan TEXT,
    warnings TEXT,
    failure TEXT,
    output TEXT,
    stages_completed TEXT,
    retry_of TEXT,
    client TEXT
);
CREATE INDEX IF NOT EXISTS jobs_state_position ON jobs(state, position);
CREATE INDEX IF NOT EXISTS jobs_created ON jobs(created_at);
CREATE TABLE IF NOT EXISTS job_logs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT NOT NULL,
    at REAL NOT NULL,
    level TEXT NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS job_logs_job ON job_logs(job_id, id);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

_JSON_FIELDS = {
    "params",
    "estimate",
    "memory_plan",
    "warnings",
    "failure",
    "output",
    "stages_completed",
}
_BOOL_FIELDS = {"mock", "development"}
_COLUMNS = [f.name for f in fields(Job)]
MAX_LOG_LINES_PER_JOB = 2000


class JobStoreError(RuntimeError):
    pass


class JobStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        # Bumped by every write of this store: readers that cache (the API's queue view) can tell
        # in O(1) that nothing changed. Writes by other processes are not counted.
        self.generation = 0
        self._db = sqlite3.connect(
            str(path), check_same_thread=False, isolation_level=None, timeout=10.0
        )
        self._db.row_factory = sqlite3.Row
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode: a committed job survives a crash of the app or a kill -9.
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise JobStoreError(
                    f"{path} was written by a newer Wan Desktop (schema {version}); update the "
                    "app, or move the file away to start a new job history"
                )
            self._db.executescript(_SCHEMA)
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # ---------------------------------------------------------------------------- conversion

    @staticmethod
    def _to_row(job: Job) -> dict[str, Any]:
        row: dict[str, Any] = {}
        for name in _COLUMNS:
            value = getattr(job, name)
            if name in {"failure", "output"}:
                value = None if value is None else json.dumps(value.to_dict())
            elif name in ("warnings", "stages_completed"):
                value = json.dumps(list(value))
            elif name in _JSON_FIELDS:
                value = json.dumps(dict(value))
            elif name in _BOOL_FIELDS:
                value = int(bool(value))
            elif name in ("kind", "state"):
                value = str(value)
            elif name == "priority":
                value = int(value)
            row[name] = value
        return row

    @staticmethod
    def _from_row(row: sqlite3.Row) -> Job:
        d = dict(row)
        d["kind"] = JobKind(d["kind"])
        d["state"] = JobState(d["state"])
        d["priority"] = Priority(d["priority"])
        for name in _BOOL_FIELDS:
            d[name] = bool(d[name])
        d["params"] = json.loads(d["params"])
        d["estimate"] = json.loads(d["estimate"] or "{}")
        d["memory_plan"] = json.loads(d["memory_plan"] or "{}")
        d["warnings"] = tuple(json.loads(d["warnings"] or "[]"))
        d["stages_completed"] = tuple(json.loads(d["stages_completed"] or "[]"))
        d["failure"] = JobFailure.from_dict(json.loads(d["failure"])) if d["failure"] else None
        d["output"] = JobOutput.from_dict(json.loads(d["output"])) if d["output"] else None
        return Job(**d)

    # ---------------------------------------------------------------------------------- writes

    def insert(self, job: Job) -> Job:
        row = self._to_row(job)
        cols = ", ".join(row)
        marks = ", ".join(f":{c}" for c in row)
        with self._lock:
            self._db.execute(f"INSERT INTO jobs ({cols}) VALUES ({marks})", row)
            self.generation += 1
        return job

    def update(self, job_id: str, **changes: Any) -> Job:
        """Apply ``changes`` to a job and return the new snapshot (atomically)."""
        with self._lock:
            current = self.get(job_id)
            if current is None:
                raise KeyError(job_id)
            new = replace(current, updated_at=time.time(), **changes)
            row = self._to_row(new)
            changed = {k: v for k, v in row.items() if k in changes or k == "updated_at"}
            sets = ", ".join(f"{k} = :{k}" for k in changed)
            self._db.execute(
                f"UPDATE jobs SET {sets} WHERE id = :id",
                {**changed, "id": job_id},
            )
            self.generation += 1
            return new

    def delete(self, job_id: str) -> None:
        with self._lock:
            self._db.execute("BEGIN")
            self._db.execute("DELETE FROM job_logs WHERE job_id = ?", (job_id,))
            self._db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
            self._db.execute("COMMIT")
            self.generation += 1

    def set_positions(self, positions: Mapping[str, float]) -> None:
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany(
                "UPDATE jobs SET position = ? WHERE id = ?", [(p, j) for j, p in positions.items()]
            )
            self._db.execute("COMMIT")
            self.generation += 1

    def recover_after_crash(self, *, requeue: bool) -> list[Job]:
        """Jobs left active by a crash become interrupted (or queued again)."""
        with self._lock:
            active = [s.value for s in ACTIVE_STATES]
            marks = ",".join("?" * len(active))
            rows = self._db.execute(
                f"SELECT id FROM jobs WHERE state IN ({marks})",
                active,
            ).fetchall()
            out = []
            for (job_id,) in rows:
                if requeue:
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
            return out

    # ----------------------------------------------------------------------------------- reads

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return None if row is None else self._from_row(row)

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
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        return [self._from_row(r) for r in rows]

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
        with self._lock:
            return [(r[0], r[1]) for r in self._db.execute(sql, args).fetchall()]

    def get_many(self, job_ids: Sequence[str]) -> list[Job]:
        out: list[Job] = []
        for i in range(0, len(job_ids), 500):  # SQLite's bound-parameter limit
            chunk = list(job_ids[i : i + 500])
            with self._lock:
                rows = self._db.execute(
                    f"SELECT * FROM jobs WHERE id IN ({','.join('?' * len(chunk))})", chunk
                ).fetchall()
            out += [self._from_row(r) for r in rows]
        return out

    def count(
        self, *, states: Iterable[JobState] | None = None, kinds: Iterable[JobKind] | None = None
    ) -> int:
        where, args = self._filters(states, kinds)
        with self._lock:
            return int(
                self._db.execute(
                    f"SELECT COUNT(*) FROM jobs {where}",
                    args,
                ).fetchone()[0]
            )

    def counts_by_state(self, *, kinds: Iterable[JobKind] | None = None) -> dict[JobState, int]:
        where, args = self._filters(None, kinds)
        with self._lock:
            rows = self._db.execute(
                f"SELECT state, COUNT(*) FROM jobs {where} GROUP BY state", args
            ).fetchall()
        counts = dict.fromkeys(JobState, 0)
        for state, n in rows:
            counts[JobState(state)] = n
        return counts

    def queued(self) -> list[Job]:
        """Queued jobs in the order they will run."""
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM jobs WHERE state = ? ORDER BY position, created_at",
                (JobState.queued.value,),
            ).fetchall()
        return [self._from_row(r) for r in rows]

    def next_queued(self) -> Job | None:
        with self._lock:
            row = self._db.execute(
                "SELECT * FROM jobs WHERE state = ? ORDER BY position, created_at LIMIT 1",
                (JobState.queued.value,),
            ).fetchone()
        return None if row is None else self._from_row(row)

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
        with self._lock:
            self._db.execute(
                "INSERT INTO job_logs (job_id, at, level, message) VALUES (?,?,?,?)",
                (job_id, time.time(), level, message),
            )

    def logs(self, job_id: str, *, limit: int = MAX_LOG_LINES_PER_JOB) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT at, level, message FROM job_logs WHERE job_id = ? ORDER BY id LIMIT ?",
                (job_id, limit),
            ).fetchall()
        return [dict(r) for r in rows]

    def get_meta(self, key: str, default: str | None = None) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return default if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    def positions(self, job_ids: Sequence[str]) -> dict[str, float]:
        if not job_ids:
            return {}
        with self._lock:
            rows = self._db.execute(
                f"SELECT id, position FROM jobs WHERE id IN ({','.join('?' * len(job_ids))})",
                list(job_ids),
            ).fetchall()
        return {r[0]: r[1] for r in rows}
