"""A writer backed by a chat model: structured prompts in, parsed plans and Manim code out.

Roles: the planner model writes the outline and the per-scene plans, the scene model writes and
fixes the code, the helper model picks search terms for the notes. Each prompt names its task on
the first line of the system message ("Task: outline", …). An answer that cannot be used is asked
for again once, with the reason.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

from .answers import AnswerError, as_list, as_text, extract_code, extract_json
from .llm import ChatClient
from .offline import WORDS_PER_SECOND, keywords
from .params import SCENES_RANGE, ExplainerParams
from .plan import Outline, SceneCode, SceneKind, SceneOutline, ScenePlan

SCENE_SECONDS = (3.0, 40.0)
ASK_AGAIN = 1  # extra requests when an answer cannot be parsed

_ROLE = (
    "You are part of a program that makes short explainer videos with Manim Community Edition "
    "(version 0.19 or newer). Each video is a few scenes; each scene is rendered on its own and "
    "the videos are joined, with the narration shown as subtitles."
)
_CODE_RULES = """Rules for the code:
- Start with `from manim import *`; you may also import numpy as np, math and random. No other
  imports, no files, no network, no subprocesses, no eval/exec/open, no attributes starting with _.
- Define exactly one class {class_name}(Scene) with construct(self).
- {latex_rule}
- Use self.play(..., run_time=...) and self.wait(...) so the scene lasts about {seconds:.0f}
  seconds in total. No endless loops, no updaters that never stop.
- Keep everything inside the frame (14.2 x 8 units); scale long text with scale_to_fit_width.
- Do not change config except config.background_color.
- Answer with the whole code in one ```python block and nothing else."""
_NO_LATEX = (
    "LaTeX is NOT installed: use Text or MarkupText (Unicode such as x², √, π, ∫ is fine), never "
    "MathTex, Tex, DecimalNumber, Integer, BulletedList, Title or Matrix; create Axes with "
    'axis_config={"include_numbers": False} and label axes with Text.'
)
_LATEX = "LaTeX is installed: MathTex and Tex are available."


class LlmWriter:
    offline = False

    def __init__(
        self,
        client: ChatClient,
        *,
        planner_model: str,
        scene_model: str,
        helper_model: str,
        latex: bool = False,
        log: Callable[[str, str], None] | None = None,
    ) -> None:
        self.client = client
        self.planner_model = planner_model
        self.scene_model = scene_model
        self.helper_model = helper_model
        self.latex = latex
        self.log = log
        self.name = scene_model

    # ------------------------------------------------------------------------------ planning

    def outline(self, params: ExplainerParams) -> Outline:
        lo, hi = SCENES_RANGE
        count = (
            f"exactly {params.scene_count} scenes"
            if params.scene_count
            else f"{lo} to {hi} scenes (fewer for a small topic)"
        )
        system = f"""Task: outline
{_ROLE}
Plan the video as {count}. The first scene introduces the topic. Answer with JSON only:
{{"title": "video title",
  "scenes": [{{"title": "scene title", "goal": "what this scene shows"}}]}}"""
        user = f"Topic: {params.topic}\n\nContext:\n{params.context}"

        def parse(answer: str) -> Outline:
            data = extract_json(answer)
            scenes = data.get("scenes") if isinstance(data, dict) else data
            if not isinstance(scenes, list):
                raise AnswerError('expected {"title": ..., "scenes": [...]}')
            items = [s for s in scenes if isinstance(s, dict) and as_text(s.get("title"), 100)]
            want_lo, want_hi = (
                (params.scene_count, params.scene_count) if params.scene_count else (lo, hi)
            )
            if len(items) < want_lo:
                raise AnswerError(f"the outline has {len(items)} scenes; it needs {count}")
            items = items[:want_hi]
            title = as_text(data.get("title") if isinstance(data, dict) else None, 200)
            return Outline(
                title=title or params.topic,
                scenes=tuple(
                    SceneOutline(
                        i, as_text(s.get("title"), 100), as_text(s.get("goal"), 400) or "explain"
                    )
                    for i, s in enumerate(items, 1)
                ),
            )

        return self._ask(self.planner_model, "outline", system, user, parse)

    def scene_plan(self, params: ExplainerParams, outline: Outline, index: int) -> ScenePlan:
        scene = outline.scenes[index - 1]
        listing = "\n".join(f"{s.index}. {s.title}: {s.goal}" for s in outline.scenes)
        system = f"""Task: scenario
{_ROLE}
Describe one scene in detail. Answer with JSON only:
{{"visuals": ["what appears, in order"], "layout": "where things are on screen",
  "narration": "one to three sentences the viewer reads as subtitles",
  "duration_s": seconds (between {SCENE_SECONDS[0]:.0f} and {SCENE_SECONDS[1]:.0f})}}"""
        user = (
            f"Video: {outline.title}\nTopic: {params.topic}\nContext:\n{params.context}\n\n"
            f"All scenes:\n{listing}\n\nDescribe scene {index}: {scene.title} ({scene.goal})."
        )

        def parse(answer: str) -> ScenePlan:
            data = extract_json(answer)
            if not isinstance(data, dict):
                raise AnswerError("expected a JSON object with visuals, layout and narration")
            narration = as_text(data.get("narration"), 600)
            if not narration:
                raise AnswerError("the scene plan needs a narration")
            reading = len(narration.split()) / WORDS_PER_SECOND + 1.0
            try:
                duration = float(data.get("duration_s") or reading)
            except (TypeError, ValueError):
                duration = reading
            if not math.isfinite(duration):
                duration = reading
            duration = min(SCENE_SECONDS[1], max(SCENE_SECONDS[0], duration, reading))
            return ScenePlan(
                index=index,
                title=scene.title,
                kind=SceneKind.custom,
                visuals=as_list(data.get("visuals"), 12) or (scene.goal,),
                layout=as_text(data.get("layout"), 400) or "centred",
                narration=narration,
                duration_s=round(duration, 1),
            )

        return self._ask(self.planner_model, "scenario", system, user, parse)

    # ---------------------------------------------------------------------------------- code

    def _rules(self, plan: ScenePlan) -> str:
        return _CODE_RULES.format(
            class_name=plan.class_name,
            latex_rule=_LATEX if self.latex else _NO_LATEX,
            seconds=plan.duration_s,
        )

    def _plan_text(self, plan: ScenePlan) -> str:
        return json.dumps(
            {
                "scene": plan.index,
                "title": plan.title,
                "visuals": list(plan.visuals),
                "layout": plan.layout,
                "narration": plan.narration,
                "duration_s": plan.duration_s,
            },
            ensure_ascii=False,
            indent=1,
        )

    def scene_code(self, params: ExplainerParams, plan: ScenePlan, notes: str) -> SceneCode:
        system = f"Task: code\n{_ROLE}\nWrite the Manim code for one scene.\n{self._rules(plan)}"
        user = f"Topic: {params.topic}\nScene plan:\n{self._plan_text(plan)}"
        if notes:
            user += f"\n\nNotes on the Manim API:\n{notes}"
        code = self._ask(self.scene_model, "code", system, user, extract_code)
        return SceneCode(plan.index, plan.class_name, code, self.scene_model)

    def fix_code(
        self, params: ExplainerParams, plan: ScenePlan, code: SceneCode, error: str, notes: str
    ) -> SceneCode | None:
        system = (
            f"Task: fix\n{_ROLE}\nThe code of one scene failed. Fix it and return the whole "
            f"corrected code.\n{self._rules(plan)}"
        )
        user = (
            f"Scene plan:\n{self._plan_text(plan)}\n\nCode:\n```python\n{code.code}```\n\n"
            f"Error:\n{error[-3000:]}"
        )
        if notes:
            user += f"\n\nNotes on the Manim API:\n{notes}"
        fixed = self._ask(self.scene_model, "fix", system, user, extract_code)
        return SceneCode(plan.index, plan.class_name, fixed, self.scene_model, code.attempt + 1)

    def search_terms(self, plan: ScenePlan, error: str | None) -> list[str]:
        system = (
            "Task: search_terms\nList 3 to 6 Manim class or method names (or short keywords) "
            'worth looking up for this scene. Answer with a JSON list of strings, e.g. ["Axes", '
            '"plot"].'
        )
        user = self._plan_text(plan) + (f"\n\nError:\n{error[-1500:]}" if error else "")
        try:
            terms = self._ask(self.helper_model, "search_terms", system, user, _terms)
        except AnswerError:
            terms = []
        return list(dict.fromkeys([*terms, *keywords(plan, error)]))[:12]

    # ------------------------------------------------------------------------------- asking

    def _ask(
        self, model: str, task: str, system: str, user: str, parse: Callable[[str], Any]
    ) -> Any:
        messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        for attempt in range(ASK_AGAIN + 1):
            answer = self.client.complete(model, messages, task=task)
            try:
                return parse(answer)
            except AnswerError as exc:
                if attempt == ASK_AGAIN:
                    raise AnswerError(f"{model} ({task}): {exc}") from exc
                if self.log is not None:
                    self.log("warning", f"{model} ({task}): unusable answer ({exc}); asking again")
                messages = [
                    *messages,
                    {"role": "assistant", "content": answer},
                    {"role": "user", "content": f"That answer could not be used: {exc}."},
                ]
        raise AssertionError("unreachable")


def _terms(answer: str) -> list[str]:
    data = extract_json(answer)
    if not isinstance(data, list):
        raise AnswerError("expected a JSON list of strings")
    return [as_text(t, 40) for t in data if as_text(t, 40)][:6]
