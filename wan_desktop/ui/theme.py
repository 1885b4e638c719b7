"""The look: one dark palette, one type scale, one stylesheet. Every colour the app uses is here."""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtGui import QColor, QFont, QFontDatabase, QPalette
from PySide6.QtWidgets import QApplication


@dataclass(frozen=True)
class Palette:
    window: str = "#0f1117"
    sidebar: str = "#0b0d12"
    surface: str = "#161922"
    surface_alt: str = "#1c2030"
    input: str = "#11141c"
    border: str = "#262b3a"
    border_strong: str = "#343a4d"
    text: str = "#e7e9f0"
    muted: str = "#98a0b3"
    faint: str = "#5f677a"
    accent: str = "#7c6cff"
    accent_hover: str = "#8f81ff"
    accent_soft: str = "#272250"
    focus: str = "#c4bbff"  # the keyboard focus ring: visible on every surface and on accent
    success: str = "#3ecf8e"
    warning: str = "#f5b84a"
    danger: str = "#f0616d"
    info: str = "#5aa9ff"
    dev: str = "#e58cff"  # development variants and mock jobs


P = Palette()

UI_FONTS = ("Inter", "Segoe UI", "SF Pro Text", "Cantarell", "DejaVu Sans")
MONO_FONTS = ("JetBrains Mono", "DejaVu Sans Mono", "Menlo", "Consolas")
BASE_PT = 10


def color(name: str) -> QColor:
    return QColor(getattr(P, name))


def _first_family(candidates: tuple[str, ...]) -> str | None:
    families = set(QFontDatabase.families())
    return next((f for f in candidates if f in families), None)


def ui_font(point_size: float = BASE_PT, weight: QFont.Weight = QFont.Weight.Normal) -> QFont:
    font = QFont(_first_family(UI_FONTS) or QApplication.font().family())
    font.setPointSizeF(point_size)
    font.setWeight(weight)
    return font


def stylesheet() -> str:
    from .resources import resource_path

    p = P
    check = resource_path("check.svg").as_posix()
    return f"""
* {{ outline: none; }}
QWidget {{ color: {p.text}; font-size: {BASE_PT}pt; }}
QMainWindow, QWidget#Page, QScrollArea, QScrollArea > QWidget > QWidget#PageBody,
QStackedWidget {{ background: {p.window}; }}
QWidget#Sidebar {{ background: {p.sidebar}; border-right: 1px solid {p.border}; }}
QLabel#Brand {{ font-size: 13pt; font-weight: 700; }}
QLabel#BrandSub {{ color: {p.faint}; font-size: 8pt; }}
QToolButton#NavButton {{
    background: transparent; border: none; border-radius: 8px; padding: 9px 12px;
    color: {p.muted}; text-align: left; font-weight: 500;
}}
QToolButton#NavButton:hover {{ background: {p.surface}; color: {p.text}; }}
QToolButton#NavButton:checked {{ background: {p.accent_soft}; color: {p.text}; }}
QLabel[role="title"] {{ font-size: 17pt; font-weight: 700; }}
QLabel[role="subtitle"] {{ color: {p.muted}; }}
QLabel[role="h2"] {{ font-size: 11pt; font-weight: 600; }}
QLabel[role="section"] {{ color: {p.faint}; font-size: 8pt; font-weight: 700;
    letter-spacing: 1px; }}
QLabel[role="muted"] {{ color: {p.muted}; }}
QLabel[role="faint"] {{ color: {p.faint}; font-size: 9pt; }}
QLabel[role="error"] {{ color: {p.danger}; font-size: 9pt; }}
QLabel[role="big"] {{ font-size: 20pt; font-weight: 700; }}
QLabel[role="counter"] {{ color: {p.faint}; font-size: 8pt; }}
QLabel[role="counter"][over="true"] {{ color: {p.danger}; }}
QFrame#Card {{ background: {p.surface}; border: 1px solid {p.border}; border-radius: 12px; }}
QFrame#Card[selected="true"] {{ border: 1px solid {p.accent}; background: {p.surface_alt}; }}
QFrame#Card[state="failed"] {{ border: 1px solid #5a2a33; }}
QFrame#Tile {{ background: {p.input}; border: 1px solid {p.border}; border-radius: 10px; }}
QFrame#Tile:hover {{ border-color: {p.border_strong}; }}
QFrame#Tile[selected="true"] {{ border: 1px solid {p.accent}; background: {p.accent_soft}; }}
QFrame#Banner {{ background: {p.accent_soft}; border: 1px solid {p.accent}; border-radius: 10px; }}
QFrame#Banner[kind="error"] {{ background: #2a1519; border-color: {p.danger}; }}
QFrame#Banner[kind="dev"] {{ background: #2a1832; border-color: {p.dev}; }}
QFrame#Banner[kind="warning"] {{ background: #2b2210; border-color: {p.warning}; }}
QFrame#Toast {{ background: {p.surface_alt}; border: 1px solid {p.border_strong};
    border-radius: 12px; }}
QFrame#Toast[kind="success"] {{ border-left: 4px solid {p.success}; }}
QFrame#Toast[kind="error"] {{ border-left: 4px solid {p.danger}; }}
QFrame#Toast[kind="info"] {{ border-left: 4px solid {p.info}; }}
QFrame#DropZone {{ background: {p.input}; border: 1px dashed {p.border_strong};
    border-radius: 10px; }}
QFrame#DropZone[hover="true"] {{ border-color: {p.accent}; background: {p.accent_soft}; }}
QFrame#Divider {{ background: {p.border}; max-height: 1px; min-height: 1px; border: none; }}
QLabel#Badge {{ border-radius: 9px; padding: 2px 8px; font-size: 8pt; font-weight: 600;
    background: {p.surface_alt}; color: {p.muted}; }}
QLabel#Badge[kind="success"] {{ background: #133528; color: {p.success}; }}
QLabel#Badge[kind="warning"] {{ background: #3a2d10; color: {p.warning}; }}
QLabel#Badge[kind="danger"] {{ background: #3a161c; color: {p.danger}; }}
QLabel#Badge[kind="info"] {{ background: #142a44; color: {p.info}; }}
QLabel#Badge[kind="accent"] {{ background: {p.accent_soft}; color: #c4bcff; }}
QLabel#Badge[kind="dev"] {{ background: #35173f; color: {p.dev}; }}
QLineEdit, QPlainTextEdit, QTextEdit, QSpinBox, QDoubleSpinBox, QComboBox {{
    background: {p.input}; border: 1px solid {p.border}; border-radius: 8px;
    padding: 6px 9px; selection-background-color: {p.accent};
}}
QLineEdit, QComboBox {{ min-height: 22px; }}
QSpinBox, QDoubleSpinBox {{ min-height: 22px; max-height: 22px; }}
QLineEdit:focus, QPlainTextEdit:focus, QSpinBox:focus, QDoubleSpinBox:focus,
QComboBox:focus {{ border-color: {p.accent}; }}
QLineEdit[invalid="true"], QPlainTextEdit[invalid="true"], QSpinBox[invalid="true"],
QDoubleSpinBox[invalid="true"], QComboBox[invalid="true"] {{ border-color: {p.danger}; }}
QLineEdit:disabled, QSpinBox:disabled, QComboBox:disabled {{ color: {p.faint}; }}
QSpinBox::up-button, QSpinBox::down-button, QDoubleSpinBox::up-button,
QDoubleSpinBox::down-button {{ width: 0; border: none; }}
QComboBox::drop-down {{ border: none; width: 22px; }}
QComboBox QAbstractItemView {{ background: {p.surface_alt}; border: 1px solid {p.border_strong};
    selection-background-color: {p.accent_soft}; padding: 4px; }}
QPushButton {{ background: {p.surface_alt}; border: 1px solid {p.border_strong};
    border-radius: 8px; padding: 7px 14px; font-weight: 500; }}
QPushButton:hover {{ border-color: {p.muted}; }}
QPushButton:pressed {{ background: {p.input}; }}
QPushButton:disabled {{ color: {p.faint}; border-color: {p.border}; }}
QPushButton[variant="primary"] {{ background: {p.accent}; border: 1px solid {p.accent};
    color: white; font-weight: 600; }}
QPushButton[variant="primary"]:hover {{ background: {p.accent_hover}; }}
QPushButton[variant="primary"]:disabled {{ background: {p.accent_soft}; color: {p.muted};
    border-color: {p.accent_soft}; }}
QPushButton[variant="danger"] {{ color: {p.danger}; }}
QPushButton[variant="ghost"], QToolButton[variant="ghost"] {{ background: transparent;
    border: 1px solid transparent; padding: 5px 8px; }}
QPushButton[variant="ghost"]:hover, QToolButton[variant="ghost"]:hover {{
    background: {p.surface_alt}; border-color: {p.border}; }}
QPushButton[size="large"] {{ padding: 11px 22px; font-size: 11pt; }}
QToolButton {{ background: transparent; border: 1px solid transparent; border-radius: 6px;
    padding: 4px; }}
QToolButton:hover {{ background: {p.surface_alt}; border-color: {p.border}; }}
QCheckBox {{ spacing: 8px; }}
QCheckBox::indicator {{ width: 16px; height: 16px; border-radius: 4px;
    border: 1px solid {p.border_strong}; background: {p.input}; }}
QCheckBox::indicator:checked {{ background: {p.accent}; border-color: {p.accent};
    image: url({check}); }}
QProgressBar {{ background: {p.input}; border: none; border-radius: 4px; max-height: 8px;
    min-height: 8px; text-align: center; color: transparent; }}
QProgressBar::chunk {{ background: {p.accent}; border-radius: 4px; }}
QProgressBar[kind="success"]::chunk {{ background: {p.success}; }}
QProgressBar[kind="warning"]::chunk {{ background: {p.warning}; }}
QProgressBar[kind="danger"]::chunk {{ background: {p.danger}; }}
QSlider::groove:horizontal {{ height: 4px; background: {p.border_strong}; border-radius: 2px; }}
QSlider::sub-page:horizontal {{ background: {p.accent}; border-radius: 2px; }}
QSlider::handle:horizontal {{ background: white; width: 14px; height: 14px; margin: -5px 0;
    border-radius: 7px; }}
QScrollBar:vertical {{ background: transparent; width: 10px; margin: 2px; }}
QScrollBar::handle:vertical {{ background: {p.border_strong}; border-radius: 3px;
    min-height: 30px; }}
QScrollBar::add-line, QScrollBar::sub-line {{ height: 0; width: 0; }}
QScrollBar::add-page, QScrollBar::sub-page {{ background: transparent; }}
QScrollBar:horizontal {{ background: transparent; height: 10px; margin: 2px; }}
QScrollBar::handle:horizontal {{ background: {p.border_strong}; border-radius: 3px;
    min-width: 30px; }}
QListWidget {{ background: transparent; border: none; }}
QListWidget::item {{ border: none; padding: 0; }}
QListWidget::item:selected {{ background: transparent; }}
QListWidget#Gallery::item {{ border-radius: 10px; padding: 6px; color: {p.muted}; }}
QListWidget#Gallery::item:selected {{ background: {p.accent_soft}; color: {p.text}; }}
QListWidget#Gallery::item:hover {{ background: {p.surface}; }}
QToolTip {{ background: {p.surface_alt}; color: {p.text}; border: 1px solid {p.border_strong};
    padding: 5px; border-radius: 6px; }}
QStatusBar {{ background: {p.sidebar}; color: {p.muted}; border-top: 1px solid {p.border}; }}
QStatusBar QLabel {{ color: {p.muted}; font-size: 9pt; padding: 0 8px; }}
QMenu {{ background: {p.surface_alt}; border: 1px solid {p.border_strong}; padding: 4px; }}
QMenu::item {{ padding: 6px 18px; border-radius: 6px; }}
QMenu::item:selected {{ background: {p.accent_soft}; }}
/* Focus rings, last so they win: buttons take the focus from the keyboard only (Tab), so a
   ring shows where the keyboard is, never where the mouse clicked. */
QPushButton:focus, QToolButton:focus, QPushButton[variant="ghost"]:focus,
QToolButton[variant="ghost"]:focus {{ border: 1px solid {p.focus}; }}
QPushButton[variant="primary"]:focus {{ border: 1px solid {p.focus}; }}
QToolButton#NavButton:focus {{ border: 1px solid {p.focus}; padding: 8px 11px; }}
QCheckBox::indicator:focus {{ border: 1px solid {p.focus}; }}
"""


def apply(app: QApplication) -> None:
    """Fusion style (the same on every platform), the palette and the stylesheet."""
    app.setStyle("Fusion")
    pal = QPalette()
    for role, name in (
        (QPalette.ColorRole.Window, "window"),
        (QPalette.ColorRole.Base, "input"),
        (QPalette.ColorRole.AlternateBase, "surface"),
        (QPalette.ColorRole.Button, "surface_alt"),
        (QPalette.ColorRole.Text, "text"),
        (QPalette.ColorRole.WindowText, "text"),
        (QPalette.ColorRole.ButtonText, "text"),
        (QPalette.ColorRole.Highlight, "accent"),
        (QPalette.ColorRole.ToolTipBase, "surface_alt"),
        (QPalette.ColorRole.ToolTipText, "text"),
        (QPalette.ColorRole.PlaceholderText, "faint"),
        (QPalette.ColorRole.Link, "info"),
    ):
        pal.setColor(role, color(name))
    pal.setColor(QPalette.ColorRole.HighlightedText, QColor("white"))
    app.setPalette(pal)
    app.setFont(ui_font())
    app.setStyleSheet(stylesheet())


def repolish(widget: object) -> None:
    """Re-apply the stylesheet after a dynamic property changed."""
    from PySide6.QtWidgets import QWidget

    if isinstance(widget, QWidget):
        style = widget.style()
        style.unpolish(widget)
        style.polish(widget)
        widget.update()
