"""The one engine interface the desktop app uses: commands, queries, events and a models view.

The local ``Engine`` implements it (``engine.py``), and so does ``remote.RemoteEngine``, a client
of a ``wan serve`` on another machine. Panels ask this interface, never an engine's insides
(its job store, its model store, its settings object), so the app cannot tell the two apart
except by what ``info.location`` and the link events say.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, Self

from wan_desktop.models import (
    DiskUsage,
    GcReport,
    Manifest,
    ModelSpec,
    ModelStore,
    VariantSpec,
    VerifyReport,
)
from wan_desktop.models import env as envvars
from wan_desktop.models.config import ENV_QUOTA
from wan_desktop.models.settings import load_settings, save_settings

from .estimate import FitVerdict
from .events import Event, Listener, MemorySample, Subscription
from .hardware import HardwareProfile
from .jobs import Job, JobKind, JobSpec, JobState
from .model_catalog import Catalog, scan
from .pipelines.base import LoadedModel

THIS_COMPUTER = "this computer"


@dataclass(frozen=True)
class EngineInfo:
    """The engine settings the app shows (read-only; ``tune`` changes the tunable ones)."""

    data_dir: Path
    outputs_dir: Path
    loras_dir: Path
    models_root: Path
    memory_sample_s: float
    preview_every: int
    idle_unload_s: float
    dev_mode: bool
    mock: bool
    location: str = THIS_COMPUTER  # where the engine runs: this computer or a server's address
    extra: Mapping[str, Any] = field(default_factory=dict)  # e.g. the explainer's settings


@dataclass(frozen=True, kw_only=True)
class LinkChanged(Event):
    """The link to a remote engine went up, down or is being re-established.

    A local engine never publishes it: its link is always up.
    """

    state: str  # "up", "down", "reconnecting"
    reason: str = ""
    what_to_do: str = ""


class Lifecycle:
    """An engine's life, the local one's and a server's client's alike: ``start`` begins it once
    (a second call does nothing), and ``with engine:`` shuts it down at the end."""

    _started = False

    def start(self) -> None:
        if self._started:
            return
        self._started = True
        self._begin()

    def _begin(self) -> None:
        raise NotImplementedError

    def shutdown(self, *, timeout: float = 30.0) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


class ModelsView(Protocol):
    """The engine's models: the manifest, what is on disk, and the commands on them."""

    @property
    def manifest(self) -> Manifest: ...

    @property
    def dev_mode(self) -> bool: ...

    @property
    def local_mirror(self) -> Path | None: ...

    @property
    def max_age_s(self) -> float | None: ...

    @property
    def quota_bytes(self) -> int | None:
        """The quota in force (the environment's override or the saved one)."""
        ...

    @property
    def quota_override(self) -> str | None:
        """The environment value that wins over the saved quota, if any."""
        ...

    def resolve(
        self, model_id: str, variant: str | None = None
    ) -> tuple[ModelSpec, VariantSpec]: ...

    def catalog(self) -> Catalog:
        """Every variant usable now with its status, pins and use; blocking."""
        ...

    def disk_usage(self) -> DiskUsage: ...

    def verify(self, model_id: str, variant: str | None = None) -> VerifyReport: ...

    def delete(self, model_id: str, variant: str | None = None) -> int: ...

    def discard_partial(self, dir_name: str) -> int:
        """Remove what an unfinished download left in folder ``dir_name``; the bytes freed."""
        ...

    def pin(self, model_id: str, variant: str | None = None, *, pinned: bool = True) -> bool: ...

    def gc(self, *, max_size: int | None = None, dry_run: bool = False) -> GcReport: ...

    def saved_quota(self) -> int | None:
        """The quota in the orchestrator's settings file; blocking."""
        ...

    def set_quota(self, quota_bytes: int | None) -> None:
        """Save the quota and use it from now on (unless the environment's value rules)."""
        ...


class EngineFace(Protocol):
    """What the desktop app needs of an engine, local or remote."""

    # ---------------------------------------------------------------------------- state
    @property
    def info(self) -> EngineInfo: ...

    @property
    def hardware(self) -> HardwareProfile: ...

    @property
    def models_view(self) -> ModelsView: ...

    @property
    def paused(self) -> bool: ...

    @property
    def running_job_id(self) -> str | None: ...

    @property
    def recovered(self) -> Sequence[Job]:
        """Jobs that were running when the engine last stopped (marked interrupted)."""
        ...

    def start(self) -> None: ...

    def shutdown(self, *, timeout: float = 30.0) -> None: ...

    def subscribe(self, listener: Listener, *, name: str = "listener") -> Subscription: ...

    # ---------------------------------------------------------------------------- queries
    def get(self, job_id: str) -> Job: ...

    def jobs(
        self,
        *,
        states: Iterable[JobState] | None = None,
        kinds: Iterable[JobKind] | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[Job]: ...

    def queue(self) -> list[Job]: ...

    def loaded_models(self) -> list[LoadedModel]: ...

    def gpus_per_machine(self) -> int:
        """The most GPUs one job can use (more than one only on a pool of one machine's GPUs)."""
        ...

    def downloads(self) -> list[tuple[str, str]]: ...

    def this_computer_load(self) -> MemorySample | None:
        """RAM and CPU of the computer the app runs on when the engine's ``MemorySample``
        events are of another machine (a server's GPU and load); None when they are this
        computer's own."""
        ...

    def validate(self, kind: JobKind, params: Mapping[str, Any]) -> None:
        """Raise InvalidInputError naming every bad field, as submit would."""
        ...

    def fit(self, model_id: str, params: Mapping[str, Any]) -> FitVerdict:
        """Whether and how ``model_id`` fits the engine's machine at ``params``; blocking."""
        ...

    def fetch_output(self, job: Job) -> Job:
        """The job with its result files on this computer (a server's are downloaded into a
        local cache; blocking)."""
        ...

    # --------------------------------------------------------------------------- commands
    def submit(self, spec: JobSpec) -> Job: ...

    def cancel(self, job_id: str) -> Job: ...

    def retry(self, job_id: str) -> Job: ...

    def delete(self, job_id: str, *, delete_outputs: bool = False) -> None: ...

    def delete_output(self, job_id: str) -> int: ...

    def reorder(self, job_ids: Sequence[str]) -> list[Job]: ...

    def clear_finished(self, states: Iterable[JobState] = ...) -> int: ...

    def pause(self) -> None: ...

    def resume(self) -> None: ...

    def unload(self) -> None: ...

    def set_dev_mode(self, on: bool) -> None: ...

    def tune(self, *, idle_unload_s: float | None = None, preview_every: int | None = None) -> None:
        """Change the settings that apply at once (idle unload, previews)."""
        ...

    def ensure_model(self, model_id: str, variant: str | None = None) -> Future[Any]: ...

    def cancel_download(self, model_id: str, variant: str | None = None) -> bool: ...


def quota_override() -> str | None:
    """The ``WAN_QUOTA`` value that overrides the settings file, if any."""
    return envvars.text(os.environ, ENV_QUOTA)


class LocalModels:
    """A local model store as a ``ModelsView``. ``store()`` gives the store in use now (the
    engine swaps it when development mode switches); ``apply_quota`` makes a saved quota rule
    the running engine at once."""

    def __init__(
        self, store: Callable[[], ModelStore], apply_quota: Callable[[int | None], None]
    ) -> None:
        self._store = store
        self._apply_quota = apply_quota

    @property
    def manifest(self) -> Manifest:
        return self._store().manifest

    @property
    def dev_mode(self) -> bool:
        return self._store().config.dev_mode

    @property
    def local_mirror(self) -> Path | None:
        return self._store().config.local_mirror

    @property
    def max_age_s(self) -> float | None:
        return self._store().config.max_age_s

    @property
    def quota_bytes(self) -> int | None:
        return self._store().config.quota_bytes

    @property
    def quota_override(self) -> str | None:
        return quota_override()

    def resolve(self, model_id: str, variant: str | None = None) -> tuple[ModelSpec, VariantSpec]:
        return self._store().resolve(model_id, variant)

    def catalog(self) -> Catalog:
        return scan(self._store())

    def disk_usage(self) -> DiskUsage:
        return self._store().disk_usage()

    def verify(self, model_id: str, variant: str | None = None) -> VerifyReport:
        return self._store().verify(model_id, variant)

    def delete(self, model_id: str, variant: str | None = None) -> int:
        return self._store().delete(model_id, variant)

    def discard_partial(self, dir_name: str) -> int:
        return self._store().discard_partial(dir_name)

    def pin(self, model_id: str, variant: str | None = None, *, pinned: bool = True) -> bool:
        return self._store().pin(model_id, variant, pinned=pinned)

    def gc(self, *, max_size: int | None = None, dry_run: bool = False) -> GcReport:
        return self._store().gc(max_size=max_size, dry_run=dry_run)

    def saved_quota(self) -> int | None:
        return load_settings(self._store().config.settings_path).quota_bytes

    def set_quota(self, quota_bytes: int | None) -> None:
        path = self._store().config.settings_path
        save_settings(dataclasses.replace(load_settings(path), quota_bytes=quota_bytes), path)
        if quota_override() is None:
            self._apply_quota(quota_bytes)
