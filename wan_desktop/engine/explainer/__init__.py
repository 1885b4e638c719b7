"""Explainer videos: a topic becomes a planned, multi-scene Manim animation.

``ExplainerPipeline`` is what the engine loads for ``JobKind.explainer``. Nothing here imports
manim: scenes render in a separate sandboxed process (``sandbox.py``, ``sandbox_runner.py``).
"""

from __future__ import annotations

from .params import ExplainerParams
from .pipeline import ExplainerPipeline
from .settings import ExplainerSettings, SandboxMode, StorageMode

__all__ = [
    "ExplainerParams",
    "ExplainerPipeline",
    "ExplainerSettings",
    "SandboxMode",
    "StorageMode",
]
