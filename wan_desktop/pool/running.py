"""Running one pool job on its workers: the job's team of actors (rank 0 reports, the others
compute beside it), the lead's streamed messages applied to the store and the bus, the files it
made written where the server keeps outputs, and a worker lost mid-job (interrupted, or queued
again) until Ray has restarted it.

``PoolJobs`` is the part of ``PoolEngine`` (``pool/engine.py``) that a job's own thread runs; the
scheduler that starts those threads is there.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any

from wan_desktop.engine.context import JobContext
from wan_desktop.engine.core import _Running
from wan_desktop.engine.engine import Engine
from wan_desktop.engine.errors import EngineError
from wan_desktop.engine.events import JobLog, JobStateChanged, QueueChanged
from wan_desktop.engine.failures import classify
from wan_desktop.engine.jobs import FailureCategory, Job, JobFailure, JobOutput, JobState
from wan_desktop.engine.pipelines.base import LoadedModel
from wan_desktop.engine.workers import WorkerState
from wan_desktop.models.atomic import atomic_write

from .worker import OUTPUT_FILES, Message

log = logging.getLogger("wan_desktop.pool")

RESTART_POLL_S = 5.0
INSTALL_HINT = "the pool needs Ray: pip install 'wan-desktop[pool]' (scripts/setup.sh --dev)"


class _StreamEndedError(Exception):
    """A worker's stream stopped before its ``end`` message."""


def load_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise EngineError(INSTALL_HINT) from exc
    return ray


@dataclass
class Slot:
    name: str
    actor: Any
    state: WorkerState = WorkerState.starting
    info: dict[str, Any] = field(default_factory=dict)
    loaded: list[LoadedModel] = field(default_factory=list)
    running: _Running | None = None
    restarts: int = 0
    thread: threading.Thread | None = None
    group: int = 0  # index of its placement group (one machine): a team is of one group

    def holds(self, job: Job) -> bool:
        return any(m.model_id == job.model_id and m.variant == job.variant for m in self.loaded)


class PoolJobs(Engine):
    """An ``Engine`` whose jobs run on the actors in ``_slots`` (started by ``PoolEngine``)."""

    _slots: list[Slot]
    _draining: bool

    def _dispatch(self, team: list[Slot], job: Job) -> None:
        """Rank 0 reports; the other ranks of a multi-GPU job compute beside it, unheard."""
        ray = load_ray()
        slot, world = team[0], len(team)
        address = None
        helpers = []
        if world > 1:
            try:
                address = ray.get(slot.actor.group_address.remote(), timeout=RESTART_POLL_S)
            except Exception:
                log.exception("pool job %s: no address for its process group", job.id)
            for rank, other in enumerate(team[1:], start=1):
                other.thread = threading.Thread(
                    target=self._helper,
                    args=(other, job, rank, world, address),
                    name=f"pool-{other.name}",
                    daemon=True,
                )
                other.thread.start()
                helpers.append(other.thread)
        self._lead(slot, job, world, address)
        for thread in helpers:
            thread.join()

    def _helper(self, slot: Slot, job: Job, rank: int, world: int, address: str | None) -> None:
        ray = load_ray()
        try:
            for ref in slot.actor.run.remote(job, rank, world, address):
                ray.get(ref)  # rank 0 tells the job's story; this one only computes
        except ray.exceptions.RayActorError as exc:
            log.warning(
                "pool worker %s stopped during job %s (rank %d): %s", slot.name, job.id, rank, exc
            )
            with self._cond:
                slot.loaded, slot.restarts, slot.state = (
                    [],
                    slot.restarts + 1,
                    WorkerState.restarting,
                )
            self._await_worker(slot)
        except Exception:
            log.exception("pool job %s rank %d on %s", job.id, rank, slot.name)
        finally:
            self._refresh_loaded(slot)
            with self._cond:
                slot.running = None
                if slot.state is WorkerState.busy:
                    slot.state = WorkerState.idle
                self._cond.notify_all()

    def _lead(self, slot: Slot, job: Job, world: int, address: str | None) -> None:
        ray = load_ray()
        running = slot.running
        assert running is not None
        ctx = self.job_context(job, running.cancel)
        heard = ended = False
        try:
            for ref in slot.actor.run.remote(job, 0, world, address):
                for message in ray.get(ref):
                    heard = True
                    ended = self._apply(slot, ctx, running, message) or ended
            if not ended:
                raise _StreamEndedError("the worker's stream ended before the job did")
        except (ray.exceptions.RayActorError, _StreamEndedError) as exc:
            with self._cond:
                slot.loaded = []  # a new process holds nothing
            self._worker_lost(slot, ctx, heard=heard, exc=exc)
            self._await_worker(slot)
        except Exception as exc:  # a message that could not be applied: the job fails, visibly
            log.exception("pool job %s on %s", job.id, slot.name)
            if not ctx.job.finished:
                self._finish(ctx, JobState.failed, classify(exc, stage=ctx.job.stage))
        finally:
            with self._cond:
                slot.running = None
                if slot.state is WorkerState.busy:
                    slot.state = WorkerState.idle
                self._cond.notify_all()

    def _apply(self, slot: Slot, ctx: JobContext, running: _Running, message: Message) -> bool:
        kind = message[0]
        if kind == "update":
            ctx.update(**message[1])
        elif kind == "event":
            event = message[1]
            if isinstance(event, JobLog):
                self.store.add_log(event.job_id, event.level, event.message)
            elif isinstance(event, JobStateChanged):  # the server's row is the one to show
                event = JobStateChanged(job=ctx.job, previous=event.previous, at=event.at)
            self.publish(event)
        elif kind == "end":
            with self._cond:
                slot.loaded = list(message[3])
            self._end(ctx, running, JobState(message[1]), message[2])
            return True
        return False

    def _end(self, ctx: JobContext, running: _Running, state: JobState, payload: Any) -> None:
        if state is JobState.completed:
            paths = self.outputs.paths(ctx.job_id)
            output: JobOutput = payload["output"]
            moved: dict[str, Any] = {}
            for name in OUTPUT_FILES:
                data = payload["files"].get(name)
                if data is not None:
                    dest = getattr(paths, name)
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    atomic_write(dest, data)
                    moved[name] = str(dest)
            ctx.update(output=replace(output, **moved))
            self._finish(ctx, JobState.completed, None)
        elif state is JobState.cancelled and running.reason == "shutdown":
            self._finish(
                ctx,
                JobState.interrupted,
                JobFailure(
                    FailureCategory.interrupted,
                    "the server was stopped while this job ran",
                    ("retry the job",),
                    stage=ctx.job.stage,
                ),
            )
        elif state is JobState.cancelled:
            self._finish(ctx, JobState.cancelled, None)
        else:
            self._finish(ctx, JobState.failed, payload)

    def _worker_lost(self, slot: Slot, ctx: JobContext, *, heard: bool, exc: Exception) -> None:
        with self._cond:
            slot.restarts += 1
            slot.state = WorkerState.restarting
        job = ctx.job
        log.warning("pool worker %s stopped during job %s: %s", slot.name, job.id, exc)
        if job.finished:
            return
        if heard and not self.settings.retry_interrupted:
            ctx.log("error", f"{slot.name} stopped while running this job: {exc}")
            self._finish(
                ctx,
                JobState.interrupted,
                JobFailure(
                    FailureCategory.interrupted,
                    f"the pool worker running this job stopped ({slot.name}: its process or its "
                    "node died)",
                    ("retry the job",),
                    stage=job.stage,
                    detail=str(exc),
                ),
            )
            return
        # It never started there, or the retry setting says so: it goes back to its place.
        why = "its pool worker stopped; re-queued" if heard else "waiting for a pool worker"
        if heard:
            ctx.log("warning", f"{slot.name} stopped while running this job; re-queued")
        queued = self.store.update(
            job.id,
            state=JobState.queued,
            stage=None,
            progress=0.0,
            step=None,
            eta_s=None,
            started_at=None,
            stage_message=why,
        )
        self.publish(JobStateChanged(job=queued, previous=job.state))
        self.publish(QueueChanged(reason="requeued", job_ids=(job.id,), paused=self._paused))

    def _await_worker(self, slot: Slot) -> None:
        """Wait until Ray has restarted the actor (or gave up on it)."""
        ray = load_ray()
        while not (self._draining or self._stopping):
            try:
                info = ray.get(slot.actor.info.remote(), timeout=RESTART_POLL_S)
            except ray.exceptions.ActorDiedError as exc:
                log.error("pool worker %s will not come back: %s", slot.name, exc)
                with self._cond:
                    slot.state = WorkerState.dead
                return
            except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
                time.sleep(0.2)
                continue
            with self._cond:
                slot.info, slot.loaded, slot.state = info, list(info["loaded"]), WorkerState.idle
            log.info("pool worker %s is back (restart %d)", slot.name, slot.restarts)
            return

    def _refresh_loaded(self, slot: Slot) -> None:
        ray = load_ray()
        try:
            loaded = ray.get(slot.actor.loaded.remote(), timeout=RESTART_POLL_S)
        except Exception:
            return  # restarting or dead: it holds nothing we know of
        with self._cond:
            slot.loaded = list(loaded)
