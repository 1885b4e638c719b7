"""The offline writer: a deterministic planner and template code, no language model needed.

It reads the context (sentences, a code block, a function, an equation), picks scene kinds, and
fills the templates. Same input, same video. Its code always renders, so it never needs fixing.
"""

from __future__ import annotations

import math
import re
from typing import Any

from . import templates
from .content import Content, analyse, wrap
from .params import SCENES_RANGE, ExplainerParams
from .plan import Outline, SceneCode, SceneKind, SceneOutline, ScenePlan

WORDS_PER_SECOND = 3.0  # comfortable subtitle reading speed
BULLETS_PER_SCENE = 3
ITEM_WIDTH = 46
CAPTION_CHARS = 90
OFFLINE_NAME = "template"

_GOALS = {
    SceneKind.title_card: "introduce the topic",
    SceneKind.graph: "show the function as a graph",
    SceneKind.equation: "present the key relation",
    SceneKind.code: "show the idea in code",
    SceneKind.bullets: "explain the main points",
    SceneKind.shapes: "give a visual picture of change",
}


class OfflineWriter:
    name = OFFLINE_NAME
    offline = True

    def outline(self, params: ExplainerParams) -> Outline:
        items = self._layout(params)
        return Outline(
            title=params.topic,
            scenes=tuple(
                SceneOutline(i, title, _GOALS[kind], kind)
                for i, (kind, title, _) in enumerate(items, 1)
            ),
        )

    def scene_plan(self, params: ExplainerParams, outline: Outline, index: int) -> ScenePlan:
        kind, title, data = self._layout(params)[index - 1]
        narration = str(data.pop("narration"))
        visuals, layout = _VISUALS[kind]
        words = len(narration.split())
        animation = templates.animation_seconds(kind, data)
        duration = max(animation + templates.MIN_FINAL_WAIT, words / WORDS_PER_SECOND + 1.0)
        return ScenePlan(
            index=index,
            title=title,
            kind=kind,
            visuals=visuals,
            layout=layout,
            narration=narration,
            duration_s=math.ceil(duration * 5) / 5,  # whole fifths of a second: whole frames
            data=data,
        )

    def scene_code(self, params: ExplainerParams, plan: ScenePlan, notes: str) -> SceneCode:
        return SceneCode(plan.index, plan.class_name, templates.scene_code(plan), OFFLINE_NAME)

    def fix_code(
        self, params: ExplainerParams, plan: ScenePlan, code: SceneCode, error: str, notes: str
    ) -> SceneCode | None:
        return None  # template code is fixed; a failed render is retried as it is

    def search_terms(self, plan: ScenePlan, error: str | None) -> list[str]:
        return keywords(plan, error)

    # ------------------------------------------------------------------------------ layout

    def _layout(self, params: ExplainerParams) -> list[tuple[SceneKind, str, dict[str, Any]]]:
        """(kind, title, template data + narration) per scene, in order."""
        c = analyse(params.context)
        topic = params.topic
        specials: list[tuple[SceneKind, str, dict[str, Any]]] = []
        used: set[str] = set()
        if c.function is not None:
            sentence = _sentence_with(c, "=") or f"The graph of {c.function.label}."
            used.add(sentence)
            specials.append(
                (
                    SceneKind.graph,
                    "The graph",
                    {
                        "label": c.function.label,
                        "expr_code": c.function.expr_code,
                        "x_range": list(c.function.x_range),
                        "y_range": list(c.function.y_range),
                        "narration": sentence,
                    },
                )
            )
        if c.equation is not None:
            sentence = _sentence_with(c, "=", skip=used) or f"The key relation: {c.equation}."
            used.add(sentence)
            specials.append(
                (
                    SceneKind.equation,
                    "The key relation",
                    {
                        "heading": "The key relation",
                        "equation": c.equation,
                        "caption": _short(sentence, CAPTION_CHARS),
                        "narration": sentence,
                    },
                )
            )
        if c.code is not None:
            specials.append(
                (
                    SceneKind.code,
                    "In code",
                    {
                        "heading": "In code",
                        "code": c.code.code,
                        "language": c.code.language,
                        "narration": f"Here is how {topic} looks in {c.code.language} code.",
                    },
                )
            )
        if c.sentences:
            used.add(c.sentences[0])  # the title scene's subtitle
        sentences = [s for s in c.sentences if s not in used] or list(c.sentences)
        lo, hi = SCENES_RANGE
        natural_groups = math.ceil(len(sentences) / BULLETS_PER_SCENE)
        target = params.scene_count or max(lo, min(hi, 1 + len(specials) + natural_groups))
        specials = specials[: target - 1]
        slots = target - 1 - len(specials)
        groups = _groups(sentences, min(slots, natural_groups)) if slots > 0 else []
        scenes = [_title_scene(topic, c), *specials]
        for i, group in enumerate(groups, 1):
            heading = "Key ideas" if len(groups) == 1 else f"Key ideas ({i}/{len(groups)})"
            scenes.append(_bullets_scene(heading, group))
        fillers = target - len(scenes)
        for i in range(fillers):
            if i % 2 == 0:
                scenes.append(_shapes_scene(topic, i // 2))
            else:
                recap = [_short(s, 60) for s in sentences[:BULLETS_PER_SCENE]] or [topic]
                scenes.append(_bullets_scene("Summary", recap, recap=True))
        return scenes


_VISUALS: dict[SceneKind, tuple[tuple[str, ...], str]] = {
    SceneKind.title_card: (("the topic as a large title", "a one-line subtitle"), "centred"),
    SceneKind.bullets: (("a heading", "points appearing one by one"), "heading on top, list"),
    SceneKind.equation: (("the equation, boxed", "a caption"), "centred with caption below"),
    SceneKind.graph: (("axes", "the curve drawn left to right", "its formula"), "axes fill"),
    SceneKind.shapes: (("a circle becoming a square, then a triangle",), "centred shape"),
    SceneKind.code: (("a code listing with line numbers",), "heading on top, listing"),
}


def _title_scene(topic: str, c: Content) -> tuple[SceneKind, str, dict[str, Any]]:
    first = c.sentences[0] if c.sentences else ""
    subtitle = _short(first, 70)
    narration = first if topic.lower() in first.lower() else f"{topic}. {first}".strip()
    return (
        SceneKind.title_card,
        topic,
        {"title": wrap(topic, 34), "subtitle": subtitle, "narration": narration},
    )


def _bullets_scene(
    heading: str, sentences: list[str], *, recap: bool = False
) -> tuple[SceneKind, str, dict[str, Any]]:
    items = [wrap(s, ITEM_WIDTH) for s in sentences]
    narration = ("In short: " if recap else "") + " ".join(sentences)
    return SceneKind.bullets, heading, {"heading": heading, "items": items, "narration": narration}


def _shapes_scene(topic: str, variant: int) -> tuple[SceneKind, str, dict[str, Any]]:
    caption = _short(topic, 60)
    narration = (
        f"Picture {topic} as a shape that keeps changing form."
        if variant == 0
        else f"One more view of {topic}: the same idea in a new form."
    )
    return SceneKind.shapes, "A picture", {"caption": caption, "narration": narration}


def _groups(sentences: list[str], n: int) -> list[list[str]]:
    if n <= 0 or not sentences:
        return []
    size = math.ceil(len(sentences) / n)
    return [sentences[i : i + size] for i in range(0, len(sentences), size)][:n]


def _sentence_with(c: Content, needle: str, skip: set[str] | None = None) -> str | None:
    for s in c.sentences:
        if needle in s and s not in (skip or set()):
            return s
    return None


def _short(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def keywords(plan: ScenePlan, error: str | None) -> list[str]:
    """Search terms for the notes: manim names in the error, and the scene's kind."""
    words: list[str] = [plan.kind.value]
    if error:
        words += re.findall(r"\b[A-Z][A-Za-z]{2,}\b", error)
        words += re.findall(r"'(\w+)'", error)
    words += re.findall(r"\b[A-Z][A-Za-z]{2,}\b", " ".join(plan.visuals))
    seen: dict[str, None] = {}
    for w in words:
        seen.setdefault(w, None)
    return list(seen)[:12]
