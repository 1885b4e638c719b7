"""The Generate panel's model picker: one tile per model with whether it is on disk, its size,
and the planner's verdict on whether and how it fits this machine at the form's settings."""

from __future__ import annotations

from collections.abc import Mapping

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QFont, QMouseEvent
from PySide6.QtWidgets import QFrame, QHBoxLayout, QVBoxLayout

from wan_desktop.engine.model_catalog import ModelRow
from wan_desktop.models import DownloadProgress, ModelSpec, ModelState

from . import format as fmt
from .fit import UNKNOWN, Fit
from .widgets import Badge, Card, Field, label, set_prop

TASK_TEXT = {"t2v": "Text → video", "i2v": "Image → video", "ti2v": "Text or image → video"}


class ModelTile(QFrame):
    """One model: name, what it does, whether it is here, how big, whether it fits."""

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
            word = "building" if row is not None and row.built_here else "downloading"
            self.status.set(f"{word}{pct}", "accent")
        elif row is None:
            self.status.set("checking…", "neutral")
        elif row.status.complete:
            dev = " · dev" if row.variant.development else ""
            self.status.set(f"ready · {fmt.size(row.size_bytes)}{dev}", "success")
        elif row.status.state is ModelState.partial:
            self.status.set(f"partial · {fmt.size(row.size_bytes)}", "warning")
        elif row.status.state is ModelState.corrupt:
            self.status.set("damaged: repair", "danger")
        else:
            word = "builds here" if row.built_here else "download"
            self.status.set(f"{word} · {fmt.size(row.size_bytes)}", "info")
        self.fit.set(fit.text, fit.kind)
        self.fit.setToolTip(fit.detail)

    def set_selected(self, on: bool) -> None:
        set_prop(self, "selected", on)

    def mousePressEvent(self, event: QMouseEvent) -> None:
        self.chosen.emit(self.spec.id)
        super().mousePressEvent(event)


class ModelPicker(Card):
    chosen = Signal(str)

    def __init__(self, specs: list[ModelSpec]) -> None:
        super().__init__("Model")
        self.tiles: dict[str, ModelTile] = {}
        self.fits: dict[str, Fit] = {}
        self.selected: str | None = None
        box = QVBoxLayout()
        box.setSpacing(8)
        for spec in specs:
            tile = ModelTile(spec)
            tile.chosen.connect(self.chosen)
            self.tiles[spec.id] = tile
            box.addWidget(tile)
        self.field = Field("", box)
        self.field.title.setVisible(False)
        self.body.addWidget(self.field)
        self.description = label("", "faint", wrap=True)
        self.body.addWidget(self.description)
        # What the selected model's verdict means on this machine, in a sentence or two.
        self.fit_detail = label("", "muted", wrap=True)
        self.body.addWidget(self.fit_detail)
        self.machine = label("", "faint", wrap=True)
        self.body.addWidget(self.machine)

    def select(self, spec: ModelSpec) -> None:
        self.selected = spec.id
        for mid, tile in self.tiles.items():
            tile.set_selected(mid == spec.id)
        self.description.setText(spec.description)
        self._show_detail()

    def update_tiles(
        self, rows: Mapping[str, ModelRow], downloads: Mapping[str, DownloadProgress]
    ) -> None:
        for model_id, tile in self.tiles.items():
            tile.set_row(
                rows.get(model_id), self.fits.get(model_id, UNKNOWN), downloads.get(model_id)
            )

    def set_fits(self, fits: Mapping[str, Fit], machine: str) -> None:
        self.fits = dict(fits)
        self.machine.setText(f"This computer: {machine}." if machine else "")
        self._show_detail()

    def _show_detail(self) -> None:
        fit = self.fits.get(self.selected or "")
        self.fit_detail.setText(fit.detail if fit is not None else "")
        self.fit_detail.setVisible(fit is not None and bool(fit.detail))
