"""Explainer videos: a topic becomes a planned, multi-scene Manim animation.

A pipeline beside the engine: importing this package registers ``ExplainerPipeline`` for
``JobKind.explainer`` in the engine's pipeline registry (the engine never imports it). The
program's entry points (the desktop app, the API, ``wan explain``) call ``register()``. Nothing here
imports manim: scenes render in a separate sandboxed process (``sandbox.py``,
``sandbox_runner.py``). The pipeline module itself loads on the first explainer job, so
``wan explain --help`` stays quick.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from wan_desktop.engine.jobs import JobKind
from wan_desktop.engine.pipelines import registry

if TYPE_CHECKING:
    from wan_desktop.engine.pipelines.base import Pipeline, PipelineHost

    from .pipeline import ExplainerPipeline

__all__ = ["ExplainerPipeline", "register"]


def _make(host: PipelineHost) -> Pipeline:
    from .pipeline import ExplainerPipeline

    return ExplainerPipeline(host)


def register() -> None:
    """Make the engine's explainer jobs run ``ExplainerPipeline`` (done on import; idempotent)."""
    registry.register(JobKind.explainer, _make)


register()


def __getattr__(name: str) -> Any:
    if name == "ExplainerPipeline":
        from .pipeline import ExplainerPipeline

        return ExplainerPipeline
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
