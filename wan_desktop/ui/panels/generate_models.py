"""The Generate page's model side: the chosen model's defaults in the form, each model's fit
at the form's size, the picker's tiles, the first-run welcome (development mode or a download)
and the banner that says which variants run.

A mixin of GeneratePanel, which builds the widgets named below; kept apart so that the form's
own fields and its submit read on their own.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFrame,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
)

from wan_desktop.engine.hardware import ENV_PROFILE
from wan_desktop.engine.params import CONTRACT_RESOLUTIONS, round_size
from wan_desktop.models import ModelSpec
from wan_desktop.models.manifest import parse_resolution

from .. import format as fmt
from .. import icons, theme
from ..dropzone import DropZone
from ..fit import UNKNOWN, Fit
from ..model_picker import ModelPicker
from ..state import Studio
from ..widgets import Badge, Card, button, clear_layout, label, set_prop, tool


class ModelChoice:
    """Mixed into GeneratePanel, which provides the widgets below."""

    studio: Studio
    spec: ModelSpec | None
    fits: dict[str, Fit]
    _fit_token: int
    fit_timer: QTimer
    picker: ModelPicker
    mode_badge: Badge
    banner: QFrame
    banner_icon: QLabel
    banner_text: QLabel
    banner_btn: QPushButton
    welcome: Card
    welcome_models: QVBoxLayout
    resolution: QComboBox
    frames: QSpinBox
    steps: QSpinBox
    guidance: QDoubleSpinBox
    guidance_2: QDoubleSpinBox
    image: DropZone
    end_image: DropZone
    size_hint: QLabel

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

    def _update_tiles(self) -> None:
        rows = {r.spec.id: r for r in self.studio.usable_rows()}
        # Only a download of the variant a job would use shows on its tile.
        downloads = {
            model: p
            for (model, variant), p in self.studio.downloads.items()
            if model in rows and rows[model].variant.name == variant
        }
        self.picker.update_tiles(rows, downloads)

    def _check_fits(self) -> None:
        """Each model's verdict at the form's size, computed off the GUI thread (cached)."""
        engine, cache = self.studio.engine, self.studio.fits
        form = self._fit_params()
        specs = list(engine.models_view.manifest)
        self._fit_token += 1
        token = self._fit_token

        def check_all() -> tuple[dict[str, Fit], str]:
            fits = {}
            for spec in specs:
                params = dict(form)
                if not spec.accepts_image:
                    params.pop("image", None)
                fits[spec.id] = cache.check(spec.id, params)
            profile = engine.hardware
            simulated = f" (a simulated machine: {ENV_PROFILE})" if profile.simulated else ""
            return fits, profile.summary + simulated

        def done(result: tuple[dict[str, Fit], str]) -> None:
            if token != self._fit_token:
                return  # the form changed meanwhile: a newer check is on its way
            fits, machine = result
            changed = fits != self.fits
            self.fits = fits
            self.picker.set_fits(fits, machine)
            if changed:
                self._update_tiles()
                self._update_welcome()

        self.studio.background.run(check_all, on_done=done)

    def _fit_params(self) -> dict[str, Any]:
        """What of the form decides memory and time (the prompt does not)."""
        p: dict[str, Any] = {
            "resolution": self.resolution.currentText(),
            "frames": self.frames.value(),
            "steps": self.steps.value(),
            "guidance_scale": self.guidance.value(),
        }
        if self.image.path:
            p["image"] = self.image.path
        return p

    def _update_welcome(self) -> None:
        s = self.studio
        any_ready = any(r.status.complete for r in s.catalog)
        show = s.catalog_loaded and not any_ready and not s.dev_mode and not s.mock
        show = show and not s.settings.welcomed
        self.welcome.setVisible(show)
        if not show:
            return
        clear_layout(self.welcome_models)
        for spec in s.engine.models_view.manifest:
            row = s.row(spec.id, spec.default_variant)
            line = QHBoxLayout()
            line.setSpacing(8)
            line.addWidget(label(spec.model_type), 1)
            size = fmt.size(row.size_bytes if row else None)
            fit = self.fits.get(spec.id, UNKNOWN)
            line.addWidget(label(f"{size} download", "faint"))
            verdict = Badge(fit.text, fit.kind)
            verdict.setToolTip(fit.detail)
            line.addWidget(verdict)
            get = tool("download", f"Download {spec.model_type} ({size})")
            get.clicked.connect(lambda _c=False, m=spec.id: self._download(m))
            line.addWidget(get)
            self.welcome_models.addLayout(line)

    def _use_dev_mode(self) -> None:
        self.studio.set_dev_mode(True)
        self.welcome.setVisible(False)

    def _dismiss_welcome(self) -> None:
        self.studio.save_settings(dataclasses.replace(self.studio.settings, welcomed=True))
        self.welcome.setVisible(False)

    def _download(self, model_id: str) -> None:
        spec = self.studio.engine.models_view.manifest.get(model_id)
        self.studio.engine.ensure_model(model_id)
        self.studio.navigate.emit(f"models:{spec.id}:{spec.default_variant}")

    def _apply_defaults(self, spec: ModelSpec) -> None:
        """The defaults of the variant a job would run (the tiny one in development mode)."""
        d = spec.defaults_for(self.studio.engine.models_view.resolve(spec.id)[1].name)
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

    def _defaults_for_mode(self) -> None:
        if self.spec is not None:  # another variant runs now: its sizes and steps
            self._apply_defaults(self.spec)

    def _update_size_hint(self) -> None:
        if self.spec is None:
            return
        try:
            variant = self.studio.engine.models_view.resolve(self.spec.id)[1].name  # dev: tiny
            size = parse_resolution(self.resolution.currentText())
        except ValueError:
            return
        w, h = round_size(*size, self.spec, variant)
        fps = self.spec.defaults_for(variant).fps
        n = self.frames.value()
        self.size_hint.setText(
            f"Renders at {w}×{h}, {n} frames = {n / fps:.1f} s at {fps} fps. "
            "Frames must be 4k+1 (…, 77, 81, 85, …)."
        )


def _area(resolution: str) -> int:
    w, h = parse_resolution(resolution)
    return w * h
