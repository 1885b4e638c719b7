"""Pipelines by job kind: the engine asks here, and a pipeline package registers itself here.

The engine ships the Wan pipeline and its mock; other kinds (the explainer, in
``wan_desktop.explainer``) register a factory when their package is imported, so the engine
never imports them. A factory takes the engine's ``PipelineHost`` and may import heavy modules:
it runs the first time a job of its kind is submitted, not at start-up.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..errors import EngineError
from ..jobs import JobKind

if TYPE_CHECKING:
    from .base import Pipeline, PipelineHost

Factory = Callable[["PipelineHost"], "Pipeline"]

_lock = threading.Lock()
_factories: dict[tuple[JobKind, bool], Factory] = {}
# What to install when a kind has no factory (the package that registers it is not importable).
_HINTS = {
    JobKind.wan: "install the engine packages (scripts/setup.sh), or try the app in mock mode "
    "(WAN_MOCK=1)",
    JobKind.explainer: "install the explainer extra (scripts/setup.sh installs it)",
}


def register(kind: JobKind, factory: Factory, *, mock: bool = False) -> None:
    """Make ``factory`` the maker of ``kind`` pipelines (the last registration wins)."""
    with _lock:
        _factories[(kind, mock)] = factory


def registered(kind: JobKind, *, mock: bool = False) -> bool:
    with _lock:
        return (kind, mock) in _factories


def create(kind: JobKind, host: PipelineHost, *, mock: bool = False) -> Pipeline:
    """A new pipeline for ``kind``; EngineError saying what to install when none can be made."""
    with _lock:
        factory = _factories.get((kind, mock))
    if factory is None:
        raise EngineError(
            f"{kind.value} jobs are not available in this program: no pipeline is registered "
            f"for them; {_HINTS.get(kind, 'update Wan Desktop')}"
        )
    try:
        return factory(host)
    except ImportError as exc:
        raise EngineError(
            f"{kind.value} jobs are not available: {exc}; {_HINTS.get(kind, 'reinstall')}"
        ) from exc


def _wan(host: PipelineHost) -> Pipeline:
    from .wan import WanPipeline

    return WanPipeline(host)


def _mock(host: PipelineHost) -> Pipeline:
    from .mock import MockPipeline

    return MockPipeline(host.models.manifest)


register(JobKind.wan, _wan)
register(JobKind.wan, _mock, mock=True)
