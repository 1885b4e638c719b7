"""Retrieval over the bundled Manim API notes (``manim_notes.md``), in SQLite FTS5.

The index is built on first use from the text file shipped in the package and rebuilt whenever
that file changes (its hash is stored). Searches return the best few notes, short enough to add
to a prompt.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

NOTES_FILE = Path(__file__).with_name("manim_notes.md")
MAX_NOTES = 3
MAX_CHARS = 2500


@dataclass(frozen=True)
class Note:
    title: str
    body: str


def parse_notes(text: str) -> list[Note]:
    notes = []
    for chunk in re.split(r"^## ", text, flags=re.MULTILINE)[1:]:
        title, _, body = chunk.partition("\n")
        notes.append(Note(title.strip(), body.strip()))
    return notes


class NotesIndex:
    def __init__(self, db_path: Path, source: Path = NOTES_FILE) -> None:
        self.db_path = db_path
        self.source = source
        self._lock = threading.Lock()
        self._ready = False

    def ensure(self) -> int:
        """Build or refresh the index; returns the number of notes."""
        text = self.source.read_text("utf-8")
        digest = hashlib.sha256(text.encode()).hexdigest()
        with self._lock, self._connect() as db:
            db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
            row = db.execute("SELECT value FROM meta WHERE key = 'source_sha256'").fetchone()
            if row is None or row[0] != digest:
                db.execute("DROP TABLE IF EXISTS notes")
                db.execute("CREATE VIRTUAL TABLE notes USING fts5(title, body)")
                db.executemany(
                    "INSERT INTO notes (title, body) VALUES (?, ?)",
                    [(n.title, n.body) for n in parse_notes(text)],
                )
                db.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES ('source_sha256', ?)",
                    (digest,),
                )
            count = int(db.execute("SELECT count(*) FROM notes").fetchone()[0])
            self._ready = True
            return count

    def search(self, terms: list[str], *, limit: int = MAX_NOTES) -> list[Note]:
        words = {w.lower() for t in terms for w in re.findall(r"[A-Za-z][A-Za-z0-9_]{1,}", t)}
        if not words:
            return []
        if not self._ready:
            self.ensure()
        query = " OR ".join(f'"{w}"' for w in sorted(words))
        with self._lock, self._connect() as db:
            rows = db.execute(
                "SELECT title, body FROM notes WHERE notes MATCH ? ORDER BY bm25(notes, 5.0, 1.0)"
                " LIMIT ?",
                (query, limit),
            ).fetchall()
        return [Note(t, b) for t, b in rows]

    def notes_text(self, terms: list[str]) -> str:
        out: list[str] = []
        used = 0
        for note in self.search(terms):
            block = f"## {note.title}\n{note.body}"
            if used + len(block) > MAX_CHARS:
                break
            out.append(block)
            used += len(block)
        return "\n\n".join(out)

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """A connection that commits (or rolls back) and closes."""
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.db_path)
        try:
            with conn:
                yield conn
        finally:
            conn.close()
