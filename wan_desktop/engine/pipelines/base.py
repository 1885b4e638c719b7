"""What a pipeline is to the engine, and what the engine is to a pipeline.

A ``Pipeline`` validates a request, describes it, runs it and unloads. It sees the engine only
through ``PipelineHost``: the model store, the settings, the hardware profile and event
publishing (cancellation travels with each job's ``JobContext``). Pipelines are made by the
factories in ``registry.py``, so the engine needs to know no pipeline's module.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from ..jobs import JobKind, JobOutput

if TYPE_CHECKING:
    from wan_desktop.models import ModelStore

    from ..context import JobContext
    from ..events import Event
    from ..hardware import HardwareProfile
    from ..lora import LoraState
    from ..settings import EngineSettings


class PipelineHost(Protocol):
    """The part of the engine a pipeline may use (``Engine`` implements it)."""

    @property
    def models(self) -> ModelStore: ...

    @property
    def settings(self) -> EngineSettings: ...

    @property
    def hardware(self) -> HardwareProfile:
        """Read once; the first call may import torch."""
        ...

    def publish(self, event: Event) -> None:
        """Hand an event to every subscriber of the engine."""


@dataclass(frozen=True)
class JobDescription:
    """What the engine records on a job at submit time, before anything runs."""

    model_id: str | None = None
    variant: str | None = None
    development: bool = False
    label: str | None = None
    estimate: Mapping[str, Any] = field(default_factory=dict)  # vram_gb, minutes, strategy
    warnings: tuple[str, ...] = ()  # known before it runs (it will not fit this machine…)


@dataclass(frozen=True)
class LoadedModel:
    model_id: str
    variant: str
    strategy: str
    loaded_at: float
    last_used: float


class Pipeline(ABC):
    kind: JobKind
    mock: bool = False

    @abstractmethod
    def validate(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        """Normalised parameters, or InvalidInputError naming every bad field."""

    @abstractmethod
    def describe(self, params: Mapping[str, Any]) -> JobDescription:
        """Cheap facts about a validated job (no loading, no network)."""

    @abstractmethod
    def run(self, ctx: JobContext) -> JobOutput:
        """Do the job on the worker thread; report through ``ctx``; return what it made."""

    def output_bytes(self, params: Mapping[str, Any]) -> int:
        """About how much disk the job's output takes (0: unknown); checked before it runs."""
        return 0

    def loaded(self) -> LoadedModel | None:
        return None

    def lora_state(self) -> LoraState | None:
        """The LoRAs held by the loaded model (None: no model loaded, or none that takes LoRAs)."""
        return None

    def unload(self, reason: str = "requested") -> None:  # noqa: B027 - nothing to free by default
        """Free whatever the pipeline keeps loaded."""
