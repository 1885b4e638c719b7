"""Notifications: cards stacked at the bottom of the sidebar, and the system tray when any.

They never cover a control: the sidebar's lower part holds none (the Generate button and the
job cards' buttons are on the right), and the stack stops below the navigation. Successes fade
after a few seconds; failures stay until closed and list what to do next.
"""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import QEvent, QObject, QPoint, Qt, QTimer, Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from . import icons, theme
from .state import Notice
from .widgets import label, set_prop, tool

ICON = {"success": "check", "error": "alert", "warning": "alert", "info": "info"}
COLOR = {"success": "success", "error": "danger", "warning": "warning", "info": "info"}
TIMEOUT_MS = 6000
MAX_TOASTS = 4
MARGIN = 8  # from the sidebar's edges
GAP = 8


class Toast(QFrame):
    closed = Signal(object)
    overlay = True  # floats over the window (over the sidebar's empty lower part)

    def __init__(self, notice: Notice, parent: QWidget) -> None:
        super().__init__(parent)
        self.notice = notice
        self._gone = False
        self.setObjectName("Toast")
        set_prop(self, "kind", notice.kind if notice.kind in ("success", "error") else "info")
        col = QVBoxLayout(self)
        col.setContentsMargins(10, 8, 6, 10)
        col.setSpacing(3)
        head = QHBoxLayout()
        head.setSpacing(6)
        pic = QLabel()
        pic.setPixmap(
            icons.pixmap(
                ICON.get(notice.kind, "info"), 16, getattr(theme.P, COLOR.get(notice.kind, "info"))
            )
        )
        head.addWidget(pic, 0, Qt.AlignmentFlag.AlignTop)
        title = label(notice.title, "h2", wrap=True)
        head.addWidget(title, 1)
        close = tool("close", "Dismiss")
        close.clicked.connect(self.dismiss)
        head.addWidget(close, 0, Qt.AlignmentFlag.AlignTop)
        col.addLayout(head)
        if notice.message:
            message = label(notice.message, "muted", wrap=True, selectable=notice.kind == "error")
            col.addWidget(message)
        for tip in notice.suggestions:
            col.addWidget(label(f"•  {tip}", "faint", wrap=True))
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
    """Stacks toasts (children of the window) at the bottom of ``area`` (the sidebar), below
    the widgets of ``clear_of`` (its navigation): the oldest go when there is no more room."""

    def __init__(self, window: QWidget, area: QWidget, clear_of: Sequence[QWidget] = ()) -> None:
        super().__init__(window)
        self.toasts: list[Toast] = []
        self.history: list[Notice] = []
        self._window = window
        self._area = area
        self._clear_of = list(clear_of)
        window.installEventFilter(self)
        area.installEventFilter(self)

    def show_notice(self, notice: Notice) -> Toast:
        self.history.append(notice)
        toast = Toast(notice, self._window)
        toast.closed.connect(self._on_closed)
        self.toasts.append(toast)
        while len(self.toasts) > MAX_TOASTS:
            self._oldest().dismiss()
        toast.show()
        self.relayout()
        return toast

    def _on_closed(self, toast: Toast) -> None:
        self.toasts = [t for t in self.toasts if t is not toast]
        self.relayout()

    def relayout(self) -> None:
        area = self._area
        origin = area.mapTo(self._window, QPoint(0, 0))
        width = area.width() - 2 * MARGIN
        top = origin.y() + MARGIN
        for widget in self._clear_of:
            if widget.isVisible():
                bottom = widget.mapTo(self._window, QPoint(0, widget.height())).y()
                top = max(top, bottom + GAP)
        while True:
            heights = [self._height(t, width) for t in self.toasts]
            room = origin.y() + area.height() - MARGIN - top
            if len(self.toasts) <= 1 or sum(heights) + GAP * (len(heights) - 1) <= room:
                break
            self._oldest().dismiss()  # lays out again, with one fewer
            return
        y = origin.y() + area.height() - MARGIN
        for toast, h in zip(reversed(self.toasts), reversed(heights), strict=True):
            y -= h
            toast.setGeometry(origin.x() + MARGIN, y, width, h)
            toast.raise_()
            y -= GAP

    def _oldest(self) -> Toast:
        """The one to make room: the oldest that would fade anyway, else the oldest."""
        return next((t for t in self.toasts if not t.notice.sticky), self.toasts[0])

    @staticmethod
    def _height(toast: Toast, width: int) -> int:
        h = toast.heightForWidth(width) if toast.hasHeightForWidth() else -1
        return max(h, toast.minimumSizeHint().height())

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:
        if obj in (self._window, self._area) and event.type() in (
            QEvent.Type.Resize,
            QEvent.Type.Move,
        ):
            self.relayout()
        return False
