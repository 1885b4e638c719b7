"""``PoolEngine``: the engine whose jobs run on a pool of Ray actors, one per GPU.

It is an ``Engine`` in every other way: the same job store (the single truth, on the server), the
same commands, the same event bus, so the API, ``/ws``, the desktop app and the CLI see pool jobs
exactly like local ones. Only the worker thread differs: here it is a scheduler that hands each
queued job to an idle actor (one that holds the job's model warm first) and a thread per running
job that applies the actor's streamed messages (``pool/worker.py``) to the store and the bus.

A worker whose process or node dies mid-job makes its job interrupted, or queued again when the
retry setting says so (``WAN_RETRY_INTERRUPTED``, as after a crash of the app); Ray restarts the
actor (``MAX_RESTARTS``), and the scheduler uses it again once it answers.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from wan_desktop.engine.context import JobContext
from wan_desktop.engine.core import _Running
from wan_desktop.engine.engine import Engine
from wan_desktop.engine.errors import EngineError, InvalidInputError
from wan_desktop.engine.events import (
    JobLog,
    JobStateChanged,
    QueueChanged,
)
from wan_desktop.engine.failures import classify
from wan_desktop.engine.hardware import HardwareProfile
from wan_desktop.engine.jobs import (
    FailureCategory,
    Job,
    JobFailure,
    JobOutput,
    JobSpec,
    JobState,
)
from wan_desktop.engine.pipelines.base import LoadedModel, Pipeline
from wan_desktop.engine.runner import HOUSEKEEPING_S
from wan_desktop.engine.settings import EngineSettings
from wan_desktop.engine.workers import WorkerInfo, WorkerState
from wan_desktop.models.atomic import atomic_write
from wan_desktop.models.cancel import CancelToken

from .worker import OUTPUT_FILES, Message, PoolWorker

log = logging.getLogger("wan_desktop.pool")

MAX_RESTARTS = 10  # per actor; a worker that keeps dying is then shown as dead
START_TIMEOUT_S = 120.0  # for every worker to answer once (a node may import torch first)
RESTART_POLL_S = 5.0
IDLE_CHECK_S = 5.0
ACTOR_CONCURRENCY = 4  # run() streams while cancel(), info() and unload() answer beside it
INSTALL_HINT = "the pool needs Ray: pip install 'wan-desktop[pool]' (scripts/setup.sh --dev)"


class _StreamEndedError(Exception):
    """A worker's stream stopped before its ``end`` message."""


def _team(idle: list[_Slot], job: Job) -> list[_Slot]:
    """The idle workers for ``job``: its model warm first, then ones holding nothing. A job of
    N GPUs takes N workers of one machine; none where no machine has N idle."""
    need = int(job.params.get("gpus") or 1)
    ranked = sorted(idle, key=lambda s: (not s.holds(job), bool(s.loaded)))
    for node in dict.fromkeys(str(s.info.get("node")) for s in ranked):
        here = [s for s in ranked if str(s.info.get("node")) == node]
        if len(here) >= need:
            return here[:need]
    return []


def _ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise EngineError(INSTALL_HINT) from exc
    return ray


@dataclass
class _Slot:
    name: str
    actor: Any
    state: WorkerState = WorkerState.starting
    info: dict[str, Any] = field(default_factory=dict)
    loaded: list[LoadedModel] = field(default_factory=list)
    running: _Running | None = None
    restarts: int = 0
    thread: threading.Thread | None = None

    def holds(self, job: Job) -> bool:
        return any(m.model_id == job.model_id and m.variant == job.variant for m in self.loaded)


class PoolEngine(Engine):
    def __init__(
        self,
        settings: EngineSettings | None = None,
        *,
        workers: int | None = None,
        address: str | None = None,
        pipelines: Iterable[Pipeline] | None = None,
        hardware: HardwareProfile | None = None,
        worker_hardware: HardwareProfile | None = None,
        plugins: tuple[str, ...] = (),
        torch_threads: int | None = None,
        start: bool = True,
    ) -> None:
        """Start (or join, with ``address``) a Ray cluster and ``workers`` actors on it.

        ``workers``: default one per GPU that Ray sees, or one CPU worker where it sees none.
        ``worker_hardware``: a profile for every worker (tests); default each reads its own.
        ``plugins``: modules whose ``register()`` each worker calls (e.g. the explainer).
        """
        ray = _ray()
        self._slots: list[_Slot] = []
        self._draining = False
        self._last_idle_check = 0.0
        super().__init__(settings, pipelines=pipelines, hardware=hardware, start=False)
        self._owns_ray = not ray.is_initialized()
        try:
            if self._owns_ray:
                ray.init(
                    address=address,
                    include_dashboard=False,
                    log_to_driver=False,
                    configure_logging=False,
                )
            self._start_workers(workers, worker_hardware, plugins, torch_threads)
        except BaseException:
            self._kill_workers()
            super().shutdown()
            if self._owns_ray:
                ray.shutdown()
            raise
        if start:
            self.start()

    def _start_workers(
        self,
        count: int | None,
        hardware: HardwareProfile | None,
        plugins: tuple[str, ...],
        torch_threads: int | None,
    ) -> None:
        ray = _ray()
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        n = count if count is not None else max(1, gpus)
        if n < 1:
            raise EngineError(f"a pool needs at least one worker, not {n}")
        actor_class = ray.remote(PoolWorker)
        home = ray.get_runtime_context().get_node_id()  # the server's node
        for i in range(n):
            name = f"worker-{i + 1}"
            actor = actor_class.options(
                num_cpus=1,
                num_gpus=1 if gpus else 0,
                max_restarts=MAX_RESTARTS,
                max_task_retries=0,  # a job that a dead worker ran is ours to decide on
                max_concurrency=ACTOR_CONCURRENCY,
            ).remote(name, self.settings, hardware, plugins, torch_threads, home)
            self._slots.append(_Slot(name, actor))
        refs = [s.actor.info.remote() for s in self._slots]
        try:
            infos = ray.get(refs, timeout=START_TIMEOUT_S)
        except ray.exceptions.GetTimeoutError:
            raise EngineError(
                f"the Ray cluster has no room for {n} workers within {START_TIMEOUT_S:.0f} s "
                f"(it has {resources.get('GPU', 0):g} GPUs, {resources.get('CPU', 0):g} CPUs); "
                "start fewer with --workers, or add nodes (ray start --address …)"
            ) from None
        except ray.exceptions.RayError as exc:  # a worker failed to start (e.g. an import)
            raise EngineError(
                f"a pool worker did not start: {exc}; check that every node has the same "
                "wan-desktop installed (pip install 'wan-desktop[pool]')"
            ) from exc
        for slot, info in zip(self._slots, infos, strict=True):
            slot.info, slot.loaded, slot.state = info, list(info["loaded"]), WorkerState.idle
        log.info("pool of %d workers (%d GPUs in the cluster)", n, gpus)

    # ---------------------------------------------------------------------------- queries

    def workers(self) -> list[WorkerInfo]:
        with self._cond:
            slots = [replace(s) for s in self._slots]
        return [
            WorkerInfo(
                name=s.name,
                node=str(s.info.get("node", "?")),
                device=str(s.info.get("device", "?")),
                gpu_name=s.info.get("gpu_name"),
                vram_total_mb=float(s.info.get("vram_total_mb") or 0.0),
                state=s.state,
                loaded_model=(
                    f"{s.loaded[0].model_id} ({s.loaded[0].variant})" if s.loaded else None
                ),
                current_job=s.running.job_id if s.running else None,
                restarts=s.restarts,
            )
            for s in slots
        ]

    def actor(self, name: str) -> Any:
        """The Ray actor of the worker called ``name`` (for operators' tools and tests)."""
        for slot in self._slots:
            if slot.name == name:
                return slot.actor
        raise EngineError(f"the pool has no worker {name!r}")

    def loaded_models(self) -> list[LoadedModel]:
        with self._cond:
            return [m for s in self._slots for m in s.loaded]

    @property
    def running_job_ids(self) -> list[str]:
        with self._cond:
            return [s.running.job_id for s in self._slots if s.running]

    @property
    def running_job_id(self) -> str | None:
        ids = self.running_job_ids
        return ids[0] if ids else None

    # ---------------------------------------------------------------------------- commands

    def submit(self, spec: JobSpec) -> Job:
        """Also refuses a job that asks for more GPUs than one machine of the pool has."""
        params = self.pipeline(spec.kind).validate(spec.params)  # names every bad field first
        gpus = int(params.get("gpus") or 1)
        most = self.gpus_per_machine()
        if gpus > most:
            raise InvalidInputError(
                {"gpus": f"is {gpus}; this pool has at most {most} on one machine"}
            )
        return super().submit(spec)

    def gpus_per_machine(self) -> int:
        """Workers (GPUs) on the machine that has the most: the most one job can use."""
        with self._cond:
            nodes = Counter(str(s.info.get("node")) for s in self._slots)
        return max(nodes.values(), default=1)

    def cancel(self, job_id: str) -> Job:
        with self._cond:
            team = [s for s in self._slots if s.running and s.running.job_id == job_id]
            for slot in team:  # every rank of a multi-GPU job
                assert slot.running is not None
                slot.running.reason = "cancelled"
                slot.running.cancel.cancel()
                slot.actor.cancel.remote(job_id)  # stops it at its next step
            if team:
                return self.get(job_id)
        return super().cancel(job_id)

    # --------------------------------------------------------------------------- scheduler

    def _work(self) -> None:
        while True:
            with self._cond:
                if self._stopping or self._draining:
                    return
                reason, self._unload_requested = self._unload_requested, None
                assigned = [] if self._paused else self._assign()
                if not assigned and reason is None:
                    self._cond.wait(HOUSEKEEPING_S)
            if reason is not None:
                self._unload_workers(reason, None)
            for team, job in assigned:
                thread = threading.Thread(
                    target=self._dispatch,
                    args=(team, job),
                    name=f"pool-{team[0].name}",
                    daemon=True,
                )
                team[0].thread = thread
                thread.start()
            if not assigned and reason is None:
                self._unload_idle_workers()

    def _assign(self) -> list[tuple[list[_Slot], Job]]:
        """Queued jobs for idle workers, in queue order (called with the lock held)."""
        idle = [s for s in self._slots if s.state is WorkerState.idle]
        out: list[tuple[list[_Slot], Job]] = []
        for job in self.store.queued() if idle else ():
            team = _team(idle, job)
            if not team:
                break  # the next job waits for enough GPUs on one machine: queue order holds
            running = _Running(job.id, CancelToken(message="job cancelled"))
            for slot in team:
                idle.remove(slot)
                slot.state = WorkerState.busy
                slot.running = running
            started = self.store.update(
                job.id,
                state=JobState.preparing,
                started_at=time.time(),
                progress=0.0,
                failure=None,
                stage_message="on " + ", ".join(s.name for s in team),
            )
            self.publish(JobStateChanged(job=started, previous=job.state))
            out.append((team, started))
        return out

    def _dispatch(self, team: list[_Slot], job: Job) -> None:
        """Rank 0 reports; the other ranks of a multi-GPU job compute beside it, unheard."""
        ray = _ray()
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

    def _helper(self, slot: _Slot, job: Job, rank: int, world: int, address: str | None) -> None:
        ray = _ray()
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

    def _lead(self, slot: _Slot, job: Job, world: int, address: str | None) -> None:
        ray = _ray()
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

    def _apply(self, slot: _Slot, ctx: JobContext, running: _Running, message: Message) -> bool:
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

    def _worker_lost(self, slot: _Slot, ctx: JobContext, *, heard: bool, exc: Exception) -> None:
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

    def _await_worker(self, slot: _Slot) -> None:
        """Wait until Ray has restarted the actor (or gave up on it)."""
        ray = _ray()
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

    def _refresh_loaded(self, slot: _Slot) -> None:
        ray = _ray()
        try:
            loaded = ray.get(slot.actor.loaded.remote(), timeout=RESTART_POLL_S)
        except Exception:
            return  # restarting or dead: it holds nothing we know of
        with self._cond:
            slot.loaded = list(loaded)

    def _unload_workers(self, reason: str, idle_s: float | None) -> None:
        ray = _ray()
        with self._cond:
            idle = [s for s in self._slots if s.state is WorkerState.idle]
        for slot in idle:
            try:
                events = ray.get(slot.actor.unload.remote(reason, idle_s), timeout=RESTART_POLL_S)
            except Exception:
                continue
            if events:
                self._refresh_loaded(slot)  # before the news: a listener may ask at once
            for event in events:
                self.publish(event)

    def _unload_idle_workers(self) -> None:
        limit = self.settings.idle_unload_s
        now = time.monotonic()
        if limit <= 0 or now - self._last_idle_check < IDLE_CHECK_S:
            return
        self._last_idle_check = now
        with self._cond:
            warm = any(s.loaded for s in self._slots if s.state is WorkerState.idle)
        if warm:
            self._unload_workers("idle", limit)

    # ---------------------------------------------------------------------------- shutdown

    def shutdown(self, *, timeout: float = 30.0) -> None:
        """Running jobs stop at their next step and become interrupted; the actors end."""
        with self._cond:
            if self._draining:
                return
            self._draining = True
            for slot in self._slots:
                if slot.running is not None:
                    slot.running.reason = "shutdown"
                    slot.running.cancel.cancel()
                    slot.actor.cancel.remote(slot.running.job_id)
            threads = [s.thread for s in self._slots if s.thread is not None]
            self._cond.notify_all()
        deadline = time.monotonic() + timeout
        for thread in threads:
            thread.join(max(0.1, deadline - time.monotonic()))
        self._kill_workers()
        super().shutdown(timeout=timeout)
        if self._owns_ray:
            _ray().shutdown()

    def _kill_workers(self) -> None:
        ray = _ray()
        for slot in self._slots:
            try:
                ray.kill(slot.actor, no_restart=True)
            except Exception:
                log.debug("pool worker %s was already gone", slot.name)
