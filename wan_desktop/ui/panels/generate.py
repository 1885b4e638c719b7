"""Generate: choose a model, write a prompt, set the few knobs that matter, queue the job."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSize, Qt, QUrl, Signal, Slot
from PySide6.QtGui import QDesktopServices, QFont, QIcon, QIntValidator
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QSlider,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from wan_desktop.engine import InvalidInputError, Job
from wan_desktop.engine.params import (
    CONTRACT_RESOLUTIONS,
    FRAMES_MAX,
    PROMPT_MAX,
    SEED_MAX,
    round_size,
)
from wan_desktop.models import DownloadProgress, ModelSpec
from wan_desktop.models.manifest import parse_resolution

from .. import format as fmt
from .. import icons, theme
from ..catalog import ModelRow
from ..dropzone import DropZone
from ..fit import UNKNOWN, Fit, estimate_text, model_fit
from ..jobview import JobCard
from ..loras import LoraFile, list_loras
from ..pictures import Picture, job_image, poster
from ..state import Notice, Studio
from ..widgets import (
    Badge,
    Card,
    EmptyState,
    Field,
    button,
    clear_layout,
    label,
    padded,
    page_layout,
    scroll_page,
    set_prop,
    tool,
)

TASK_TEXT = {"t2v": "Text → video", "i2v": "Image → video", "ti2v": "Text or image → video"}


class ModelTile(QFrame):
    """One model in the picker: name, what it does, whether it is here, how big, whether it fits."""

    chosen = Signal(str)

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.spec = spec
        self.setObjectName("Tile")
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        row = QHBoxLayout(self)
        row.setContentsMargins(12, 10, 12, 10)
        row.setSpacing(10)
        col = QVBoxLayout()
        col.setSpacing(2)
        name = label(spec.model_type)
        f = name.font()
        f.setWeight(QFont.Weight.DemiBold)
        name.setFont(f)
        col.addWidget(name)
        col.addWidget(label(TASK_TEXT.get(spec.task, spec.task), "faint"))
        row.addLayout(col, 1)
        side = QVBoxLayout()
        side.setSpacing(3)
        self.status = Badge()
        self.fit = Badge()
        side.addWidget(self.status, 0, Qt.AlignmentFlag.AlignRight)
        side.addWidget(self.fit, 0, Qt.AlignmentFlag.AlignRight)
        row.addLayout(side)

    def set_row(
        self, row: ModelRow | None, fit: Fit, download: DownloadProgress | None = None
    ) -> None:
        if download is not None:
            frac = download.fraction
            pct = f" {frac * 100:.0f}%" if frac is not None else "…"
            self.status.set(f"downloading{pct}", "accent")
        elif row is None:
            self.status.set("checking…", "neutral")
        elif row.status.complete:
            dev = " · dev" if row.variant.development else ""
            self.status.set(f"ready · {fmt.size(row.size_bytes)}{dev}", "success")
        elif row.status.state.value == "PARTIAL":
            self.status.set(f"partial · {fmt.size(row.size_bytes)}", "warning")
        elif row.status.state.value == "CORRUPT":
            self.status.set("damaged: repair", "danger")
        else:
            word = "built on first use" if row.variant.development else "download"
            self.status.set(f"{word} · {fmt.size(row.size_bytes)}", "info")
        # No verdict (no planner): say nothing per tile; the panel says it once.
        self.fit.set(fit.text if fit.kind != "neutral" else "", fit.kind)
        self.fit.setToolTip(fit.detail)

    def set_selected(self, on: bool) -> None:
        set_prop(self, "selected", on)

    def mousePressEvent(self, event: Any) -> None:
        self.chosen.emit(self.spec.id)
        super().mousePressEvent(event)


class LoraRow(QWidget):
    def __init__(self, lora: LoraFile) -> None:
        super().__init__()
        self.lora = lora
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(10)
        self.check = QCheckBox(lora.name)
        self.check.setToolTip(f"{lora.path}  ·  {fmt.size(lora.size_bytes)}")
        row.addWidget(self.check, 1)
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, 200)
        self.slider.setValue(100)
        self.slider.setFixedWidth(150)
        self.slider.setToolTip("Strength 0–2")
        row.addWidget(self.slider)
        self.value = label("1.00", "muted")
        self.value.setFixedWidth(36)
        row.addWidget(self.value)
        self.slider.valueChanged.connect(lambda v: self.value.setText(f"{v / 100:.2f}"))
        self.slider.valueChanged.connect(lambda _v: self.check.setChecked(True))

    @property
    def strength(self) -> float:
        return self.slider.value() / 100


class NowPanel(Card):
    """The right-hand column: the latest job's picture, progress and result."""

    def __init__(self, studio: Studio) -> None:
        super().__init__("Latest", margins=16)
        self.studio = studio
        self.job_id: str | None = None
        self.picture = Picture(aspect=16 / 9)
        self.body.addWidget(self.picture)
        self.card_holder = QVBoxLayout()
        self.body.addLayout(self.card_holder)
        self.card: JobCard | None = None
        self.empty = EmptyState(
            "film",
            "Your video appears here",
            "Queue a job and watch its steps, preview frames and result in this space.",
        )
        self.body.addWidget(self.empty)
        self.body.addStretch(1)
        self.recent_title = label("RECENT", "section")
        self.recent_title.setVisible(False)  # until there is a finished video to show
        self.body.addWidget(self.recent_title)
        self.recent = QHBoxLayout()
        self.recent.setSpacing(8)
        self.body.addLayout(self.recent)
        self._recent_ids: list[str] = []
        studio.job_updated.connect(self._on_job)
        studio.preview_changed.connect(self._on_preview)
        studio.jobs_changed.connect(self._pick_latest)
        self._pick_latest()

    def _update_recent(self, shown: str | None) -> None:
        done = [j for j in self.studio.outputs() if j.id != shown][:3]
        ids = [j.id for j in done]
        if ids == self._recent_ids:
            return
        self._recent_ids = ids
        clear_layout(self.recent)
        for job in done:
            b = QToolButton()
            b.setIcon(QIcon(poster(job, None, 120, 68)))
            b.setIconSize(QSize(120, 68))
            b.setToolTip(f"{job.prompt}\n{fmt.summary(job)}")
            b.setCursor(Qt.CursorShape.PointingHandCursor)
            b.clicked.connect(
                lambda _c=False, jid=job.id: self.studio.navigate.emit(f"gallery:{jid}")
            )
            self.recent.addWidget(b)
        self.recent.addStretch(1)
        self.recent_title.setVisible(bool(done))

    @Slot()
    def _pick_latest(self) -> None:
        s = self.studio
        candidates = s.active() or s.queued()[:1] or s.finished()[:1]
        job = candidates[0] if candidates else None
        self._update_recent(job.id if job else None)
        if job is None:
            self.job_id = None
            self.recent_title.setVisible(False)
            self.picture.setVisible(False)
            if self.card is not None:
                self.card.setVisible(False)
            self.empty.setVisible(True)
            return
        self.show_job(job)

    def show_job(self, job: Job) -> None:
        self.job_id = job.id
        self.empty.setVisible(False)
        self.picture.setVisible(True)
        if self.card is None:
            self.card = JobCard(job, picture=False)
            self.card.setObjectName("Plain")
            self.card.cancel_requested.connect(self._cancel)
            self.card.retry_requested.connect(self._retry)
            self.card.delete_requested.connect(self._delete)
            self.card.open_requested.connect(
                lambda jid: self.studio.navigate.emit(f"gallery:{jid}")
            )
            self.card_holder.addWidget(self.card)
        self.card.setVisible(True)
        self._render(job)

    def _cancel(self, job_id: str) -> None:
        self.studio.engine.cancel(job_id)

    def _retry(self, job_id: str) -> None:
        self.studio.engine.retry(job_id)
        self.studio.reload_jobs()

    def _delete(self, job_id: str) -> None:
        self.studio.engine.delete(job_id)

    def _render(self, job: Job) -> None:
        entry = self.studio.previews.get(job.id)
        preview = entry[1] if entry else None
        self.picture.set_image(job_image(job, preview))
        if self.card is not None:
            self.card.set_job(job, preview)

    @Slot(object)
    def _on_job(self, job: Job) -> None:
        if job.id == self.job_id:
            self._render(job)

    @Slot(str)
    def _on_preview(self, job_id: str) -> None:
        job = self.studio.jobs.get(job_id)
        if job is not None and job_id == self.job_id:
            self._render(job)


class GeneratePanel(QWidget):
    def __init__(self, studio: Studio) -> None:
        super().__init__()
        self.studio = studio
        self.spec: ModelSpec | None = None
        self.tiles: dict[str, ModelTile] = {}
        self.fits: dict[str, Fit] = {}
        self.lora_rows: list[LoraRow] = []

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
        self._build_lora_card()
        self.form.addStretch(1)
        self.form_scroll = scroll_page(form)
        columns.addWidget(self.form_scroll, 5)

        right = QVBoxLayout()
        right.setSpacing(12)
        self.now = NowPanel(studio)
        right.addWidget(self.now, 1)
        submit = QVBoxLayout()
        submit.setSpacing(6)
        self.general_error = label("", "error", wrap=True)
        self.general_error.setVisible(False)
        submit.addWidget(self.general_error)
        self.generate_btn = button("Generate", "generate", variant="primary", large=True)
        self.generate_btn.setShortcut("Ctrl+Return")
        self.generate_btn.setToolTip("Queue this video (Ctrl+Enter)")
        self.generate_btn.clicked.connect(self.submit)
        submit.addWidget(self.generate_btn)
        self.estimate = label("", "faint", wrap=True)
        self.estimate.setAlignment(Qt.AlignmentFlag.AlignCenter)
        submit.addWidget(self.estimate)
        right.addLayout(submit)
        right_w = QWidget()
        right_w.setLayout(right)
        right_w.setMinimumWidth(340)
        columns.addWidget(right_w, 4)
        outer.addLayout(columns, 1)

        studio.catalog_changed.connect(self._on_catalog)
        studio.download_changed.connect(lambda _p: self._update_tiles())
        studio.download_finished.connect(lambda _e: self._update_tiles())
        studio.dev_mode_changed.connect(lambda _on: self._update_mode())
        studio.use_settings.connect(self.load_params)
        self._update_mode()
        first = next(iter(studio.engine.models.manifest), None)
        if first is not None:
            self.select_model(first.id)
        self._on_catalog()
        self.refresh_loras()

    # ------------------------------------------------------------------------------ layout

    def _banner(self) -> QFrame:
        box = QFrame()
        box.setObjectName("Banner")
        row = QHBoxLayout(box)
        row.setContentsMargins(14, 10, 14, 10)
        row.setSpacing(10)
        self.banner_icon = QLabel()
        row.addWidget(self.banner_icon)
        self.banner_text = label("", wrap=True)
        row.addWidget(self.banner_text, 1)
        self.banner_btn = button("Turn off", variant="ghost")
        self.banner_btn.clicked.connect(lambda: self.studio.set_dev_mode(False))
        row.addWidget(self.banner_btn)
        return box

    def _welcome(self) -> Card:
        card = Card("Welcome to Wan Desktop", margins=20)
        card.body.addWidget(
            label(
                "No model is on this computer yet. Try the app right away with the development "
                "models, or download a real one.",
                "muted",
                wrap=True,
            )
        )
        grid = QHBoxLayout()
        grid.setSpacing(14)
        dev = Card(margins=14, name="Tile")
        dev.body.addWidget(label("Try it now: development mode", "h2"))
        dev.body.addWidget(
            label(
                "Tiny random-weight versions of all three models, with the real architecture, "
                "built on this machine in seconds. The videos are noise, and every one is "
                "labelled as such. Good for checking that everything works.",
                "muted",
                wrap=True,
            )
        )
        use = button("Use development mode", "bolt", variant="primary")
        use.clicked.connect(self._use_dev_mode)
        dev.body.addWidget(use, 0, Qt.AlignmentFlag.AlignLeft)
        grid.addWidget(dev, 1)
        real = Card(margins=14, name="Tile")
        real.body.addWidget(label("Real models", "h2"))
        self.welcome_models = QVBoxLayout()
        self.welcome_models.setSpacing(6)
        real.body.addLayout(self.welcome_models)
        grid.addWidget(real, 1)
        card.body.addLayout(grid)
        later = button("Not now", variant="ghost")
        later.clicked.connect(self._dismiss_welcome)
        card.header.addWidget(later) if card.header is not None else None
        return card

    def _build_model_card(self) -> None:
        card = Card("Model")
        self.tile_box = QVBoxLayout()
        self.tile_box.setSpacing(8)
        for spec in self.studio.engine.models.manifest:
            tile = ModelTile(spec)
            tile.chosen.connect(self.select_model)
            self.tiles[spec.id] = tile
            self.tile_box.addWidget(tile)
        self.model_field = Field("", self.tile_box)
        self.model_field.title.setVisible(False)
        card.body.addWidget(self.model_field)
        self.model_desc = label("", "faint", wrap=True)
        card.body.addWidget(self.model_desc)
        self.fit_note = label(
            "Whether a model fits this GPU is shown here once the VRAM planner is installed; "
            "each queued job shows the pipeline's own estimate.",
            "faint",
            wrap=True,
        )
        card.body.addWidget(self.fit_note)
        self.form.addWidget(card)

    def _build_prompt_card(self) -> None:
        card = Card("Prompt")
        self.prompt = QPlainTextEdit()
        self.prompt.setPlaceholderText(
            "Describe the video: subject, action, setting, camera, light. "
            "E.g. “A red fox trots through fresh snow at dawn, low tracking shot, golden light”"
        )
        self.prompt.setFixedHeight(104)
        self.prompt_count = label("", "counter")
        self.prompt_field = Field("Prompt", self.prompt, trailing=self.prompt_count)
        card.body.addWidget(self.prompt_field)
        self.negative = QPlainTextEdit()
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
        self.form.addWidget(self.images_card)

    def _build_settings_card(self) -> None:
        card = Card("Settings")
        grid = QGridLayout()
        grid.setHorizontalSpacing(14)
        grid.setVerticalSpacing(10)
        self.resolution = QComboBox()
        self.resolution.currentTextChanged.connect(lambda _t: self._update_size_hint())
        self.resolution_field = Field("Resolution", self.resolution)
        grid.addWidget(self.resolution_field, 0, 0)
        self.steps = padded(QSpinBox())
        self.steps.setRange(1, 100)
        self.steps_field = Field("Steps", self.steps)
        grid.addWidget(self.steps_field, 0, 1)
        self.frames = padded(QSpinBox())
        self.frames.setRange(1, FRAMES_MAX)
        self.frames.setSingleStep(4)
        self.frames.valueChanged.connect(lambda _v: self._update_size_hint())
        self.frames_field = Field("Frames", self.frames)
        grid.addWidget(self.frames_field, 1, 0)
        seed_row = QHBoxLayout()
        seed_row.setSpacing(6)
        self.seed = QLineEdit()
        self.seed.setPlaceholderText("random")
        self.seed.setValidator(QIntValidator(0, 2**31 - 1))
        seed_row.addWidget(self.seed, 1)
        dice = tool("dice", "Roll a new seed", size=18)
        dice.clicked.connect(self.roll_seed)
        seed_row.addWidget(dice)
        self.seed_field = Field("Seed", seed_row)
        grid.addWidget(self.seed_field, 1, 1)
        self.guidance = padded(QDoubleSpinBox())
        self.guidance.setRange(0.0, 30.0)
        self.guidance.setSingleStep(0.5)
        self.guidance.setDecimals(1)
        self.guidance_field = Field("Guidance", self.guidance)
        grid.addWidget(self.guidance_field, 2, 0)
        self.guidance_2 = padded(QDoubleSpinBox())
        self.guidance_2.setRange(0.0, 30.0)
        self.guidance_2.setSingleStep(0.5)
        self.guidance_2.setDecimals(1)
        self.guidance_2_field = Field("Guidance, low-noise expert", self.guidance_2)
        grid.addWidget(self.guidance_2_field, 2, 1)
        grid.setColumnStretch(0, 1)
        grid.setColumnStretch(1, 1)
        card.body.addLayout(grid)
        self.size_hint = label("", "faint", wrap=True)
        card.body.addWidget(self.size_hint)
        self.form.addWidget(card)

    def _build_lora_card(self) -> None:
        self.lora_card = Card("LoRA")
        refresh = tool("refresh", "Look for new LoRA files")
        refresh.clicked.connect(self.refresh_loras)
        folder = tool("folder", "Open the LoRA folder")
        folder.clicked.connect(self._open_lora_folder)
        if self.lora_card.header is not None:
            self.lora_card.header.addWidget(refresh)
            self.lora_card.header.addWidget(folder)
        self.lora_list = QVBoxLayout()
        self.lora_list.setSpacing(8)
        self.lora_field = Field("", self.lora_list)
        self.lora_field.title.setVisible(False)
        self.lora_card.body.addWidget(self.lora_field)
        self.form.addWidget(self.lora_card)

    # ------------------------------------------------------------------------------ state

    def _update_mode(self) -> None:
        s = self.studio
        if s.mock:
            kind, text = (
                "dev",
                ("Mock mode: no model runs; every video is a labelled test pattern."),
            )
            self.mode_badge.set("MOCK", "dev")
            self.banner_btn.setVisible(False)
        elif s.dev_mode:
            kind, text = (
                "dev",
                (
                    "Development mode: every model runs its tiny random-weight variant. Videos are "
                    "noise and are labelled that way."
                ),
            )
            self.mode_badge.set("DEVELOPMENT MODE", "dev")
            self.banner_btn.setVisible(True)
        else:
            self.banner.setVisible(False)
            self.mode_badge.setVisible(False)
            return
        set_prop(self.banner, "kind", kind)
        self.banner_icon.setPixmap(icons.pixmap("bolt", 18, theme.P.dev))
        self.banner_text.setText(text)
        self.banner.setVisible(True)

    @Slot()
    def _on_catalog(self) -> None:
        self._update_tiles()
        self._update_welcome()
        self._check_fits()

    def _update_tiles(self) -> None:
        rows = {r.spec.id: r for r in self.studio.usable_rows()}
        downloads = {key[0]: p for key, p in self.studio.downloads.items()}
        for model_id, tile in self.tiles.items():
            tile.set_row(
                rows.get(model_id), self.fits.get(model_id, UNKNOWN), downloads.get(model_id)
            )
        unknown = all(f.kind == "neutral" for f in self.fits.values()) if self.fits else True
        self.fit_note.setVisible(unknown)

    def _check_fits(self) -> None:
        engine = self.studio.engine

        def check_all() -> dict[str, Fit]:
            return {spec.id: model_fit(engine, spec.id) for spec in engine.models.manifest}

        def done(fits: dict[str, Fit]) -> None:
            if fits != self.fits:
                self.fits = fits
                self._on_catalog()

        self.studio.background.run(check_all, on_done=done)

    def _update_welcome(self) -> None:
        s = self.studio
        any_ready = any(r.status.complete for r in s.catalog)
        show = s.catalog_loaded and not any_ready and not s.dev_mode and not s.mock
        show = show and not s.settings.welcomed
        self.welcome.setVisible(show)
        if not show:
            return
        clear_layout(self.welcome_models)
        for spec in s.engine.models.manifest:
            row = s.row(spec.id, spec.default_variant)
            line = QHBoxLayout()
            line.setSpacing(8)
            line.addWidget(label(spec.model_type), 1)
            size = fmt.size(row.size_bytes if row else None)
            fit = self.fits.get(spec.id, UNKNOWN)
            verdict = f"  ·  {fit.text}" if fit.kind != "neutral" else ""
            line.addWidget(label(f"{size} download{verdict}", "faint"))
            get = tool("download", f"Download {spec.model_type} ({size})")
            get.clicked.connect(lambda _c=False, m=spec.id: self._download(m))
            line.addWidget(get)
            self.welcome_models.addLayout(line)

    def _use_dev_mode(self) -> None:
        self.studio.set_dev_mode(True)
        self.welcome.setVisible(False)

    def _dismiss_welcome(self) -> None:
        import dataclasses

        self.studio.save_settings(dataclasses.replace(self.studio.settings, welcomed=True))
        self.welcome.setVisible(False)

    def _download(self, model_id: str) -> None:
        spec = self.studio.engine.models.manifest.get(model_id)
        self.studio.engine.ensure_model(model_id)
        self.studio.navigate.emit(f"models:{spec.id}:{spec.default_variant}")

    @Slot(str)
    def select_model(self, model_id: str) -> None:
        spec = self.studio.engine.models.manifest.get(model_id)
        changed = self.spec is None or self.spec.id != spec.id
        self.spec = spec
        for mid, tile in self.tiles.items():
            tile.set_selected(mid == spec.id)
        self.model_desc.setText(spec.description)
        self.images_card.setVisible(spec.accepts_image or spec.requires_image)
        self.end_image_field.setVisible(spec.supports_end_image)
        self.image.title.setText("Start image" + ("" if spec.requires_image else " (optional)"))
        self.guidance_2_field.setVisible(spec.defaults.guidance_scale_2 is not None)
        if changed:
            self._apply_defaults(spec)
        self.model_field.set_error(None)

    def _apply_defaults(self, spec: ModelSpec) -> None:
        d = spec.defaults
        self.resolution.blockSignals(True)
        self.resolution.clear()
        options = list(dict.fromkeys([*CONTRACT_RESOLUTIONS, d.resolution]))
        max_w, max_h = d.max_size
        options = [o for o in options if _area(o) <= max_w * max_h * 1.0001] or [d.resolution]
        self.resolution.addItems(options)
        self.resolution.setCurrentText(d.resolution)
        self.resolution.blockSignals(False)
        self.steps.setValue(d.steps)
        self.frames.setValue(d.frames)
        self.guidance.setValue(d.guidance_scale)
        self.guidance_2.setValue(d.guidance_scale_2 or d.guidance_scale)
        if not spec.accepts_image:
            self.image.set_path("")
        if not spec.supports_end_image:
            self.end_image.set_path("")
        self._update_size_hint()

    def _update_size_hint(self) -> None:
        if self.spec is None:
            return
        try:
            w, h = round_size(*parse_resolution(self.resolution.currentText()), self.spec)
        except ValueError:
            return
        fps = self.spec.defaults.fps
        n = self.frames.value()
        self.size_hint.setText(
            f"Renders at {w}×{h}, {n} frames = {n / fps:.1f} s at {fps} fps. "
            "Frames must be 4k+1 (…, 77, 81, 85, …)."
        )

    def _update_counts(self) -> None:
        for edit, counter in (
            (self.prompt, self.prompt_count),
            (self.negative, self.negative_count),
        ):
            n = len(edit.toPlainText().strip())
            counter.setText(f"{n} / {PROMPT_MAX}")
            set_prop(counter, "over", n > PROMPT_MAX)

    def roll_seed(self) -> None:
        self.seed.setText(str(secrets.randbelow(2**31)))

    def refresh_loras(self) -> None:
        clear_layout(self.lora_list)
        folder = self.studio.engine.settings.loras_dir
        self.lora_rows = [LoraRow(lora) for lora in list_loras(folder)]
        for row in self.lora_rows:
            self.lora_list.addWidget(row)
        if not self.lora_rows:
            hint = label(
                f"No LoRA files yet. Put .safetensors files in {folder} and refresh.",
                "faint",
                wrap=True,
            )
            self.lora_list.addWidget(hint)

    def _open_lora_folder(self) -> None:
        folder = self.studio.engine.settings.loras_dir
        folder.mkdir(parents=True, exist_ok=True)
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder)))

    # ------------------------------------------------------------------------------ submit

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
        if self.guidance_2_field.isVisible() or self.spec.defaults.guidance_scale_2 is not None:
            p["guidance_scale_2"] = self.guidance_2.value()
        if self.seed.text().strip():
            p["seed"] = int(self.seed.text())
        if self.image.path:
            p["image"] = self.image.path
        if self.end_image.path:
            p["end_image"] = self.end_image.path
        loras = [
            {"path": str(r.lora.path), "strength": r.strength}
            for r in self.lora_rows
            if r.check.isChecked()
        ]
        if loras:
            p["loras"] = loras
        return p

    @Slot()
    def submit(self) -> Job | None:
        self.show_errors({})
        try:
            job = self.studio.submit(self.params())
        except InvalidInputError as exc:
            self.show_errors(exc.errors)
            return None
        except Exception as exc:  # the engine could not take it (e.g. no pipeline)
            self.show_errors({"": str(exc)})
            return None
        self.estimate.setText(
            f"Queued  ·  {estimate_text(job.estimate) or 'no estimate'}"
            + (f"  ·  {job.label}" if job.label else "")
        )
        self.now.show_job(job)
        self.studio.post(Notice("info", "Queued", fmt.summary(job), job_id=job.id))
        return job

    def fields(self) -> dict[str, Field]:
        return {
            "model": self.model_field,
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
            "image": self.image_field,
            "end_image": self.end_image_field,
            "loras": self.lora_field,
        }

    def show_errors(self, errors: Mapping[str, str]) -> None:
        fields = self.fields()
        general = []
        shown: dict[int, list[str]] = {}
        for key, message in errors.items():
            base = key.split("[")[0]
            target = fields.get(base)
            if target is None:
                general.append(f"{key}: {message}" if key else message)
            else:
                shown.setdefault(id(target), []).append(message)
        for target in set(fields.values()):
            msgs = shown.get(id(target))
            target.set_error("; ".join(msgs) if msgs else None)
        self.general_error.setText("\n".join(general))
        self.general_error.setVisible(bool(general))
        if errors:
            self.estimate.setText("Fix the highlighted fields, then generate again.")

    @Slot(object)
    def load_params(self, params: Mapping[str, Any]) -> None:
        """Fill the form from a job's parameters ("use these settings again")."""
        model = str(params.get("model") or "")
        try:
            self.select_model(model)
        except Exception:
            self.studio.post(Notice("warning", "Unknown model", f"{model} is not in the manifest"))
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
        for key, zone in (("image", self.image), ("end_image", self.end_image)):
            path = params.get(key)
            zone.set_path(str(path) if path and Path(str(path)).is_file() else "")
        wanted = {
            str(lo["path"]): float(lo.get("strength", 1.0)) for lo in params.get("loras") or ()
        }
        for row in self.lora_rows:
            strength = wanted.get(str(row.lora.path))
            row.check.setChecked(strength is not None)
            if strength is not None:
                row.slider.setValue(round(strength * 100))
        self.studio.navigate.emit("generate")

    def sizeHint(self) -> QSize:
        return QSize(1100, 760)


def _area(resolution: str) -> int:
    w, h = parse_resolution(resolution)
    return w * h


__all__ = ["SEED_MAX", "GeneratePanel"]
