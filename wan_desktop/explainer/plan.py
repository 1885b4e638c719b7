"""What a video is made of: an outline, a plan per scene, code per scene; and who writes them.

A ``Writer`` is the pluggable language model: the offline template writer, or a chat model behind
an OpenAI-compatible endpoint. The pipeline only talks to this protocol.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from .params import ExplainerParams


class SceneKind(enum.StrEnum):
    title_card = "title"
    bullets = "bullets"
    equation = "equation"
    graph = "graph"
    shapes = "shapes"
    code = "code"
    custom = "custom"  # whatever a language model designs


@dataclass(frozen=True)
class SceneOutline:
    index: int  # 1-based
    title: str
    goal: str
    kind: SceneKind = SceneKind.custom


@dataclass(frozen=True)
class Outline:
    title: str
    scenes: tuple[SceneOutline, ...]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ScenePlan:
    index: int
    title: str
    kind: SceneKind
    visuals: tuple[str, ...]
    layout: str
    narration: str
    duration_s: float  # planned length; the rendered length is measured
    data: Mapping[str, Any] = field(default_factory=dict)  # a template's content

    @property
    def class_name(self) -> str:
        return f"Scene{self.index:02d}"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["data"] = dict(self.data)
        return d


@dataclass(frozen=True)
class SceneCode:
    index: int
    class_name: str
    code: str
    author: str  # "template" or the model's name
    attempt: int = 1  # 1 = first version; each fix adds one


class Writer(Protocol):
    """Plans a video and writes its Manim code; the offline writer and chat models both fit."""

    name: str
    offline: bool

    def outline(self, params: ExplainerParams) -> Outline: ...

    def scene_plan(self, params: ExplainerParams, outline: Outline, index: int) -> ScenePlan: ...

    def scene_code(self, params: ExplainerParams, plan: ScenePlan, notes: str) -> SceneCode: ...

    def fix_code(
        self, params: ExplainerParams, plan: ScenePlan, code: SceneCode, error: str, notes: str
    ) -> SceneCode | None:
        """A corrected version, or None when this writer cannot fix code."""
        ...

    def search_terms(self, plan: ScenePlan, error: str | None) -> list[str]: ...
