"""The main window: a sidebar of pages, the pages, a status bar and notifications."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping

from PySide6.QtCore import QSize, Qt, QTimer, Signal, Slot
from PySide6.QtGui import QCloseEvent, QKeySequence, QPaintEvent, QShortcut
from PySide6.QtWidgets import (
    QButtonGroup,
    QDialog,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QStackedWidget,
    QSystemTrayIcon,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from wan_desktop import __version__
from wan_desktop.engine import JobKind, MemorySample

from . import icons, theme, widgets
from .api_control import ApiController
from .state import Notice, Studio
from .toasts import ToastHost
from .widgets import Badge, label

PAGES = (
    ("generate", "Generate", "generate"),
    ("explain", "Explainer", "explain"),
    ("queue", "Queue", "queue"),
    ("models", "Models", "models"),
    ("gallery", "Gallery", "gallery"),
    ("system", "System", "system"),
    ("settings", "Settings", "settings"),
)
PAGE_NAMES = tuple(name for name, _title, _icon in PAGES)
# Every keyboard shortcut, as F1 lists them (the pages' Ctrl+1… are added in front).
SHORTCUTS = (
    ("Ctrl+Enter", "Generate (on the Generate page) or make the explainer video"),
    ("Tab / Shift+Tab", "Next / previous field (also out of the prompt)"),
    ("Space", "Press the focused button"),
    ("Esc", "Close the newest notification, or leave the field being edited"),
    ("F1", "This list"),
    ("Ctrl+Q", "Quit (asks first while a video is being generated)"),
)


def make_page(name: str, studio: Studio, api: ApiController) -> QWidget:
    """Build one page (its module is imported here: pages cost nothing until first needed)."""
    if name == "generate":
        from .panels.generate import GeneratePanel

        return GeneratePanel(studio)
    if name == "explain":
        from .panels.explainer import ExplainerPanel

        return ExplainerPanel(studio)
    if name == "queue":
        from .panels.queue import QueuePanel

        return QueuePanel(studio)
    if name == "models":
        from .panels.models import ModelsPanel

        return ModelsPanel(studio)
    if name == "gallery":
        from .panels.gallery import GalleryPanel

        return GalleryPanel(studio)
    if name == "system":
        from .panels.system import SystemPanel

        return SystemPanel(studio)
    if name == "settings":
        from .panels.settings import SettingsPanel

        return SettingsPanel(studio, api)
    raise KeyError(name)


class Pages(Mapping[str, QWidget]):
    """The window's pages by name, each built the first time it is needed."""

    def __init__(self, window: MainWindow) -> None:
        self._window = window
        self._built: dict[str, QWidget] = {}

    def __getitem__(self, name: str) -> QWidget:
        page = self._built.get(name)
        if page is None:
            if name not in PAGE_NAMES:
                raise KeyError(name)
            page = make_page(name, self._window.studio, self._window.api)
            self._built[name] = page
            self._window.stack.addWidget(page)
        return page

    def __contains__(self, name: object) -> bool:
        return name in PAGE_NAMES  # without building the page (Mapping's default would)

    def __iter__(self) -> Iterator[str]:
        return iter(PAGE_NAMES)

    def __len__(self) -> int:
        return len(PAGE_NAMES)

    def built(self) -> dict[str, QWidget]:
        return dict(self._built)

    def next_unbuilt(self) -> str | None:
        return next((n for n in PAGE_NAMES if n not in self._built), None)


class MainWindow(QMainWindow):
    first_painted = Signal()

    def __init__(self, studio: Studio, api: ApiController) -> None:
        super().__init__()
        self.studio = studio
        self.api = api
        self._painted = False
        self.confirm_quit = False  # the app turns it on; tests and the self-test close freely
        self.setWindowTitle("Wan Desktop")
        self.setWindowIcon(icons.app_icon())
        self.resize(1360, 860)
        self.setMinimumSize(QSize(1024, 680))

        root = QWidget()
        row = QHBoxLayout(root)
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(0)
        self.sidebar = self._sidebar()
        row.addWidget(self.sidebar)
        self.stack = QStackedWidget()
        row.addWidget(self.stack, 1)
        self.setCentralWidget(root)

        self.pages = Pages(self)

        bar = self.statusBar()
        bar.setSizeGripEnabled(False)
        self.queue_status = QLabel()
        self.memory_status = QLabel()
        self.api_status = QLabel()
        self.engine_status = Badge()
        bar.addWidget(self.queue_status)
        bar.addPermanentWidget(self.memory_status)
        bar.addPermanentWidget(self.engine_status)
        bar.addPermanentWidget(self.api_status)

        self.toasts = ToastHost(self, self.sidebar, list(self.nav_buttons.values()))
        self._tray: QSystemTrayIcon | None = None
        studio.notice.connect(self._on_notice)
        studio.navigate.connect(self.show_page)
        studio.jobs_changed.connect(self._update_status)
        studio.job_updated.connect(lambda _j: self._update_status())
        studio.paused_changed.connect(lambda _p: self._update_status())
        studio.memory_changed.connect(self._on_memory)
        studio.dev_mode_changed.connect(lambda _on: self._update_mode())
        studio.link_changed.connect(lambda _e: self._update_engine_status())
        self._update_engine_status()
        api.state_changed.connect(self.api_status.setText)
        self.api_status.setText(api.describe())
        self.shortcuts: dict[str, QShortcut] = {}
        for i, (name, title, _icon) in enumerate(PAGES):
            keys = f"Ctrl+{i + 1}"
            self._shortcut(keys, functools.partial(self.show_page, name))
            self.nav_buttons[name].setToolTip(f"{title}  ({keys})")
        self._shortcut("Ctrl+Q", self.close)
        self._shortcut("F1", self.show_shortcuts)
        self._shortcut("Esc", self.escape)
        self.shortcuts_dialog: QDialog | None = None
        self._update_status()
        self._update_mode()
        if studio.memory is not None:
            self._on_memory(studio.memory)
        self.show_page("generate")
        # After the first paint, build the other pages one per loop turn (the loop stays
        # responsive; a page the user opens first is built at once). The timer is the
        # window's child, so it dies with it.
        self._page_timer = QTimer(self)
        self._page_timer.setInterval(30)
        self._page_timer.timeout.connect(self._build_next_page)
        self.first_painted.connect(self._page_timer.start)

    def _shortcut(self, keys: str, action: Callable[[], object]) -> None:
        shortcut = QShortcut(QKeySequence(keys), self)
        shortcut.activated.connect(action)
        self.shortcuts[keys] = shortcut

    def shortcut_list(self) -> list[tuple[str, str]]:
        pages = [(f"Ctrl+{i + 1}", f"Go to {title}") for i, (_n, title, _i) in enumerate(PAGES)]
        return [*pages, *SHORTCUTS]

    @Slot()
    def show_shortcuts(self) -> None:
        """F1: the keyboard shortcuts, in a window that stays open beside the app."""
        if self.shortcuts_dialog is None:
            dialog = QDialog(self)
            dialog.setWindowTitle("Keyboard shortcuts")
            grid = QGridLayout(dialog)
            grid.setContentsMargins(20, 18, 20, 18)
            grid.setHorizontalSpacing(18)
            for row, (keys, what) in enumerate(self.shortcut_list()):
                grid.addWidget(label(keys, "h2"), row, 0)
                grid.addWidget(label(what, "muted"), row, 1)
            self.shortcuts_dialog = dialog
        self.shortcuts_dialog.show()
        self.shortcuts_dialog.raise_()

    @Slot()
    def escape(self) -> None:
        """Esc: close the newest notification; with none, leave the field being edited."""
        if self.toasts.toasts:
            self.toasts.toasts[-1].dismiss()
            return
        focused = self.focusWidget()
        if focused is not None:
            focused.clearFocus()

    def _build_next_page(self) -> None:
        name = self.pages.next_unbuilt()
        if name is None:
            self._page_timer.stop()
        else:
            self.pages[name]

    def _sidebar(self) -> QWidget:
        side = QWidget()
        side.setObjectName("Sidebar")
        side.setFixedWidth(212)
        col = QVBoxLayout(side)
        col.setContentsMargins(14, 18, 14, 14)
        col.setSpacing(4)
        brand = QHBoxLayout()
        brand.setSpacing(10)
        logo = QLabel()
        logo.setPixmap(icons.app_icon().pixmap(QSize(34, 34)))
        brand.addWidget(logo)
        names = QVBoxLayout()
        names.setSpacing(0)
        title = QLabel("Wan Desktop")
        title.setObjectName("Brand")
        names.addWidget(title)
        sub = QLabel(f"Wan2.2 studio  ·  v{__version__}")
        sub.setObjectName("BrandSub")
        names.addWidget(sub)
        brand.addLayout(names, 1)
        col.addLayout(brand)
        col.addSpacing(22)
        self.nav = QButtonGroup(self)
        self.nav.setExclusive(True)
        self.nav_buttons: dict[str, QToolButton] = {}
        for name, text, icon in PAGES:
            b = QToolButton()
            b.setObjectName("NavButton")
            b.setText(f"  {text}")
            b.setIcon(icons.icon(icon, theme.P.muted, theme.P.text))
            b.setIconSize(QSize(18, 18))
            b.setCheckable(True)
            b.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
            b.setSizePolicy(
                b.sizePolicy().horizontalPolicy().Expanding, b.sizePolicy().verticalPolicy()
            )
            b.setMinimumWidth(180)
            b.setCursor(Qt.CursorShape.PointingHandCursor)
            b.clicked.connect(lambda _c=False, n=name: self.show_page(n))
            self.nav.addButton(b)
            self.nav_buttons[name] = b
            col.addWidget(b)
        col.addStretch(1)
        self.mode_badge = Badge("", "dev")
        col.addWidget(self.mode_badge, 0, Qt.AlignmentFlag.AlignLeft)
        self.side_queue = label("", "faint")
        col.addWidget(self.side_queue)
        return side

    @Slot(str)
    def show_page(self, name: str) -> None:
        page, _, target = name.partition(":")
        if page not in self.pages:
            return
        widget = self.pages[page]
        self.stack.setCurrentWidget(widget)
        self.nav_buttons[page].setChecked(True)
        open_target = getattr(widget, "open_target", None)
        if target and open_target is not None:
            open_target(target)

    def current_page(self) -> str:
        current = self.stack.currentWidget()
        return next(n for n, p in self.pages.built().items() if p is current)

    @Slot(object)
    def _on_notice(self, notice: Notice) -> None:
        if notice.kind in ("success", "error") and not self.studio.settings.notifications:
            return
        self.toasts.show_notice(notice)
        if notice.job_id and notice.kind in ("success", "error") and not self.isActiveWindow():
            self._tray_message(notice)

    def _tray_message(self, notice: Notice) -> None:
        """A desktop notification too, when the window is in the background."""
        if not QSystemTrayIcon.isSystemTrayAvailable():
            return
        if self._tray is None:
            self._tray = QSystemTrayIcon(icons.app_icon(), self)
            self._tray.setToolTip("Wan Desktop")
            self._tray.show()
        icon = (
            QSystemTrayIcon.MessageIcon.Critical
            if notice.kind == "error"
            else QSystemTrayIcon.MessageIcon.Information
        )
        self._tray.showMessage(notice.title, notice.message, icon, 8000)

    def _update_engine_status(self) -> None:
        text, kind = self.studio.engine_status()
        self.engine_status.set(text, kind)
        link = self.studio.link
        self.engine_status.setToolTip(
            f"{link.reason}  {link.what_to_do}".strip() if link is not None else ""
        )

    def _update_status(self) -> None:
        s = self.studio
        active, queued = s.active(), s.queued()
        if active:
            job = active[0]
            if job.kind is JobKind.explainer:
                stage = (job.stage or "starting").replace("_", " ")
                text = f"Explainer: {stage}  ·  {job.progress * 100:.0f}%"
            else:
                step = f" step {job.step}/{job.total_steps}" if job.total_steps else ""
                text = f"Generating{step}  ·  {job.progress * 100:.0f}%"
        elif queued:
            text = f"{len(queued)} waiting" + ("  ·  paused" if s.paused else "")
        else:
            text = "Idle" + ("  ·  queue paused" if s.paused else "")
        if s.downloads:
            text += f"  ·  {len(s.downloads)} download(s)"
        self.queue_status.setText(text)
        title = "Wan Desktop"
        if active:
            title = f"{active[0].progress * 100:.0f}% · {title}"  # visible in the task bar
        if self.windowTitle() != title:
            self.setWindowTitle(title)
        self.side_queue.setText(f"{len(active)} running  ·  {len(queued)} queued")

    def _update_mode(self) -> None:
        s = self.studio
        if s.mock:
            self.mode_badge.set("MOCK MODE", "dev")
        elif s.dev_mode:
            self.mode_badge.set("DEVELOPMENT MODE", "dev")
        else:
            self.mode_badge.set("", "dev")

    @Slot(object)
    def _on_memory(self, m: MemorySample) -> None:
        if m.has_gpu and m.vram_total_mb:
            self.memory_status.setText(
                f"VRAM {m.vram_percent:.0f}%  ·  RAM {m.ram_used_mb / 1024:.1f} GiB"
            )
        else:
            self.memory_status.setText(f"No GPU  ·  RAM {m.ram_used_mb / 1024:.1f} GiB")

    def paintEvent(self, event: QPaintEvent) -> None:
        super().paintEvent(event)
        if not self._painted:
            self._painted = True
            self.first_painted.emit()

    def closeEvent(self, event: QCloseEvent) -> None:
        running = self.studio.active()
        if (
            self.confirm_quit
            and running
            and not widgets.confirm(
                self,
                "Quit Wan Desktop",
                "A video is being generated. Quit anyway? The job will be marked interrupted "
                "and can be retried from the Queue; waiting jobs stay queued.",
                "Quit",
            )
        ):
            event.ignore()
            return
        for page in self.pages.built().values():
            shutdown = getattr(page, "shutdown", None)  # pages with a media player
            if shutdown is not None:
                shutdown()
        super().closeEvent(event)
