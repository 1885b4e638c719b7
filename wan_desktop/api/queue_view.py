"""The queue as the contract shows it, fast with a long history.

``GET /queue`` with a thousand finished jobs must answer in milliseconds. Rebuilding every Job
from its row (six JSON columns each) costs more than that, so Task dicts (and their JSON) are
cached by (id, updated_at): each request reads only the lean (id, updated_at) list, newest first,
rebuilds just the jobs that changed since, and joins the cached JSON.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from typing import Any

from wan_desktop.engine import Engine, JobKind, JobState

from .mapping import STATES_OF, Mapper

KINDS = (JobKind.wan,)


class QueueView:
    def __init__(self, engine: Engine, mapper: Mapper) -> None:
        self.engine = engine
        self.mapper = mapper
        self._tasks: dict[str, tuple[float | None, dict[str, Any], str]] = {}
        self._lock = threading.Lock()
        self._last: dict[tuple[frozenset[JobState] | None, int | None], tuple[int, str]] = {}

    def _entries(
        self, states: Iterable[JobState] | None, limit: int | None
    ) -> list[tuple[float | None, dict[str, Any], str]]:
        store = self.engine.store
        versions = store.versions(states=states, kinds=KINDS, limit=limit)
        with self._lock:
            stale = [jid for jid, upd in versions if self._tasks.get(jid, (None,))[0] != upd]
        if stale:
            fresh = store.get_many(stale)
            with self._lock:
                for job in fresh:
                    task = self.mapper.task(job)
                    self._tasks[job.id] = (job.updated_at, task, json.dumps(task))
                if len(self._tasks) > 4 * max(1000, len(versions)):
                    keep = {jid for jid, _ in versions}
                    self._tasks = {k: v for k, v in self._tasks.items() if k in keep}
        with self._lock:
            return [self._tasks[jid] for jid, _ in versions if jid in self._tasks]

    def tasks(
        self, *, states: Iterable[JobState] | None = None, limit: int | None = None
    ) -> list[dict[str, Any]]:
        return [task for _, task, _ in self._entries(states, limit)]

    def tasks_json(
        self, *, states: Iterable[JobState] | None = None, limit: int | None = None
    ) -> str:
        """The task list as a JSON array, joined from per-task JSON kept with the cache."""
        return "[" + ",".join(text for _, _, text in self._entries(states, limit)) + "]"

    def counts(self) -> dict[str, int]:
        by_state = self.engine.store.counts_by_state(kinds=KINDS)
        out = {
            status: sum(by_state.get(s, 0) for s in states) for status, states in STATES_OF.items()
        }
        return {
            "total_tasks": sum(by_state.values()),
            "pending_tasks": out["pending"],
            "processing_tasks": out["processing"],
            "completed_tasks": out["completed"],
            "failed_tasks": out["failed"],
            "cancelled_tasks": out["cancelled"],
        }
