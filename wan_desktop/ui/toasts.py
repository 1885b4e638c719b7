"""Notifications: cards that slide in at the window's bottom-right, and the system tray when any.

Successes fade after a few seconds; failures stay until closed and list what to do next.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, Qt, QTimer, Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from . import icons, theme
from .state import Notice
from .widgets import label, set_prop, tool

ICON = {"success": "check", "error": "alert", "warning": "alert", "info": "info"}
COLOR = {"success": "success", "error": "danger", "warning": "warning", "info": "info"}
TIMEOUT_MS = 6000
MAX_TOASTS = 4
WIDTH = 380


class Toast(QFrame):
    closed = Signal(object)

    def __init__(self, notice: Notice, parent: QWidget) -> None:
        super().__init__(parent)
        self.notice = notice
        self._gone = False
        self.setObjectName("Toast")
        set_prop(self, "kind", notice.kind if notice.kind in ("success", "error") else "info")
        self.setFixedWidth(WIDTH)
        row = QHBoxLayout(self)
        row.setContentsMargins(14, 12, 10, 12)
        row.setSpacing(10)
        pic = QLabel()
        pic.setPixmap(
            icons.pixmap(
                ICON.get(notice.kind, "info"), 18, getattr(theme.P, COLOR.get(notice.kind, "info"))
            )
        )
        row.addWidget(pic, 0, Qt.AlignmentFlag.AlignTop)
        col = QVBoxLayout()
        col.setSpacing(3)
        title = label(notice.title, "h2")
        col.addWidget(title)
        if notice.message:
            message = label(notice.message, "muted", wrap=True, selectable=notice.kind == "error")
            col.addWidget(message)
        for tip in notice.suggestions:
            col.addWidget(label(f"•  {tip}", "faint", wrap=True))
        row.addLayout(col, 1)
        close = tool("close", "Dismiss")
        close.clicked.connect(self.dismiss)
        row.addWidget(close, 0, Qt.AlignmentFlag.AlignTop)
        if not notice.sticky:
            QTimer.singleShot(TIMEOUT_MS, self.dismiss)

    def dismiss(self) -> None:
        if self._gone:
            return
        self._gone = True
        self.hide()
        self.closed.emit(self)
        self.deleteLater()


class ToastHost(QObject):
    """Stacks toasts (children of the window) at its bottom-right and keeps them there."""

    def __init__(self, window: QWidget) -> None:
        super().__init__(window)
        self.toasts: list[Toast] = []
        self.history: list[Notice] = []
        self._window = window
        window.installEventFilter(self)

    def show_notice(self, notice: Notice) -> Toast:
        self.history.append(notice)
        toast = Toast(notice, self._window)
        toast.closed.connect(self._on_closed)
        self.toasts.append(toast)
        while len(self.toasts) > MAX_TOASTS:
            self.toasts[0].dismiss()
        toast.show()
        self.relayout()
        return toast

    def _on_closed(self, toast: Toast) -> None:
        self.toasts = [t for t in self.toasts if t is not toast]
        self.relayout()

    def relayout(self) -> None:
        w = self._window
        margin, gap, bottom = 20, 10, 44
        y = w.height() - bottom
        for toast in reversed(self.toasts):
            h = toast.heightForWidth(WIDTH) if toast.hasHeightForWidth() else -1
            h = max(h, toast.sizeHint().height())
            y -= h
            toast.setGeometry(w.width() - WIDTH - margin, y, WIDTH, h)
            toast.raise_()
            y -= gap

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:
        if obj is self._window and event.type() == QEvent.Type.Resize:
            self.relayout()
        return False
