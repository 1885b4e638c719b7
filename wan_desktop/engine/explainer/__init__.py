"""Explainer videos: a topic becomes a planned, multi-scene Manim animation.

``ExplainerPipeline`` is what the engine loads for ``JobKind.explainer``. Nothing here imports
manim: scenes render in a separate sandboxed process (``sandbox.py``, ``sandbox_runner.py``).
The pipeline itself loads on first use, so ``wan explain --help`` stays quick.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .pipeline import ExplainerPipeline

__all__ = ["ExplainerPipeline"]


def __getattr__(name: str) -> Any:
    if name == "ExplainerPipeline":
        from .pipeline import ExplainerPipeline

        return ExplainerPipeline
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
