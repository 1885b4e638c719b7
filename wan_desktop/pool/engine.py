"""``PoolEngine``: the engine whose jobs run on a pool of Ray actors, one per GPU.

It is an ``Engine`` in every other way: the same job store (the single truth, on the server), the
same commands, the same event bus, so the API, ``/ws``, the desktop app and the CLI see pool jobs
exactly like local ones. Only the worker thread differs: here it is a scheduler that hands each
queued job to an idle actor (one that holds the job's model warm first) and a thread per running
job that applies the actor's streamed messages (``pool/worker.py``) to the store and the bus.

A worker whose process or node dies mid-job makes its job interrupted, or queued again when the
retry setting says so (``WAN_RETRY_INTERRUPTED``, as after a crash of the app); Ray restarts the
actor (``MAX_RESTARTS``), and the scheduler uses it again once it answers.

Placement: the pool holds one actor per GPU for its whole life, so the GPUs a multi-GPU job needs
are already held by workers; reserving them again per job would ask Ray for GPUs that no longer
exist. Instead the workers themselves are created in placement groups of strategy STRICT_PACK, one
per machine (a group is sized to the room of one node: its GPUs, or its CPUs on a machine without
any), each worker in a bundle of one GPU and one CPU. Ray puts every bundle of a STRICT_PACK group
on one node, and keeps it there when an actor restarts (a dead node's group is placed again as a
whole). A job of N GPUs is then given N idle workers of one group (``_team``): co-location is
Ray's guarantee, not a guess from host names.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from wan_desktop.engine.core import _Running
from wan_desktop.engine.errors import EngineError, InvalidInputError
from wan_desktop.engine.events import JobStateChanged
from wan_desktop.engine.hardware import HardwareProfile
from wan_desktop.engine.jobs import Job, JobState
from wan_desktop.engine.pipelines.base import LoadedModel, Pipeline
from wan_desktop.engine.runner import HOUSEKEEPING_S
from wan_desktop.engine.settings import EngineSettings
from wan_desktop.engine.workers import WorkerInfo, WorkerState
from wan_desktop.models.cancel import CancelToken

from .running import RESTART_POLL_S, PoolJobs, Slot, load_ray, log
from .worker import PoolWorker

MAX_RESTARTS = 10  # per actor; a worker that keeps dying is then shown as dead
START_TIMEOUT_S = 120.0  # for every worker to answer once (a node may import torch first)
IDLE_CHECK_S = 5.0
ACTOR_CONCURRENCY = 4  # run() streams while cancel(), info() and unload() answer beside it
PLACEMENT_STRATEGY = "STRICT_PACK"  # every bundle of a group on one node


def _team(idle: list[Slot], job: Job) -> list[Slot]:
    """The idle workers for ``job``: its model warm first, then ones holding nothing. A job of
    N GPUs takes N workers of one placement group (one machine); none where no group has N idle."""
    need = int(job.params.get("gpus") or 1)
    ranked = sorted(idle, key=lambda s: (not s.holds(job), bool(s.loaded)))
    for group in dict.fromkeys(s.group for s in ranked):
        here = [s for s in ranked if s.group == group]
        if len(here) >= need:
            return here[:need]
    return []


def group_sizes(nodes: list[dict[str, Any]], workers: int, resource: str) -> list[int]:
    """How many of ``workers`` go in each STRICT_PACK group: the machines with the most room
    (``resource``, and a CPU per worker) filled first, so a pool keeps its largest teams.
    Raises ``EngineError`` when the cluster has no room for them all."""
    room = sorted(
        (
            int(min(n["Resources"].get(resource, 0), n["Resources"].get("CPU", 0)))
            for n in nodes
            if n.get("Alive", True)
        ),
        reverse=True,
    )
    sizes: list[int] = []
    left = workers
    for here in room:
        if left <= 0:
            break
        if here > 0:
            sizes.append(min(here, left))
            left -= sizes[-1]
    if left > 0:
        kind = "GPUs" if resource == "GPU" else "CPUs"
        raise EngineError(
            f"the Ray cluster has room for {workers - left} workers, not {workers} "
            f"({kind} per machine: {', '.join(map(str, room)) or 'none'}); start fewer with "
            "--workers, or add nodes (ray start --address …)"
        )
    return sizes


def local_pool(settings: EngineSettings, gpus: int) -> PoolEngine:
    """The private pool of ``wan generate --gpus N``: a fresh Ray instance on this machine with N
    workers on its GPUs, or, on a machine without a GPU, N CPU workers sharing its cores (the
    tiny development variants). Refuses N above the GPUs this machine has."""
    import torch

    have = torch.cuda.device_count()
    if 0 < have < gpus:
        raise InvalidInputError(
            {"gpus": f"is {gpus}; this machine has {have} GPUs: use at most {have}"}
        )
    cores = os.cpu_count() or 1
    return PoolEngine(
        settings,
        workers=gpus,
        address="local",  # never someone's running cluster
        num_cpus=None if have else max(cores, gpus),
        torch_threads=None if have else max(1, cores // gpus),
    )


class PoolEngine(PoolJobs):
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
        num_cpus: int | None = None,
        start: bool = True,
    ) -> None:
        """Start (or join, with ``address``) a Ray cluster and ``workers`` actors on it.

        ``workers``: default one per GPU that Ray sees, or one CPU worker where it sees none.
        ``worker_hardware``: a profile for every worker (tests); default each reads its own.
        ``plugins``: modules whose ``register()`` each worker calls (e.g. the explainer).
        ``num_cpus``: of a Ray instance this starts (default: Ray counts the cores).
        """
        ray = load_ray()
        self._slots: list[Slot] = []
        self._groups: list[Any] = []  # Ray placement groups, one per machine (``Slot.group``)
        self._draining = False
        self._last_idle_check = 0.0
        super().__init__(settings, pipelines=pipelines, hardware=hardware, start=False)
        self._owns_ray = not ray.is_initialized()
        try:
            if self._owns_ray:
                ray.init(
                    address=address,
                    num_cpus=num_cpus,
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
        ray = load_ray()
        from ray.util.placement_group import placement_group
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        n = count if count is not None else max(1, gpus)
        if n < 1:
            raise EngineError(f"a pool needs at least one worker, not {n}")
        sizes = group_sizes(ray.nodes(), n, "GPU" if gpus else "CPU")
        bundle = {"CPU": 1.0, "GPU": 1.0} if gpus else {"CPU": 1.0}
        actor_class = ray.remote(PoolWorker)
        home = ray.get_runtime_context().get_node_id()  # the server's node
        for g, size in enumerate(sizes):
            group = placement_group([dict(bundle)] * size, strategy=PLACEMENT_STRATEGY)
            self._groups.append(group)
            for index in range(size):
                name = f"worker-{len(self._slots) + 1}"
                actor = actor_class.options(
                    num_cpus=1,
                    num_gpus=1 if gpus else 0,
                    max_restarts=MAX_RESTARTS,
                    max_task_retries=0,  # a job that a dead worker ran is ours to decide on
                    max_concurrency=ACTOR_CONCURRENCY,
                    scheduling_strategy=PlacementGroupSchedulingStrategy(
                        placement_group=group, placement_group_bundle_index=index
                    ),
                ).remote(name, self.settings, hardware, plugins, torch_threads, home)
                self._slots.append(Slot(name, actor, group=g))
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

    def gpus_per_machine(self) -> int:
        """Workers (GPUs) of the largest placement group: the most one job can use."""
        with self._cond:
            groups = Counter(s.group for s in self._slots if s.state is not WorkerState.dead)
        return max(groups.values(), default=1)

    def gpus_refusal(self, gpus: int) -> str:
        return f"is {gpus}; this pool has at most {self.gpus_per_machine()} on one machine"

    def placement_groups(self) -> list[Any]:
        """The Ray placement groups the workers live in (``Slot.group`` indexes them)."""
        return list(self._groups)

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

    def _assign(self) -> list[tuple[list[Slot], Job]]:
        """Queued jobs for idle workers, in queue order (called with the lock held)."""
        idle = [s for s in self._slots if s.state is WorkerState.idle]
        out: list[tuple[list[Slot], Job]] = []
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

    def _unload_workers(self, reason: str, idle_s: float | None) -> None:
        ray = load_ray()
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
            load_ray().shutdown()

    def _kill_workers(self) -> None:
        ray = load_ray()
        from ray.util.placement_group import remove_placement_group

        for slot in self._slots:
            try:
                ray.kill(slot.actor, no_restart=True)
            except Exception:
                log.debug("pool worker %s was already gone", slot.name)
        for group in self._groups:  # gives their GPUs back to the cluster
            try:
                remove_placement_group(group)
            except Exception:
                log.debug("a placement group of the pool was already gone")
        self._groups = []
