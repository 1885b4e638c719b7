"""Generate: choose a model, write a prompt, set the few knobs that matter, queue the job."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSize, Qt, QTimer, Slot
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QGridLayout,
    QHBoxLayout,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from wan_desktop.engine import EngineError, InvalidInputError, Job, JobKind
from wan_desktop.engine.params import (
    CACHE_OFF,
    CHOICES,
    NEGATIVE_PROMPT_MAX,
    PRESET_NONE,
    PROMPT_MAX,
    SEED_MAX,
)
from wan_desktop.models import ModelSpec
from wan_desktop.models.errors import ModelError

from ..dropzone import DropZone
from ..fit import Fit
from ..loras import LoraPicker
from ..model_picker import ModelPicker
from ..state import Notice, Studio
from ..widgets import (
    Badge,
    Card,
    Field,
    button,
    label,
    padded,
    page_layout,
    scroll_page,
    scrolled,
    set_prop,
    tool,
    wheel_only_when_focused,
)
from .form import JobForm
from .generate_models import ModelChoice
from .latest import NowPanel

# The fit check waits for the user to stop typing or dragging for this long.
FIT_DEBOUNCE_MS = 200
# The number boxes accept up to this, so that a value out of range is shown, not clamped.
TYPED_MAX = 999_999
PRESET_LABELS = {"none": "Standard", "fast": "Fast (4-step LoRAs)"}
# The step-caching levels (params.CHOICES["cache"]) as the form names them.
CACHE_LABELS = {"off": "Off", "light": "Light", "medium": "Medium", "strong": "Strong"}
# Fields checked as they change (the others when Generate is pressed): the numbers by the
# engine's own rules, the images by whether they can be read.
NUMBER_KEYS = ("steps", "frames", "seed", "guidance_scale", "guidance_scale_2", "gpus")
LIVE_CHECKED = (*NUMBER_KEYS, "image", "end_image")


class GeneratePanel(QWidget, ModelChoice, JobForm):
    KIND = JobKind.wan
    FIX_HINT = "Fix the highlighted fields, then generate again."
    ERRORS_BY_BASE = True

    def __init__(self, studio: Studio) -> None:
        super().__init__()
        self.studio = studio
        self.spec: ModelSpec | None = None
        self.fits: dict[str, Fit] = {}
        self._fit_token = 0
        self.fit_timer = QTimer(self)
        self.fit_timer.setSingleShot(True)
        self.fit_timer.setInterval(FIT_DEBOUNCE_MS)
        self.fit_timer.timeout.connect(self._check_fits)

        outer = page_layout(self)
        outer.setSpacing(14)
        head = QHBoxLayout()
        title = label("Generate", "title")
        head.addWidget(title)
        head.addStretch(1)
        self.mode_badge = Badge()
        head.addWidget(self.mode_badge)
        outer.addLayout(head)
        self.banner = self._banner()
        outer.addWidget(self.banner)
        self.welcome = self._welcome()
        outer.addWidget(self.welcome)

        columns = QHBoxLayout()
        columns.setSpacing(18)
        form = QWidget()
        self.form = QVBoxLayout(form)
        self.form.setContentsMargins(0, 0, 10, 0)
        self.form.setSpacing(14)
        self._build_model_card()
        self._build_prompt_card()
        self._build_images_card()
        self._build_settings_card()
        self.loras = LoraPicker(studio)
        self.form.addWidget(self.loras)
        self.form.addStretch(1)
        self.form_scroll = scroll_page(form)
        columns.addWidget(self.form_scroll, 5)

        right = QVBoxLayout()
        right.setSpacing(12)
        self.now = NowPanel(studio)
        right.addWidget(scrolled(self.now), 1)  # Generate below it always shows
        submit = QVBoxLayout()
        submit.setSpacing(6)
        self.general_error = label("", "error", wrap=True)
        self.general_error.setVisible(False)
        submit.addWidget(self.general_error)
        self.generate_btn = button("Generate", "generate", variant="primary", large=True)
        self.generate_btn.setShortcut("Ctrl+Return")
        self.generate_btn.setToolTip("Queue this video (Ctrl+Enter)")
        self.generate_btn.clicked.connect(self.send)
        submit.addWidget(self.generate_btn)
        self.estimate = label("", "faint", wrap=True)
        self.estimate.setAlignment(Qt.AlignmentFlag.AlignCenter)
        submit.addWidget(self.estimate)
        right.addLayout(submit)
        right_w = QWidget()
        right_w.setLayout(right)
        columns.addWidget(right_w, 4)
        outer.addLayout(columns, 1)

        studio.catalog_changed.connect(self._on_catalog)
        studio.download_changed.connect(lambda _p: self._update_tiles())
        studio.download_finished.connect(lambda _e: self._update_tiles())
        studio.dev_mode_changed.connect(lambda _on: self.fit_timer.start())
        studio.dev_mode_changed.connect(lambda _on: self._defaults_for_mode())
        studio.dev_mode_changed.connect(lambda _on: self._update_size_hint())
        studio.dev_mode_changed.connect(lambda _on: self._update_mode())
        studio.use_settings.connect(self.load_params)
        self._update_mode()
        first = next(iter(studio.engine.models_view.manifest), None)
        if first is not None:
            self.select_model(first.id)
        self.restore_last()
        self._on_catalog()

    # ------------------------------------------------------------------------------ layout

    def _build_model_card(self) -> None:
        self.picker = ModelPicker(list(self.studio.engine.models_view.manifest))
        self.picker.chosen.connect(self.select_model)
        self.form.addWidget(self.picker)

    def _build_prompt_card(self) -> None:
        card = Card("Prompt")
        self.prompt = QPlainTextEdit()
        self.prompt.setTabChangesFocus(True)  # Tab goes to the next field
        self.prompt.setPlaceholderText(
            "Describe the video: subject, action, setting, camera, light. "
            "E.g. “A red fox trots through fresh snow at dawn, low tracking shot, golden light”"
        )
        self.prompt.setFixedHeight(104)
        self.prompt_count = label("", "counter")
        self.prompt_field = Field("Prompt", self.prompt, trailing=self.prompt_count)
        card.body.addWidget(self.prompt_field)
        self.negative = QPlainTextEdit()
        self.negative.setTabChangesFocus(True)
        self.negative.setPlaceholderText("What to avoid (the model's default is used when empty)")
        self.negative.setFixedHeight(60)
        self.negative_count = label("", "counter")
        self.negative_field = Field("Negative prompt", self.negative, trailing=self.negative_count)
        card.body.addWidget(self.negative_field)
        self.prompt.textChanged.connect(self._update_counts)
        self.negative.textChanged.connect(self._update_counts)
        self._update_counts()
        self.form.addWidget(card)

    def _build_images_card(self) -> None:
        self.images_card = Card("Images")
        self.image = DropZone("Start image", "Drop a PNG, JPEG or WebP here, or click to choose")
        self.image_field = Field("", self.image)
        self.image_field.title.setVisible(False)
        self.images_card.body.addWidget(self.image_field)
        self.end_image = DropZone(
            "End image (optional)", "The last frame: the video moves from the start image to it"
        )
        self.end_image_field = Field("", self.end_image)
        self.end_image_field.title.setVisible(False)
        self.images_card.body.addWidget(self.end_image_field)
        self.image.changed.connect(lambda _p: self.fit_timer.start())
        for zone in (self.image, self.end_image):
            zone.changed.connect(lambda _p: self.check_inputs())
        self.form.addWidget(self.images_card)

    def _build_settings_card(self) -> None:
        card = Card("Settings")
        grid = QGridLayout()
        grid.setHorizontalSpacing(14)
        grid.setVerticalSpacing(10)
        self.resolution = QComboBox()
        wheel_only_when_focused(self.resolution)
        self.resolution.currentTextChanged.connect(lambda _t: self._update_size_hint())
        self.resolution.currentTextChanged.connect(lambda _t: self.fit_timer.start())
        self.resolution_field = Field("Resolution", self.resolution)
        grid.addWidget(self.resolution_field, 0, 0)
        # The boxes take any number typed; one out of range is shown at its field (the allowed
        # range with it), never clamped silently.
        self.steps = padded(QSpinBox())
        self.steps.setRange(0, TYPED_MAX)
        self.steps_field = Field("Steps", self.steps)
        grid.addWidget(self.steps_field, 0, 1)
        self.frames = padded(QSpinBox())
        self.frames.setRange(0, TYPED_MAX)
        self.frames.setSingleStep(4)
        self.frames.valueChanged.connect(lambda _v: self._update_size_hint())
        for box in (self.steps, self.frames):
            box.valueChanged.connect(lambda _v: self.fit_timer.start())
            box.valueChanged.connect(lambda _v: self.check_inputs())
        self.frames_field = Field("Frames", self.frames)
        grid.addWidget(self.frames_field, 1, 0)
        seed_row = QHBoxLayout()
        seed_row.setSpacing(6)
        self.seed = QLineEdit()
        self.seed.setPlaceholderText("random")
        self.seed.textChanged.connect(lambda _t: self.check_inputs())
        seed_row.addWidget(self.seed, 1)
        dice = tool("dice", "Roll a new seed", size=18)
        dice.clicked.connect(self.roll_seed)
        seed_row.addWidget(dice)
        self.seed_field = Field("Seed", seed_row)
        grid.addWidget(self.seed_field, 1, 1)
        self.guidance = padded(QDoubleSpinBox())
        self.guidance.setRange(0.0, TYPED_MAX)
        self.guidance.setSingleStep(0.5)
        self.guidance.setDecimals(1)
        self.guidance.valueChanged.connect(lambda _v: self.fit_timer.start())
        self.guidance_field = Field("Guidance", self.guidance)
        grid.addWidget(self.guidance_field, 2, 0)
        self.guidance_2 = padded(QDoubleSpinBox())
        self.guidance_2.setRange(0.0, TYPED_MAX)
        self.guidance_2.setSingleStep(0.5)
        self.guidance_2.setDecimals(1)
        self.guidance_2_field = Field("Guidance, low-noise expert", self.guidance_2)
        for gbox in (self.guidance, self.guidance_2):
            gbox.valueChanged.connect(lambda _v: self.check_inputs())
        grid.addWidget(self.guidance_2_field, 2, 1)
        self.cache = QComboBox()
        wheel_only_when_focused(self.cache)
        for level in CHOICES["cache"]:
            self.cache.addItem(CACHE_LABELS.get(level, level), level)
        self.cache.setToolTip(
            "Step caching skips transformer calls whose result barely changes: off is the best "
            "quality; the stronger, the faster and the more the video may change. The job "
            "records how many calls it skipped."
        )
        self.cache_field = Field("Step caching", self.cache)
        grid.addWidget(self.cache_field, 3, 0)
        self.preset = QComboBox()
        wheel_only_when_focused(self.preset)
        for name in CHOICES["preset"]:
            self.preset.addItem(PRESET_LABELS.get(name, name), name)
        self.preset.setToolTip(
            "Fast: the model's step-distilled LoRAs (one per expert, downloaded like a model) "
            "with the 4 steps and guidance 1 they were made for."
        )
        self.preset.currentIndexChanged.connect(lambda _i: self._apply_preset())
        self.preset_field = Field("Preset", self.preset)
        grid.addWidget(self.preset_field, 3, 1)
        # One video across several GPUs: offered only where the engine can split a job (a pool
        # with two or more workers on one machine); the engine says which counts fit the model.
        self.gpus_most = self.studio.engine.gpus_per_machine()
        self.gpus = QComboBox()
        wheel_only_when_focused(self.gpus)
        for n in range(1, self.gpus_most + 1):
            self.gpus.addItem("1 (the usual)" if n == 1 else f"{n}, one video split across them", n)
        self.gpus.currentIndexChanged.connect(lambda _i: self.check_inputs())
        self.gpus_field = Field("GPUs", self.gpus)
        self.gpus_field.setToolTip("Split one video across GPUs of one machine of the pool")
        self.gpus_field.setVisible(self.gpus_most >= 2)
        grid.addWidget(self.gpus_field, 4, 0)
        grid.setColumnStretch(0, 1)
        grid.setColumnStretch(1, 1)
        card.body.addLayout(grid)
        self.size_hint = label("", "faint", wrap=True)
        card.body.addWidget(self.size_hint)
        self.form.addWidget(card)

    # ------------------------------------------------------------------------------ state

    @Slot()
    def _on_catalog(self) -> None:
        self._update_tiles()
        self._update_welcome()
        self.fit_timer.start()

    @Slot(str)
    def select_model(self, model_id: str) -> None:
        spec = self.studio.engine.models_view.manifest.get(model_id)
        changed = self.spec is None or self.spec.id != spec.id
        self.spec = spec
        self.picker.select(spec)
        self.loras.set_two_experts("transformer_2" in spec.components)
        self.images_card.setVisible(spec.accepts_image or spec.requires_image)
        self.end_image_field.setVisible(spec.supports_end_image)
        self.image.title.setText("Start image" + ("" if spec.requires_image else " (optional)"))
        self.guidance_2_field.setVisible(spec.defaults.guidance_scale_2 is not None)
        if changed:
            self._apply_defaults(spec)
        # Presets this model has a LoRA pack for (models.toml); the others cannot be chosen.
        manifest = self.studio.engine.models_view.manifest
        model = self.preset.model()
        for i in range(1, self.preset.count()):
            pack = manifest.lora_pack(spec.id, self.preset.itemData(i))
            model.item(i).setEnabled(pack is not None)  # type: ignore[attr-defined]
        if not model.item(self.preset.currentIndex()).isEnabled():  # type: ignore[attr-defined]
            self.preset.setCurrentIndex(0)
        self._apply_preset()
        self.picker.field.set_error(None)
        self.fit_timer.start()

    def _apply_preset(self) -> None:
        """A preset sets the steps and guidance its LoRAs were made for: shown, not editable."""
        if self.spec is None:
            return
        pack = self.studio.engine.models_view.manifest.lora_pack(
            self.spec.id, self.preset.currentData()
        )
        for box in (self.steps, self.guidance, self.guidance_2):
            box.setEnabled(pack is None)
        if pack is not None:
            self.steps.setValue(int(pack.settings["steps"]))
            for box, key in (
                (self.guidance, "guidance_scale"),
                (self.guidance_2, "guidance_scale_2"),
            ):
                if key in pack.settings:
                    box.setValue(float(pack.settings[key]))

    def _update_counts(self) -> None:
        for edit, counter, limit in (
            (self.prompt, self.prompt_count, PROMPT_MAX),
            (self.negative, self.negative_count, NEGATIVE_PROMPT_MAX),
        ):
            n = len(edit.toPlainText().strip())
            counter.setText(f"{n} / {limit}")
            set_prop(counter, "over", n > limit)

    def roll_seed(self) -> None:
        self.seed.setText(str(secrets.randbelow(2**31)))

    # ------------------------------------------------------------------------------ submit

    def engine_errors(self) -> dict[str, str]:
        """What the engine would say about the form as it is, by field."""
        if self.spec is None:
            return {}
        try:
            self.studio.engine.validate(self.KIND, self.params())
        except InvalidInputError as exc:
            return exc.errors
        except EngineError:  # no pipeline here (engine packages missing): submitting says so
            return {}
        return {}

    def input_problems(self) -> dict[str, str]:
        """What is wrong with the fields checked as they change (numbers, images), by field."""
        problems = {k: v for k, v in self.engine_errors().items() if k in NUMBER_KEYS}
        for key, zone in (("image", self.image), ("end_image", self.end_image)):
            if zone.problem:
                problems[key] = zone.problem
        return problems

    def check_inputs(self) -> dict[str, str]:
        """Show each input problem at its field; Generate waits until there is none."""
        problems = self.input_problems()
        fields = self.fields()
        for key in LIVE_CHECKED:
            fields[key].set_error(problems.get(key))
        self.generate_btn.setEnabled(not problems and self.sending is None)
        self.generate_btn.setToolTip(
            "Queue this video (Ctrl+Enter)"
            if not problems
            else "Fix the fields marked in red first: " + "; ".join(problems.values())
        )
        return problems

    def ready(self) -> bool:
        problems = self.check_inputs()
        if problems:  # every error at once, as a submit shows them
            self.show_errors({**self.engine_errors(), **problems})
        return not problems

    def submit_button(self) -> QPushButton:
        return self.generate_btn

    def params(self) -> dict[str, Any]:
        assert self.spec is not None
        p: dict[str, Any] = {
            "model": self.spec.id,
            "prompt": self.prompt.toPlainText(),
            "negative_prompt": self.negative.toPlainText().strip(),
            "resolution": self.resolution.currentText(),
            "steps": self.steps.value(),
            "frames": self.frames.value(),
            "guidance_scale": self.guidance.value(),
        }
        if self.cache.currentData() != CACHE_OFF:
            p["cache"] = self.cache.currentData()
        if self.preset.currentData() != PRESET_NONE:
            p["preset"] = self.preset.currentData()
        if self.guidance_2_field.isVisible() or self.spec.defaults.guidance_scale_2 is not None:
            p["guidance_scale_2"] = self.guidance_2.value()
        seed = self.seed.text().strip()
        if seed:  # as typed: the engine says what is wrong with it
            p["seed"] = int(seed) if seed.isdigit() else seed
        if self.image.path:
            p["image"] = self.image.path
        if self.end_image.path:
            p["end_image"] = self.end_image.path
        loras = self.loras.selection()
        if loras:
            p["loras"] = loras
        if self.gpus_most >= 2 and int(self.gpus.currentData() or 1) > 1:
            p["gpus"] = int(self.gpus.currentData())
        return p

    def show_queued(self, job: Job) -> None:
        self.now.show_job(job)

    def fields(self) -> dict[str, Field]:
        return {
            "model": self.picker.field,
            "prompt": self.prompt_field,
            "negative_prompt": self.negative_field,
            "resolution": self.resolution_field,
            "width": self.resolution_field,
            "height": self.resolution_field,
            "steps": self.steps_field,
            "frames": self.frames_field,
            "seed": self.seed_field,
            "guidance_scale": self.guidance_field,
            "guidance_scale_2": self.guidance_2_field,
            "cache": self.cache_field,
            "preset": self.preset_field,
            "image": self.image_field,
            "end_image": self.end_image_field,
            "loras": self.loras.field,
            "gpus": self.gpus_field,
        }

    @Slot(object)
    def load_params(self, params: Mapping[str, Any], *, navigate: bool = True) -> None:
        """Fill the form from a job's parameters ("use these settings again")."""
        model = str(params.get("model") or "")
        try:
            self.select_model(model)
        except ModelError as exc:
            self.studio.post(Notice("warning", "Unknown model", exc.message))
            return
        self.prompt.setPlainText(str(params.get("prompt") or ""))
        self.negative.setPlainText(str(params.get("negative_prompt") or ""))
        res = params.get("requested_resolution") or (
            f"{params['width']}x{params['height']}" if params.get("width") else None
        )
        if res:
            if self.resolution.findText(str(res)) < 0:
                self.resolution.addItem(str(res))
            self.resolution.setCurrentText(str(res))
        for key, box in (("steps", self.steps), ("frames", self.frames)):
            if params.get(key) is not None:
                box.setValue(int(params[key]))
        if params.get("seed") is not None:
            self.seed.setText(str(params["seed"]))
        if params.get("guidance_scale") is not None:
            self.guidance.setValue(float(params["guidance_scale"]))
        if params.get("guidance_scale_2") is not None:
            self.guidance_2.setValue(float(params["guidance_scale_2"]))
        self.cache.setCurrentIndex(max(0, self.cache.findData(params.get("cache") or CACHE_OFF)))
        self.preset.setCurrentIndex(
            max(0, self.preset.findData(params.get("preset") or PRESET_NONE))
        )
        for key, zone in (("image", self.image), ("end_image", self.end_image)):
            path = params.get(key)
            zone.set_path(str(path) if path and Path(str(path)).is_file() else "")
        self.loras.select(params.get("loras") or ())
        self.gpus.setCurrentIndex(max(0, self.gpus.findData(int(params.get("gpus") or 1))))
        if navigate:
            self.studio.navigate.emit("generate")

    def sizeHint(self) -> QSize:
        return QSize(1100, 760)


__all__ = ["SEED_MAX", "GeneratePanel"]
