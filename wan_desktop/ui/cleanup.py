"""Clean up the models folder: the orchestrator's GC, previewed (a dry run) before anything goes.

The limits start at the quota and max age from the orchestrator's settings; the preview lists
what would be removed and what stays, each with the orchestrator's reason (pinned, in use, least
recently used…). Nothing is removed until the user confirms that list.
"""

from __future__ import annotations

import math

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QHBoxLayout,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
)

from wan_desktop.engine.face import ModelsView
from wan_desktop.models.gc import GcReport

from . import format as fmt
from .quota import GIB
from .state import Notice, Studio
from .widgets import Field, label, padded


def preview(models: ModelsView, max_size: int | None) -> GcReport:
    return models.gc(max_size=max_size, dry_run=True)


def collect(models: ModelsView, max_size: int | None) -> GcReport:
    return models.gc(max_size=max_size)


class CleanupDialog(QDialog):
    def __init__(self, studio: Studio, parent: object = None) -> None:
        super().__init__(parent)  # type: ignore[arg-type]
        self.studio = studio
        self.report: GcReport | None = None
        self.setWindowTitle("Clean up models")
        self.setMinimumWidth(560)
        col = QVBoxLayout(self)
        col.setContentsMargins(20, 18, 20, 16)
        col.setSpacing(12)
        store = studio.engine.models_view
        col.addWidget(
            label(
                "Removes the least recently used models until the folder fits the limit, and "
                "models unused for longer than the maximum age. Pinned models and models in use "
                "always stay.",
                "muted",
                wrap=True,
            )
        )
        row = QHBoxLayout()
        self.limit = padded(QDoubleSpinBox())
        self.limit.setRange(0, 100_000)
        self.limit.setDecimals(1)
        self.limit.setSuffix(" GiB")
        self.limit.valueChanged.connect(lambda _v: self.run_preview())
        age = store.max_age_s
        hint = f"Max age: {fmt.duration(age)} (orchestrator settings)." if age else ""
        row.addWidget(Field("Keep the models folder under", self.limit, hint=hint), 1)
        col.addLayout(row)
        self.summary = label("Looking at the models folder…", wrap=True)
        col.addWidget(self.summary)
        self.items = QListWidget()
        self.items.setMinimumHeight(180)
        self.items.setSelectionMode(QListWidget.SelectionMode.NoSelection)
        col.addWidget(self.items, 1)
        buttons = QDialogButtonBox()
        self.remove_btn = QPushButton("Remove")
        self.remove_btn.setProperty("variant", "danger")
        self.remove_btn.setEnabled(False)
        buttons.addButton(self.remove_btn, QDialogButtonBox.ButtonRole.AcceptRole)
        buttons.addButton(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        self.remove_btn.clicked.connect(self.run_collect)
        col.addWidget(buttons)
        self._generation = 0
        # The limit starts at the quota, or with none at what the folder holds now: opening the
        # dialog selects nothing to remove until the user lowers it.
        quota = store.quota_bytes
        if quota is not None:
            self.start_at(quota)
        elif studio.disk is not None:
            self.start_at(studio.disk.total_bytes)
        else:
            self.limit.setEnabled(False)
            studio.background.run(
                store.disk_usage,
                on_done=lambda d: self.start_at(d.total_bytes),
                on_error=self._fail,
            )

    def start_at(self, limit_bytes: int) -> None:
        """Show ``limit_bytes`` rounded up to what the field shows (a 0.4 MiB folder is 0.1 GiB,
        never "0.0 GiB", which would select everything), then preview."""
        step = 10 ** self.limit.decimals()
        self.limit.blockSignals(True)
        self.limit.setValue(math.ceil(limit_bytes / GIB * step) / step)
        self.limit.blockSignals(False)
        self.limit.setEnabled(True)
        self.run_preview()

    def max_size(self) -> int:
        return round(self.limit.value() * GIB)

    def run_preview(self) -> None:
        self._generation += 1
        generation = self._generation
        self.remove_btn.setEnabled(False)

        def done(report: GcReport) -> None:
            if generation == self._generation:
                self.show_report(report)

        self.studio.background.run(
            preview,
            self.studio.engine.models_view,
            self.max_size(),
            on_done=done,
            on_error=self._fail,
        )

    def show_report(self, report: GcReport) -> None:
        self.report = report
        self.items.clear()
        for d in report.removed:
            self._item(f"remove  {d.model_id} ({d.variant or '?'})", d.bytes, d.reason, True)
        for d in report.kept:
            self._item(f"keep  {d.model_id} ({d.variant or '?'})", d.bytes, d.reason, False)
        n = len(report.removed)
        if n:
            self.summary.setText(
                f"{n} model{'s' if n != 1 else ''} would be removed, freeing "
                f"{fmt.size(report.reclaimed_bytes)} ({fmt.size(report.total_before)} → "
                f"{fmt.size(report.total_after)})."
            )
        else:
            self.summary.setText(
                f"Nothing to remove: the folder ({fmt.size(report.total_before)}) is within the "
                "limits, or what is over them is pinned or in use."
            )
        self.remove_btn.setText(f"Remove {n} model{'s' if n != 1 else ''}" if n else "Remove")
        self.remove_btn.setEnabled(bool(n))

    def _item(self, title: str, size: int, reason: str, removed: bool) -> None:
        item = QListWidgetItem(f"{title}  ·  {fmt.size(size)}\n    {reason}")
        if not removed:
            item.setForeground(Qt.GlobalColor.gray)
        self.items.addItem(item)

    def run_collect(self) -> None:
        self.remove_btn.setEnabled(False)
        self.limit.setEnabled(False)
        self.summary.setText("Removing…")
        self.studio.background.run(
            collect,
            self.studio.engine.models_view,
            self.max_size(),
            on_done=self._collected,
            on_error=self._fail,
        )

    def _collected(self, report: GcReport) -> None:
        self.report = report
        names = ", ".join(d.model_id for d in report.removed) or "nothing"
        self.studio.post(
            Notice(
                "success", "Models cleaned up", f"{fmt.size(report.reclaimed_bytes)} freed: {names}"
            )
        )
        self.studio.models_changed.emit()
        self.accept()

    def _fail(self, exc: BaseException) -> None:
        self.summary.setText(f"Could not clean up: {exc}")
        self.limit.setEnabled(True)
