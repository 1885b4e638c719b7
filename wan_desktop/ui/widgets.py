"""Small building blocks every panel uses: cards, badges, headers, empty states, field rows."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

from PySide6.QtCore import QEvent, QObject, QSize, Qt, Signal
from PySide6.QtGui import QMouseEvent, QResizeEvent
from PySide6.QtWidgets import (
    QAbstractSpinBox,
    QComboBox,
    QFrame,
    QHBoxLayout,
    QLabel,
    QLayout,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from . import icons, theme

SpinT = TypeVar("SpinT", bound=QAbstractSpinBox)


def label(
    text: str = "",
    role: str | None = None,
    *,
    wrap: bool = False,
    selectable: bool | None = None,
) -> QLabel:
    """A text label. Selectable with the mouse only where copying makes sense (errors by
    default; paths and prompts where asked): a selectable label takes the mouse's clicks, so on
    a clickable card it must not be."""
    lab = QLabel(text)
    if role:
        lab.setProperty("role", role)
    if wrap:
        lab.setWordWrap(True)
    if selectable if selectable is not None else role == "error":
        make_selectable(lab)
    return lab


def make_selectable(lab: QLabel) -> None:
    lab.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    lab.setCursor(Qt.CursorShape.IBeamCursor)


def set_prop(widget: QWidget, name: str, value: object) -> None:
    if widget.property(name) != value:
        widget.setProperty(name, value)
        theme.repolish(widget)


def button(
    text: str,
    icon: str | None = None,
    *,
    variant: str | None = None,
    large: bool = False,
    tooltip: str | None = None,
) -> QPushButton:
    b = QPushButton(text)
    if icon:
        color = "#ffffff" if variant == "primary" else None
        if variant == "danger":
            color = theme.P.danger
        b.setIcon(icons.icon(icon, color, color))
        b.setIconSize(QSize(16, 16))
    if variant:
        b.setProperty("variant", variant)
    if large:
        b.setProperty("size", "large")
    if tooltip:
        b.setToolTip(tooltip)
    b.setCursor(Qt.CursorShape.PointingHandCursor)
    b.setFocusPolicy(Qt.FocusPolicy.TabFocus)  # its focus ring shows where the keyboard is
    return b


def tool(icon: str, tooltip: str, *, color: str | None = None, size: int = 16) -> QToolButton:
    b = QToolButton()
    b.setIcon(icons.icon(icon, color))
    b.setIconSize(QSize(size, size))
    b.setToolTip(tooltip)
    b.setAccessibleName(tooltip)
    b.setCursor(Qt.CursorShape.PointingHandCursor)
    b.setAutoRaise(True)
    b.setFocusPolicy(Qt.FocusPolicy.TabFocus)
    return b


class ElidedLabel(QLabel):
    """One line of text that ends in … when the label is narrower than the text."""

    def __init__(self, text: str = "", role: str | None = None) -> None:
        super().__init__()
        self._full = text
        if role:
            self.setProperty("role", role)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.setMinimumWidth(40)
        self.set_full_text(text)

    def set_full_text(self, text: str) -> None:
        self._full = text
        self.setToolTip(text if len(text) > 40 else "")
        self._elide()

    def full_text(self) -> str:
        return self._full

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._elide()

    def _elide(self) -> None:
        line = self._full.replace("\n", " ")
        width = max(40, self.width())
        super().setText(self.fontMetrics().elidedText(line, Qt.TextElideMode.ElideRight, width))


class Badge(QLabel):
    def __init__(self, text: str = "", kind: str = "neutral") -> None:
        super().__init__(text)
        self.setObjectName("Badge")
        self.setProperty("kind", kind)
        self.setSizePolicy(QSizePolicy.Policy.Maximum, QSizePolicy.Policy.Fixed)
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)

    def set(self, text: str, kind: str) -> None:
        self.setText(text)
        set_prop(self, "kind", kind)
        self.setVisible(bool(text))


class Card(QFrame):
    """A rounded surface with padding; ``body`` is its vertical layout."""

    clicked = Signal()

    def __init__(
        self, title: str | None = None, *, margins: int = 18, spacing: int = 12, name: str = "Card"
    ) -> None:
        super().__init__()
        self.setObjectName(name)
        self.body = QVBoxLayout(self)
        self.body.setContentsMargins(margins, margins, margins, margins)
        self.body.setSpacing(spacing)
        self.header: QHBoxLayout | None = None
        if title:
            self.header = QHBoxLayout()
            self.header.setSpacing(8)
            self.header.addWidget(label(title.upper(), "section"))
            self.header.addStretch(1)
            self.body.addLayout(self.header)

    def mousePressEvent(self, event: QMouseEvent) -> None:
        if event.button() == Qt.MouseButton.LeftButton:
            self.clicked.emit()
        super().mousePressEvent(event)


class PageHeader(QWidget):
    def __init__(self, title: str, subtitle: str = "") -> None:
        super().__init__()
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(12)
        text = QVBoxLayout()
        text.setSpacing(2)
        text.addWidget(label(title, "title"))
        self.subtitle = label(subtitle, "subtitle", wrap=True)
        text.addWidget(self.subtitle)
        row.addLayout(text, 1)
        self.action_row = QHBoxLayout()
        self.action_row.setSpacing(8)
        row.addLayout(self.action_row)


class EmptyState(QWidget):
    """What an empty list shows instead of blank space: an icon, a sentence, an action."""

    def __init__(self, icon: str, title: str, text: str = "") -> None:
        super().__init__()
        col = QVBoxLayout(self)
        col.setContentsMargins(24, 36, 24, 36)
        col.setSpacing(10)
        col.addStretch(1)
        pic = QLabel()
        pic.setPixmap(icons.pixmap(icon, 40, theme.P.faint))
        pic.setAlignment(Qt.AlignmentFlag.AlignCenter)
        col.addWidget(pic)
        t = label(title, "h2", wrap=True)
        t.setAlignment(Qt.AlignmentFlag.AlignCenter)
        col.addWidget(t)
        self.text = label(text, "muted", wrap=True)
        self.text.setAlignment(Qt.AlignmentFlag.AlignCenter)
        col.addWidget(self.text)
        self.action_row = QHBoxLayout()
        self.action_row.addStretch(1)
        self.actions_end = QHBoxLayout()
        self.action_row.addLayout(self.actions_end)
        self.action_row.addStretch(1)
        col.addLayout(self.action_row)
        col.addStretch(1)

    def add_action(self, widget: QWidget) -> None:
        self.actions_end.addWidget(widget)


class Divider(QFrame):
    def __init__(self) -> None:
        super().__init__()
        self.setObjectName("Divider")
        self.setFrameShape(QFrame.Shape.HLine)


class Field(QWidget):
    """A labelled input with its error line underneath (shown by ``set_error``)."""

    def __init__(
        self,
        title: str,
        widget: QWidget | QLayout,
        *,
        hint: str = "",
        trailing: QWidget | None = None,
    ) -> None:
        super().__init__()
        col = QVBoxLayout(self)
        col.setContentsMargins(0, 0, 0, 0)
        col.setSpacing(5)
        head = QHBoxLayout()
        head.setSpacing(6)
        self.title = label(title, "muted")
        head.addWidget(self.title)
        head.addStretch(1)
        if trailing is not None:
            head.addWidget(trailing)
        col.addLayout(head)
        if isinstance(widget, QLayout):
            col.addLayout(widget)
            self.input: QWidget | None = None
        else:
            col.addWidget(widget)
            self.input = widget
        self.hint = label(hint, "faint", wrap=True)
        self.hint.setVisible(bool(hint))
        col.addWidget(self.hint)
        self.error = label("", "error", wrap=True)
        self.error.setVisible(False)
        col.addWidget(self.error)

    def set_error(self, message: str | None) -> None:
        self.error.setText(message or "")
        self.error.setVisible(bool(message))
        if self.input is not None:
            set_prop(self.input, "invalid", bool(message))


def route_errors(
    fields: Mapping[str, Field], errors: Mapping[str, str], *, base: bool = False
) -> list[str]:
    """Show each error under its field (``base``: ``loras[1]`` goes to ``loras``); clear the
    others. Returns the messages no field owns, as ``key: message``."""
    general = []
    shown: dict[int, list[str]] = {}
    for key, message in errors.items():
        target = fields.get(key.split("[")[0] if base else key)
        if target is None:
            general.append(f"{key}: {message}" if key else message)
        else:
            shown.setdefault(id(target), []).append(message)
    for target in set(fields.values()):
        msgs = shown.get(id(target))
        target.set_error("; ".join(msgs) if msgs else None)
    return general


def confirm(parent: QWidget, title: str, text: str, action: str) -> bool:
    """Ask before something that cannot be undone (deleting a video or a model)."""
    from PySide6.QtWidgets import QMessageBox

    box = QMessageBox(parent)
    box.setIcon(QMessageBox.Icon.Warning)
    box.setWindowTitle(title)
    box.setText(text)
    yes = box.addButton(action, QMessageBox.ButtonRole.DestructiveRole)
    box.addButton(QMessageBox.StandardButton.Cancel)
    box.exec()
    return box.clickedButton() is yes


def padded(box: SpinT) -> SpinT:
    """A spin box whose text lines up with the line edits' (its inner editor ignores padding),
    and which the mouse wheel changes only once it has the focus."""
    edit = box.lineEdit()
    if edit is not None:
        edit.setTextMargins(8, 0, 0, 0)
    wheel_only_when_focused(box)
    return box


class _WheelGuard(QObject):
    """The wheel over an unfocused field scrolls the page instead of changing the value."""

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if (
            event.type() == QEvent.Type.Wheel
            and isinstance(watched, QWidget)
            and not watched.hasFocus()
        ):
            event.ignore()  # handled here, not accepted: Qt passes it on to the parents
            return True
        return False


def wheel_only_when_focused(widget: QWidget) -> None:
    widget.setFocusPolicy(Qt.FocusPolicy.StrongFocus)  # the wheel does not give it the focus
    widget.installEventFilter(_WheelGuard(widget))


class _VerticalScroll(QScrollArea):
    """Scrolls up and down only, so it is never narrower than its content needs: a layout
    gives it that much width instead of cutting the content off at the right."""

    def minimumSizeHint(self) -> QSize:
        hint = super().minimumSizeHint()
        content = self.widget()
        if content is None:
            return hint
        bar = self.verticalScrollBar()
        # The bar's own margins (the stylesheet's) count too: its width once shown.
        extent = max(bar.sizeHint().width(), bar.width() if bar.isVisible() else 0)
        need = content.minimumSizeHint().width() + extent + 2 * self.frameWidth()
        return QSize(max(hint.width(), need), hint.height())

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if watched is self.widget() and event.type() == QEvent.Type.LayoutRequest:
            self.updateGeometry()  # the content's needs changed: so did ours
        return super().eventFilter(watched, event)


def narrow_combo(min_chars: int = 14) -> QComboBox:
    """A drop-down that can be narrower than its longest entry (shown elided; the list opens
    full width), so that a form fits a small window; the wheel changes it only when focused."""
    combo = QComboBox()
    combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
    combo.setMinimumContentsLength(min_chars)
    wheel_only_when_focused(combo)
    return combo


def scrolled(widget: QWidget) -> QScrollArea:
    """``widget`` (a card) in a vertical scroll area: when the window is too low for it, it
    scrolls instead of being squashed (its own look kept: scroll_page names its content)."""
    holder = QWidget()
    col = QVBoxLayout(holder)
    col.setContentsMargins(0, 0, 0, 0)
    col.addWidget(widget)
    return scroll_page(holder)


def scroll_page(content: QWidget) -> QScrollArea:
    area = _VerticalScroll()
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.Shape.NoFrame)
    area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    content.setObjectName("PageBody")
    area.setWidget(content)
    return area


def page_layout(widget: QWidget) -> QVBoxLayout:
    widget.setObjectName("Page")
    col = QVBoxLayout(widget)
    col.setContentsMargins(32, 26, 32, 24)
    col.setSpacing(18)
    return col


def clear_layout(layout: QLayout) -> None:
    while layout.count():
        item = layout.takeAt(0)
        if item is None:
            break
        w = item.widget()
        inner = item.layout()
        if w is not None:
            w.setParent(None)
            w.deleteLater()
        elif inner is not None:
            clear_layout(inner)
