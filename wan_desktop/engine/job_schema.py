"""The job store's file: its SQLite schema and version, and opening it (WAL, read-only found early).

A file written by a newer version is refused, not rewritten; a write-protected one opens for
reading, and the store's health says so.
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import replace
from pathlib import Path

from .errors import JobStoreError
from .store_recovery import StoreHealth, folder_is_read_only, primary_code, store_uri

log = logging.getLogger("wan_desktop.engine.store")

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


def _text(raw: bytes) -> str:
    # A TEXT value that is not UTF-8 (written by another tool) must not fail a whole listing:
    # decode it with escapes, and _from_row refuses that one row.
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("utf-8", "surrogateescape")


def open_store(path: Path, health: StoreHealth) -> tuple[sqlite3.Connection, StoreHealth]:
    """Connect to ``path``, create or check its schema; the health gains a read-only file."""
    frozen = folder_is_read_only(path)
    db = sqlite3.connect(
        store_uri(path, frozen=frozen) if frozen else str(path),
        uri=frozen,
        check_same_thread=False,
        isolation_level=None,
        timeout=10.0,
    )
    db.row_factory = sqlite3.Row
    db.text_factory = _text
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        db.close()
        raise JobStoreError(
            f"{path} was written by a newer Wan Desktop (schema {version}); update the "
            "app, or move the file away to start a new job history"
        )
    try:
        db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode: a committed job survives a crash of the app or a kill -9.
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA foreign_keys=ON")
        db.executescript(_SCHEMA)
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        # A write, rolled back: a write-protected file or folder shows here, not at the
        # first job (and the file is left untouched).
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute("DELETE FROM meta WHERE key = ''")
        finally:
            db.execute("ROLLBACK")
    except sqlite3.OperationalError as exc:
        if primary_code(exc) != sqlite3.SQLITE_READONLY:
            db.close()
            raise JobStoreError(f"cannot open the job store {path}: {exc}") from exc
        health = replace(
            health,
            problem=_join(health.problem, "the job store is read-only"),
            action=_join(
                health.action,
                "history can be read but no job can be added or run until the file "
                "and its folder are writable again and the app restarts",
            ),
            read_only=True,
        )
        log.error("job store %s: %s", path, health.message)
    return db, health


def _join(first: str | None, second: str) -> str:
    return second if not first else f"{first}; {second}"
