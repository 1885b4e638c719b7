"""Manim code for the offline writer's scene kinds: title, bullets, equation, graph, shapes, code.

Every piece of user text enters the code as a Python string literal made by ``repr`` (never as
code); numbers are formatted by us. Timings are fixed per template, so a scene's length is known
before it renders: animation times plus a final wait that fills the planned duration. Everything
draws with Text (Pango), so no LaTeX is needed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from string import Template
from typing import Any

from .plan import SceneKind, ScenePlan

HEADER = "from manim import *\nimport numpy as np\n\n\n"
MIN_FINAL_WAIT = 0.6

# Seconds of animation in each template, before the final wait.
ANIMATION_S = {
    SceneKind.title_card: 2.6,
    SceneKind.equation: 3.2,
    SceneKind.graph: 3.6,
    SceneKind.shapes: 4.0,
    SceneKind.code: 1.8,
}
BULLET_HEAD_S = 1.0
BULLET_ITEM_S = 1.2


def lit(value: Any) -> str:
    """A Python literal for a value built from str/float/int/tuple/list only."""
    if isinstance(value, str | int | float | bool) or value is None:
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(lit(v) for v in value) + "]"
    raise TypeError(f"no literal for {type(value).__name__}")


def animation_seconds(kind: SceneKind, data: Mapping[str, Any]) -> float:
    if kind is SceneKind.bullets:
        return BULLET_HEAD_S + BULLET_ITEM_S * len(data.get("items") or ())
    return ANIMATION_S[kind]


def scene_code(plan: ScenePlan) -> str:
    writer = _WRITERS[plan.kind]
    wait = max(MIN_FINAL_WAIT, round(plan.duration_s - animation_seconds(plan.kind, plan.data), 1))
    body = writer(plan.data)
    return HEADER + Template(_CLASS).substitute(name=plan.class_name, body=body, wait=lit(wait))


_CLASS = """class $name(Scene):
    def construct(self):
$body
        self.wait($wait)
"""


def _title(d: Mapping[str, Any]) -> str:
    return Template("""\
        title = Text($title, font_size=52, weight=BOLD)
        if title.width > config.frame_width - 1:
            title.scale_to_fit_width(config.frame_width - 1)
        subtitle = Text($subtitle, font_size=28, color=GREY_B)
        if subtitle.width > config.frame_width - 1:
            subtitle.scale_to_fit_width(config.frame_width - 1)
        subtitle.next_to(title, DOWN, buff=0.5)
        self.play(Write(title), run_time=1.6)
        self.play(FadeIn(subtitle, shift=UP * 0.3), run_time=1.0)""").substitute(
        title=lit(d["title"]), subtitle=lit(d.get("subtitle") or " ")
    )


def _bullets(d: Mapping[str, Any]) -> str:
    return Template("""\
        heading = Text($heading, font_size=40, weight=BOLD).to_edge(UP, buff=0.6)
        self.play(FadeIn(heading), run_time=1.0)
        items = VGroup(*[Text("• " + line, font_size=26) for line in $items])
        items.arrange(DOWN, aligned_edge=LEFT, buff=0.35).next_to(heading, DOWN, buff=0.6)
        if items.width > config.frame_width - 1:
            items.scale_to_fit_width(config.frame_width - 1)
        if items.height > config.frame_height - 2.2:
            items.scale_to_fit_height(config.frame_height - 2.2)
        items.next_to(heading, DOWN, buff=0.6)
        for item in items:
            self.play(FadeIn(item, shift=RIGHT * 0.3), run_time=0.8)
            self.wait(0.4)""").substitute(heading=lit(d["heading"]), items=lit(d["items"]))


def _equation(d: Mapping[str, Any]) -> str:
    return Template("""\
        heading = Text($heading, font_size=36, weight=BOLD).to_edge(UP, buff=0.6)
        equation = Text($equation, font_size=56)
        if equation.width > config.frame_width - 1.5:
            equation.scale_to_fit_width(config.frame_width - 1.5)
        box = SurroundingRectangle(equation, color=YELLOW, buff=0.3)
        caption = Text($caption, font_size=26, color=GREY_B).next_to(box, DOWN, buff=0.5)
        if caption.width > config.frame_width - 1:
            caption.scale_to_fit_width(config.frame_width - 1)
        self.add(heading)
        self.play(Write(equation), run_time=1.6)
        self.play(Create(box), run_time=0.8)
        self.play(FadeIn(caption), run_time=0.8)""").substitute(
        heading=lit(d["heading"]), equation=lit(d["equation"]), caption=lit(d["caption"])
    )


def _graph(d: Mapping[str, Any]) -> str:
    x0, x1 = (float(v) for v in d["x_range"])
    y0, y1 = (float(v) for v in d["y_range"])
    return Template("""\
        axes = Axes(
            x_range=[$x0, $x1, $xs],
            y_range=[$y0, $y1, $ys],
            x_length=9,
            y_length=5.5,
            axis_config={"include_numbers": False, "include_tip": True},
        ).to_edge(DOWN, buff=0.5)
        label = Text($label, font_size=32, color=BLUE).to_edge(UP, buff=0.4)
        if label.width > config.frame_width - 1:
            label.scale_to_fit_width(config.frame_width - 1)
        curve = axes.plot(lambda x: $expr, x_range=[$x0, $x1], color=BLUE)
        self.play(Create(axes), run_time=1.0)
        self.play(Create(curve), run_time=2.0)
        self.play(FadeIn(label), run_time=0.6)""").substitute(
        x0=lit(x0),
        x1=lit(x1),
        xs=lit(_step(x1 - x0)),
        y0=lit(y0),
        y1=lit(y1),
        ys=lit(_step(y1 - y0)),
        label=lit(d["label"]),
        expr=str(d["expr_code"]),  # written by content._emit from a validated tree
    )


def _step(span: float) -> float:
    for step in (0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 1000.0, 10000.0):
        if span / step <= 12:
            return step
    return float(max(1, int(span // 10)))


def _shapes(d: Mapping[str, Any]) -> str:
    return Template("""\
        caption = Text($caption, font_size=32).to_edge(UP, buff=0.6)
        if caption.width > config.frame_width - 1:
            caption.scale_to_fit_width(config.frame_width - 1)
        shape = Circle(radius=1.5, color=BLUE, fill_opacity=0.4)
        self.play(Create(shape), run_time=1.0)
        square = Square(side_length=3, color=GREEN, fill_opacity=0.4)
        triangle = Triangle(color=ORANGE, fill_opacity=0.4).scale(2)
        self.play(Transform(shape, square), run_time=1.2)
        self.play(Transform(shape, triangle), run_time=1.2)
        self.play(FadeIn(caption), run_time=0.6)""").substitute(caption=lit(d["caption"]))


def _code(d: Mapping[str, Any]) -> str:
    return Template("""\
        heading = Text($heading, font_size=36, weight=BOLD).to_edge(UP, buff=0.5)
        listing = Code(code_string=$code, language=$language, add_line_numbers=True)
        listing.scale(min(1.8, (config.frame_width - 1) / listing.width,
                          (config.frame_height - 2.2) / listing.height))
        listing.next_to(heading, DOWN, buff=0.4)
        self.play(FadeIn(heading), run_time=0.6)
        self.play(FadeIn(listing, shift=UP * 0.3), run_time=1.2)""").substitute(
        heading=lit(d["heading"]), code=lit(d["code"]), language=lit(d["language"])
    )


_WRITERS: dict[SceneKind, Callable[[Mapping[str, Any]], str]] = {
    SceneKind.title_card: _title,
    SceneKind.bullets: _bullets,
    SceneKind.equation: _equation,
    SceneKind.graph: _graph,
    SceneKind.shapes: _shapes,
    SceneKind.code: _code,
}
