"""One pool worker: a Ray actor that runs jobs with the engine's own pipelines.

The actor holds its own pipelines (so its own warm model) and its own ``ModelStore`` (so its own
``ensure()`` on its node). It never writes the server's job store: ``run(job)`` is a streaming
generator whose items are batches of messages, in the order they happened:

- ``("update", changes)``: the job's fields changed (``JobContext.update``);
- ``("event", event)``: a typed engine event (stage, step, preview, warning, log, model loaded…);
- ``("end", state, payload, loaded)``: the last one: ``completed`` with the output files'
  bytes, ``failed`` with the ``JobFailure``, or ``cancelled``; and the models it holds warm now.

The server applies them to its store and bus (``PoolEngine``). This module is plain Python: the
pool wraps the class with ``ray.remote`` when it starts its actors, so importing it needs no Ray.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import platform
import queue
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from wan_desktop.engine.context import JobContext
from wan_desktop.engine.events import Event, EventBus, ModelUnloaded
from wan_desktop.engine.failures import classify
from wan_desktop.engine.hardware import HardwareProfile, read_profile
from wan_desktop.engine.jobs import Job, JobKind, JobState
from wan_desktop.engine.jobstore import JobStore
from wan_desktop.engine.outputs import OutputStore
from wan_desktop.engine.pipelines import context_parallel, registry
from wan_desktop.engine.pipelines.base import LoadedModel, Pipeline
from wan_desktop.engine.settings import EngineSettings
from wan_desktop.models import ModelStore
from wan_desktop.models.cancel import CancelToken
from wan_desktop.models.config import ENV_LOCAL_MIRROR, ENV_MODELS_ROOT
from wan_desktop.models.errors import CancelledError

Message = tuple[Any, ...]
OUTPUT_FILES = ("video", "thumbnail", "sidecar", "subtitles")


class _StreamBus(EventBus):
    """The bus a job's context publishes to on a worker: straight into the job's stream."""

    def __init__(self, out: queue.SimpleQueue[Message]) -> None:
        super().__init__()
        self._out = out

    def publish(self, event: Event) -> None:
        self._out.put(("event", event))


class _StreamContext(JobContext):
    """A ``JobContext`` whose every change of the job also goes to the server."""

    def __init__(self, *, out: queue.SimpleQueue[Message], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._out = out

    def update(self, **changes: Any) -> Job:
        job = super().update(**changes)
        self._out.put(("update", changes))
        return job


def node_settings(
    settings: EngineSettings, *, node: str, home: str, environ: Mapping[str, str]
) -> EngineSettings:
    """The server's settings, on another node with that node's own models folder and mirror.

    Each machine of a cluster keeps its models where its ``MODELS_ROOT`` (and
    ``WAN_LOCAL_MIRROR``) say, as set for ``ray start`` there, so a node fetches a model from its
    own mirror or S3 once instead of each job pulling it from the Hub. On the server's own node,
    the server's settings hold.
    """
    if node == home:
        return settings
    models = settings.models
    if environ.get(ENV_MODELS_ROOT):
        models = replace(models, models_root=Path(environ[ENV_MODELS_ROOT]).expanduser())
    if environ.get(ENV_LOCAL_MIRROR):
        models = replace(models, local_mirror=Path(environ[ENV_LOCAL_MIRROR]).expanduser())
    return replace(settings, models=models)


def _placement_group_id() -> str | None:
    """The hex id of the Ray placement group this actor runs in (None outside Ray or one)."""
    try:
        import ray

        return ray.get_runtime_context().get_placement_group_id()
    except Exception:
        return None


@dataclass
class _Current:
    job_id: str
    cancel: CancelToken
    out: queue.SimpleQueue[Message]


class PoolWorker:
    def __init__(
        self,
        name: str,
        settings: EngineSettings,
        hardware: HardwareProfile | None = None,
        plugins: tuple[str, ...] = (),
        torch_threads: int | None = None,
        home_node: str | None = None,
    ) -> None:
        if home_node is not None:
            import ray

            here = ray.get_runtime_context().get_node_id()
            settings = node_settings(settings, node=here, home=home_node, environ=os.environ)
        for module in plugins:  # e.g. the explainer registers its pipeline for its job kind
            importlib.import_module(module).register()
        if torch_threads is not None:
            import torch

            torch.set_num_threads(torch_threads)
        self.name = name
        self.settings = settings
        self.models = ModelStore(settings.models)
        self._hardware = hardware
        self._pipelines: dict[tuple[JobKind, bool], Pipeline] = {}
        self._lock = threading.Lock()
        self._current: _Current | None = None
        # Outputs are written here, then shipped to the server, which owns the outputs folder.
        self._scratch = Path(tempfile.mkdtemp(prefix="wan-pool-worker-"))
        self._outputs = OutputStore(self._scratch / "outputs")
        # The job's context needs a store; this one is the worker's private scratch copy.
        self._store = JobStore(self._scratch / "jobs.sqlite3")

    # ----------------------------------------------------------------- PipelineHost (narrow)

    @property
    def hardware(self) -> HardwareProfile:
        if self._hardware is None:
            self._hardware = read_profile(self.settings.device)
        return self._hardware

    def publish(self, event: Event) -> None:
        current = self._current
        if current is not None:
            current.out.put(("event", event))

    # ---------------------------------------------------------------------------- queries

    def info(self) -> dict[str, Any]:
        """Where this worker runs and what it holds (cheap: reads no GPU)."""
        node = platform.node()
        with contextlib.suppress(Exception):
            import ray

            node = f"{ray.util.get_node_ip_address()} ({platform.node()})"
        hw = self.hardware
        current = self._current
        return {
            "node": node,
            "device": hw.device,
            "gpu_name": hw.gpu_name,
            "vram_total_mb": hw.vram_total_mb,
            "loaded": [m for p in self._pipes() if (m := p.loaded()) is not None],
            "current_job": current.job_id if current else None,
            "pid": os.getpid(),
            "placement_group": _placement_group_id(),
        }

    def _pipes(self) -> list[Pipeline]:
        with self._lock:
            return list(self._pipelines.values())

    def _pipeline(self, kind: JobKind, mock: bool) -> Pipeline:
        with self._lock:
            if (kind, mock) not in self._pipelines:
                self._pipelines[(kind, mock)] = registry.create(kind, self, mock=mock)
            return self._pipelines[(kind, mock)]

    # ---------------------------------------------------------------------------- commands

    def cancel(self, job_id: str) -> bool:
        """Stop the running job at its next step (or half step). False: not running here."""
        current = self._current
        if current is None or current.job_id != job_id:
            return False
        current.cancel.cancel()
        return True

    def unload(self, reason: str, idle_s: float | None = None) -> list[Event]:
        """Free loaded models (only those idle longer than ``idle_s`` when given)."""
        if self._current is not None:
            return []
        events: list[Event] = []
        now = time.time()
        for p in self._pipes():
            m = p.loaded()
            if m is None or (idle_s is not None and now - m.last_used <= idle_s):
                continue
            p.unload(reason)
            events.append(ModelUnloaded(model_id=m.model_id, variant=m.variant, reason=reason))
        return events

    def loaded(self) -> list[LoadedModel]:
        return [m for p in self._pipes() if (m := p.loaded()) is not None]

    # -------------------------------------------------------------------------------- run

    def group_address(self) -> str:
        """``host:port`` where rank 0 of a multi-GPU job on this worker will listen."""
        import socket

        import ray

        with socket.socket() as sock:
            sock.bind(("", 0))
            port = sock.getsockname()[1]
        return f"{ray.util.get_node_ip_address()}:{port}"

    def run(
        self, job: Job, rank: int = 0, world: int = 1, address: str | None = None
    ) -> Iterator[list[Message]]:
        """Run one job (as ``rank`` of ``world`` for a multi-GPU job); yield its messages in
        batches until the ``end`` message."""
        out: queue.SimpleQueue[Message] = queue.SimpleQueue()
        current = _Current(job.id, CancelToken(message="job cancelled"), out)
        self._current = current
        group = (rank, world, address) if world > 1 and address else None
        thread = threading.Thread(
            target=self._execute, args=(job, current, group), name=f"{self.name}-job", daemon=True
        )
        thread.start()
        try:
            while True:
                batch = [out.get()]
                with contextlib.suppress(queue.Empty):
                    while len(batch) < 256:
                        batch.append(out.get_nowait())
                yield batch
                if batch[-1][0] == "end":
                    return
        finally:
            thread.join()
            self._current = None

    def _execute(self, job: Job, current: _Current, group: tuple[int, int, str] | None) -> None:
        end: Message
        try:
            if group is None:
                end = self._run(job, current)
            else:
                with context_parallel.process_group(*group):
                    end = self._run(job, current, ship=group[0] == 0)
        except BaseException as exc:  # the stream must end whatever happens
            end = ("end", str(JobState.failed), classify(exc, stage=job.stage))
        finally:
            with contextlib.suppress(Exception):
                self._store.delete(job.id)
        current.out.put((*end, self.loaded()))  # what it holds warm now, for the scheduler

    def _run(self, job: Job, current: _Current, ship: bool = True) -> Message:
        """Run the job; ``ship``: send its files (rank 0 of a multi-GPU job writes the video)."""
        with contextlib.suppress(Exception):
            self._store.delete(job.id)
        self._store.insert(job)
        ctx = _StreamContext(
            out=current.out,
            job=job,
            store=self._store,
            bus=_StreamBus(current.out),
            settings=self.settings,
            models=self.models,
            outputs=self._outputs.paths(job.id),
            cancel=current.cancel,
        )
        try:
            pipeline = self._pipeline(job.kind, job.mock)
            output = pipeline.run(ctx)
        except CancelledError:
            ctx.finish_stages()
            return ("end", str(JobState.cancelled), None)
        except Exception as exc:
            ctx.finish_stages()
            failure = classify(exc, stage=ctx.job.stage)
            ctx.log("error", f"{failure.message}\n{failure.detail or ''}".strip())
            return ("end", str(JobState.failed), failure)
        ctx.finish_stages()
        files: dict[str, bytes] = {}
        for name in OUTPUT_FILES:
            path = getattr(output, name)
            if path:
                if ship:
                    files[name] = Path(path).read_bytes()
                Path(path).unlink(missing_ok=True)
        return ("end", str(JobState.completed), {"output": output, "files": files})
