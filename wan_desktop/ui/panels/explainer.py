"""Explainer: a topic and a context become a short Manim video with subtitles.

The job is a ``JobKind.explainer`` job in the same queue as Wan jobs; the Queue shows its stages
(plan, scenes, code, render, combine, store) and the Gallery its video. The language model comes
from the environment (``LLM_BASE_URL``, ``PLANNER_MODEL``…, read by the engine's explainer
settings) and is shown here read-only; with none, the offline template planner writes the video,
and the page and the job say so.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Mapping
from typing import Any

from PySide6.QtCore import Qt, Slot
from PySide6.QtWidgets import (
    QCheckBox,
    QGridLayout,
    QHBoxLayout,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from wan_desktop.engine import Job, JobKind
from wan_desktop.engine.wire import from_wire
from wan_desktop.explainer.params import (
    CONTEXT_MAX,
    QUALITY_PRESETS,
    SCENES_RANGE,
    TOPIC_MAX,
)
from wan_desktop.explainer.settings import ExplainerSettings, StorageMode

from ..state import Studio
from ..widgets import (
    Badge,
    Card,
    Field,
    button,
    label,
    narrow_combo,
    padded,
    page_layout,
    scroll_page,
    scrolled,
    set_prop,
)
from .explainer_latest import LatestExplainer
from .form import JobForm

OFFLINE = "template"  # the job's ``model`` that names the offline planner
STORAGE_TEXT = {
    StorageMode.local_only: "Keep it on this computer",
    StorageMode.local_and_s3: "This computer and S3",
    StorageMode.s3_only: "S3 only (local copies removed)",
}


def unavailable_reason() -> str | None:
    """Why explainers cannot render here, or None. Scenes render in a separate Python process
    that imports Manim: a frozen bundle has no such interpreter, and an install may lack Manim."""
    if getattr(sys, "frozen", False):
        return (
            "This packaged app cannot render explainer videos (Manim runs in a separate Python "
            "process); use a source install (scripts/setup.sh) or `wan explain`."
        )
    if importlib.util.find_spec("manim") is None:
        return "Manim is not installed: run scripts/setup.sh to add it, then restart the app."
    return None


def load_settings(extra: Mapping[str, Any]) -> tuple[ExplainerSettings | None, str]:
    """The explainer settings the engine's pipeline will use, or why they are unusable: as the
    engine resolved them where it runs (a server's environment), else from this process's."""
    resolved = extra.get("explainer_resolved")
    try:
        if isinstance(resolved, Mapping):
            if "error" in resolved:
                return None, str(resolved["error"])
            found: ExplainerSettings = from_wire(ExplainerSettings, resolved.get("settings"))
            return found, ""
        return ExplainerSettings.from_env(**dict(extra.get("explainer", {}))), ""
    except ValueError as exc:
        return None, str(exc)


class ExplainerPanel(QWidget, JobForm):
    KIND = JobKind.explainer
    FIX_HINT = "Fix the highlighted fields, then try again."

    def __init__(self, studio: Studio) -> None:
        super().__init__()
        self.studio = studio
        self.settings, self.settings_error = load_settings(studio.engine.info.extra)
        outer = page_layout(self)
        outer.setSpacing(14)
        head = QHBoxLayout()
        head.addWidget(label("Explainer", "title"))
        head.addStretch(1)
        self.writer_badge = Badge()
        head.addWidget(self.writer_badge)
        outer.addLayout(head)
        outer.addWidget(
            label(
                "A short animated video that explains a topic: planned as 3–7 scenes, drawn with "
                "Manim in a sandbox, joined into one MP4 with subtitles. Runs on the CPU, in the "
                "same queue as the Wan videos.",
                "muted",
                wrap=True,
            )
        )
        columns = QHBoxLayout()
        columns.setSpacing(18)
        form = QWidget()
        self.form = QVBoxLayout(form)
        self.form.setContentsMargins(0, 0, 10, 0)
        self.form.setSpacing(14)
        self.unavailable = unavailable_reason()
        if self.unavailable is not None:
            self.form.addWidget(label(self.unavailable, "error", wrap=True))
        self._build_topic_card()
        self._build_video_card()
        self._build_model_card()
        self.form.addStretch(1)
        self.form_scroll = scroll_page(form)
        columns.addWidget(self.form_scroll, 5)

        right = QVBoxLayout()
        right.setSpacing(12)
        self.latest = LatestExplainer(studio)
        right.addWidget(scrolled(self.latest), 1)  # the button below it always shows
        self.general_error = label("", "error", wrap=True)
        self.general_error.setVisible(False)
        right.addWidget(self.general_error)
        self.make_btn = button("Make explainer", "explain", variant="primary", large=True)
        self.make_btn.setToolTip("Queue this explainer video")
        self.make_btn.clicked.connect(self.send)
        right.addWidget(self.make_btn)
        self.estimate = label("", "faint", wrap=True)
        self.estimate.setAlignment(Qt.AlignmentFlag.AlignCenter)
        right.addWidget(self.estimate)
        right_w = QWidget()
        right_w.setLayout(right)
        columns.addWidget(right_w, 4)
        outer.addLayout(columns, 1)
        studio.explain_settings.connect(self.load_params)
        self._show_settings()
        self.restore_last()

    # ------------------------------------------------------------------------------ layout

    def _build_topic_card(self) -> None:
        card = Card("Topic")
        self.topic = QLineEdit()
        self.topic.setPlaceholderText("What the video explains, e.g. “Why the sky is blue”")
        self.topic_count = label("", "counter")
        self.topic_field = Field("Topic", self.topic, trailing=self.topic_count)
        card.body.addWidget(self.topic_field)
        self.context = QPlainTextEdit()
        self.context.setTabChangesFocus(True)  # Tab goes to the next field
        self.context.setPlaceholderText(
            "What to say: facts, a formula such as f(x) = x^2 - 1, a short code listing, the "
            "points to make. The planner builds the scenes from this."
        )
        self.context.setFixedHeight(150)
        self.context_count = label("", "counter")
        self.context_field = Field("Context", self.context, trailing=self.context_count)
        card.body.addWidget(self.context_field)
        self.topic.textChanged.connect(self._update_counts)
        self.context.textChanged.connect(self._update_counts)
        self._update_counts()
        self.form.addWidget(card)

    def _build_video_card(self) -> None:
        card = Card("Video")
        grid = QGridLayout()
        grid.setHorizontalSpacing(14)
        grid.setVerticalSpacing(10)
        self.quality = narrow_combo()
        for name, preset in QUALITY_PRESETS.items():
            self.quality.addItem(
                f"{name.capitalize()}  ·  {preset.width}×{preset.height} at {preset.fps} fps", name
            )
        self.quality_field = Field("Quality", self.quality)
        grid.addWidget(self.quality_field, 0, 0)
        lo, hi = SCENES_RANGE
        self.scenes = padded(QSpinBox())
        self.scenes.setRange(lo - 1, hi)
        self.scenes.setSpecialValueText("planner decides")
        self.scenes.setValue(lo - 1)
        self.scenes_field = Field("Scenes", self.scenes, hint=f"{lo}–{hi}")
        grid.addWidget(self.scenes_field, 0, 1)
        self.storage = narrow_combo()
        for mode in StorageMode:
            self.storage.addItem(STORAGE_TEXT[mode], str(mode))
        self.storage_field = Field("Storage", self.storage)
        grid.addWidget(self.storage_field, 1, 0, 1, 2)
        grid.setColumnStretch(0, 3)
        grid.setColumnStretch(1, 2)
        card.body.addLayout(grid)
        # Short texts (a check box does not wrap), the details in the tooltips: the form fits
        # the window at 1024 px.
        self.subtitles = QCheckBox("Subtitles (.srt beside the video)")
        self.subtitles.setToolTip("Subtitles from the narration, in an .srt file beside the video")
        self.subtitles.setChecked(True)
        self.burn = QCheckBox("Also burn them into the picture")
        self.burn.setToolTip("Draws the subtitles into the video itself (re-encodes it)")
        self.subtitles.toggled.connect(self.burn.setEnabled)
        self.thumbnails = QCheckBox("Thumbnail")
        self.thumbnails.setChecked(True)
        for box in (self.subtitles, self.burn, self.thumbnails):
            card.body.addWidget(box)
        self.subtitles_field = Field("", QWidget())
        self.subtitles_field.title.setVisible(False)
        card.body.addWidget(self.subtitles_field)
        self.form.addWidget(card)

    def _build_model_card(self) -> None:
        card = Card("Language model")
        self.writer = narrow_combo()
        self.writer_field = Field("Writer", self.writer)
        card.body.addWidget(self.writer_field)
        self.writer_note = label("", "muted", wrap=True)
        card.body.addWidget(self.writer_note)
        grid = QGridLayout()
        grid.setHorizontalSpacing(14)
        grid.setVerticalSpacing(6)
        self.llm_values: dict[str, QLineEdit] = {}
        names = (
            "LLM_BASE_URL",
            "PLANNER_MODEL",
            "SCENE_MODEL",
            "HELPER_MODEL",
            "LLM_API_KEY",
            "LLM_TIMEOUT_S",
        )
        for i, name in enumerate(names):
            value = QLineEdit()
            value.setReadOnly(True)
            value.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            self.llm_values[name] = value
            grid.addWidget(Field(name, value), i // 2, i % 2)
        card.body.addLayout(grid)
        self.use_rag = QCheckBox("Add the Manim notes to the prompts")
        self.use_rag.setToolTip("Retrieval: the bundled Manim notes go into the model's prompts")
        card.body.addWidget(self.use_rag)
        card.body.addWidget(
            label(
                "These come from the environment when the app starts (any OpenAI-compatible "
                "server: Ollama, llama.cpp, vLLM, LM Studio…); see docs/explainer.md.",
                "faint",
                wrap=True,
            )
        )
        self.form.addWidget(card)

    def _show_settings(self) -> None:
        if self.unavailable is not None:
            self.make_btn.setEnabled(False)
            self.make_btn.setToolTip(self.unavailable)
        s = self.settings
        if s is None:
            self.writer_note.setText(f"Explainer videos are misconfigured: {self.settings_error}")
            set_prop(self.writer_note, "role", "error")
            self.make_btn.setEnabled(False)
            self.writer_badge.set("MISCONFIGURED", "danger")
            return
        llm = s.llm
        shown = {
            "LLM_BASE_URL": llm.base_url or "",
            "PLANNER_MODEL": llm.planner_model or "",
            "SCENE_MODEL": llm.scene_model or "",
            "HELPER_MODEL": llm.helper_model or "",
            "LLM_API_KEY": "set (hidden)" if llm.api_key else "",
            "LLM_TIMEOUT_S": f"{llm.timeout_s:g} s",
        }
        for name, value in shown.items():
            self.llm_values[name].setText(value)
            self.llm_values[name].setPlaceholderText("not set")
        self.writer.clear()
        if llm.configured:
            planner, scene, _helper = llm.models()
            self.writer.addItem(f"{planner} (plans) and {scene} (code) on {llm.base_url}", None)
            self.writer.addItem("Offline template planner", OFFLINE)
            self.writer_note.setText(
                "The model plans the scenes and writes their code; a scene that fails to render "
                f"goes back to it with the error (up to {s.max_fix_attempts} tries)."
            )
            self.writer_badge.set(f"MODEL: {planner}", "info")
        else:
            self.writer.addItem("Offline template planner (default: no language model set)", None)
            self.writer_note.setText(
                "No language model is configured, so the offline template planner writes the "
                "video: deterministic scenes (title, bullet points, equation, graph, shapes, code "
                "listing) built from your context. Jobs it writes are labelled so. Set "
                "LLM_BASE_URL and PLANNER_MODEL to use a model."
            )
            self.writer_badge.set("OFFLINE TEMPLATE PLANNER", "dev")
        self.writer.setEnabled(self.writer.count() > 1)
        self.use_rag.setChecked(s.use_rag)
        self.use_rag.setEnabled(llm.configured)
        self.quality.setCurrentIndex(max(0, self.quality.findData(s.default_quality)))
        self.storage.setCurrentIndex(max(0, self.storage.findData(str(s.storage_mode))))
        model = self.storage.model()
        for i in range(self.storage.count()):
            mode = StorageMode(self.storage.itemData(i))
            item = model.item(i)  # type: ignore[attr-defined]
            if mode.uses_s3 and not s.s3.configured:
                item.setEnabled(False)
                item.setToolTip("Set OUTPUT_S3_BUCKET (and OUTPUT_S3_ENDPOINT_URL) to use S3")
        self.storage_field.hint.setText(
            f"S3: s3://{s.s3.bucket}/{s.s3.prefix}"
            if s.s3.configured
            else "S3 copies need OUTPUT_S3_BUCKET in the environment."
        )
        self.storage_field.hint.setVisible(True)

    def _update_counts(self) -> None:
        for n, limit, counter in (
            (len(self.topic.text().strip()), TOPIC_MAX, self.topic_count),
            (len(self.context.toPlainText().strip()), CONTEXT_MAX, self.context_count),
        ):
            counter.setText(f"{n} / {limit}")
            set_prop(counter, "over", n > limit)

    # ------------------------------------------------------------------------------ submit

    def params(self) -> dict[str, Any]:
        p: dict[str, Any] = {
            "topic": self.topic.text(),
            "context": self.context.toPlainText(),
            "quality": self.quality.currentData(),
            "enable_subtitles": self.subtitles.isChecked(),
            "burn_subtitles": self.subtitles.isChecked() and self.burn.isChecked(),
            "enable_thumbnails": self.thumbnails.isChecked(),
            "storage_mode": self.storage.currentData(),
            "use_rag": self.use_rag.isChecked(),
        }
        if self.scenes.value() >= SCENES_RANGE[0]:
            p["scene_count"] = self.scenes.value()
        if self.writer.currentData():
            p["model"] = self.writer.currentData()
        return p

    def fields(self) -> dict[str, Field]:
        return {
            "topic": self.topic_field,
            "context": self.context_field,
            "quality": self.quality_field,
            "scene_count": self.scenes_field,
            "storage_mode": self.storage_field,
            "model": self.writer_field,
            "enable_subtitles": self.subtitles_field,
            "burn_subtitles": self.subtitles_field,
        }

    def show_queued(self, job: Job) -> None:
        self.latest.show_job(job)

    def submit_button(self) -> QPushButton:
        return self.make_btn

    @Slot(object)
    def load_params(self, params: Mapping[str, Any], *, navigate: bool = True) -> None:
        """Fill the form from an explainer job's parameters ("use these settings again")."""
        self.topic.setText(str(params.get("topic") or ""))
        self.context.setPlainText(str(params.get("context") or ""))
        index = self.quality.findData(params.get("quality"))
        if index >= 0:
            self.quality.setCurrentIndex(index)
        self.scenes.setValue(int(params.get("scene_count") or SCENES_RANGE[0] - 1))
        self.subtitles.setChecked(bool(params.get("enable_subtitles", True)))
        self.burn.setChecked(bool(params.get("burn_subtitles")))
        self.thumbnails.setChecked(bool(params.get("enable_thumbnails", True)))
        index = self.storage.findData(params.get("storage_mode"))
        if index >= 0:
            self.storage.setCurrentIndex(index)
        index = self.writer.findData(OFFLINE if params.get("model") == OFFLINE else None)
        self.writer.setCurrentIndex(max(0, index))
        if navigate:
            self.studio.navigate.emit("explain")

    def shutdown(self) -> None:
        self.latest.shutdown()
