"""Helpers for the desktop app's tests: a studio over a real (mock-pipeline) engine, a window."""

from __future__ import annotations

import faulthandler
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from tests.engine_helpers import mock_engine
from wan_desktop.engine import Engine
from wan_desktop.engine.face import EngineFace
from wan_desktop.ui.api_control import ApiController
from wan_desktop.ui.config import AppSettings, SettingsStore
from wan_desktop.ui.state import Studio
from wan_desktop.ui.window import MainWindow


@contextmanager
def studio_for(
    engine: EngineFace, config_dir: Path, settings: AppSettings | None = None
) -> Iterator[Studio]:
    store = SettingsStore(config_dir)
    studio = Studio(engine, store, settings or AppSettings(welcomed=True))
    try:
        yield studio
    finally:
        studio.close()
        engine.shutdown()


def local(studio: Studio) -> Engine:
    """The studio's engine when it is this process's own (to look inside it)."""
    assert isinstance(studio.engine, Engine)
    return studio.engine


def private_config(engine: Engine, config_dir: Path) -> Engine:
    """Point the engine's orchestrator at the test's config folder: the quota the GUI saves
    goes to ``orchestrator.toml`` there, never to the user's own."""
    models = replace(engine.models.config, config_dir=config_dir)
    engine.models.config = models
    engine.settings = replace(engine.settings, models=models)
    return engine


@contextmanager
def mock_studio(root: Path, **engine_kwargs: Any) -> Iterator[Studio]:
    engine = private_config(mock_engine(root, **engine_kwargs), root / "config")
    with studio_for(engine, root / "config") as studio:
        yield studio


def make_window(qtbot: Any, studio: Studio) -> MainWindow:
    engine = studio.engine if isinstance(studio.engine, Engine) else None  # the API's: local
    window = MainWindow(studio, ApiController(engine, None))
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    return window


def app_env(root: Path) -> dict[str, str]:
    """The environment of an app started as its own process: its folders under ``root``,
    offscreen, no keyring, nothing of the developer's settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WAN_", "MODELS_ROOT"))}
    env |= {
        "QT_QPA_PLATFORM": "offscreen",
        "WAN_CONFIG_DIR": str(root / "config"),
        "WAN_DATA_DIR": str(root / "data"),
        "MODELS_ROOT": str(root / "models"),
        "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring",
    }
    return env


def wait_until(qtbot: Any, pred: Callable[[], bool], timeout: float = 30.0) -> None:
    try:
        qtbot.waitUntil(pred, timeout=int(timeout * 1000))
    except Exception:
        faulthandler.dump_traceback(all_threads=True)  # where each thread was, for the report
        raise


def pump(qtbot: Any, seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        qtbot.wait(10)


def controls(root: Any, *, skip: tuple[Any, ...] = ()) -> list[tuple[Any, Any]]:
    """Every visible control under ``root`` (buttons, fields, sliders) with the part of it that
    shows, in ``root``'s coordinates; none inside the widgets of ``skip``."""
    from PySide6.QtCore import QRect
    from PySide6.QtWidgets import (
        QAbstractButton,
        QAbstractSlider,
        QAbstractSpinBox,
        QComboBox,
        QLineEdit,
        QPlainTextEdit,
        QTextEdit,
        QWidget,
    )

    kinds = (
        QAbstractButton,
        QAbstractSlider,
        QAbstractSpinBox,
        QComboBox,
        QLineEdit,
        QPlainTextEdit,
        QTextEdit,
    )
    out = []
    for w in root.findChildren(QWidget):
        if not isinstance(w, kinds) or not w.isVisible():
            continue
        if any(s is w or s.isAncestorOf(w) for s in skip):
            continue
        shown = w.visibleRegion().boundingRect()
        if shown.isEmpty():
            continue
        out.append((w, QRect(w.mapTo(root, shown.topLeft()), shown.size())))
    return out


def layout_problems(root: Any) -> list[str]:
    """Where a laid-out window is squashed: a visible widget that sticks out of its parent, that
    overlaps a visible sibling, or that is smaller than the least it needs to show its content
    (a cut label or button). Scrolled content (inside a scroll area's viewport) may extend past
    the viewport: that is what scrolling is for."""
    from PySide6.QtCore import QEvent, Qt
    from PySide6.QtWidgets import (
        QAbstractButton,
        QAbstractScrollArea,
        QApplication,
        QLabel,
        QWidget,
    )

    # As a frame is painted: after the pending layouts (a text changed a moment ago).
    QApplication.sendPostedEvents(None, QEvent.Type.LayoutRequest.value)
    problems: list[str] = []

    def name(w: Any) -> str:
        text = w.text() if isinstance(w, QLabel | QAbstractButton) else ""
        return f"{type(w).__name__}({w.objectName() or ''}{'|' + text[:30] if text else ''})"

    def visit(parent: Any, path: str) -> None:
        kids = [
            w
            for w in parent.children()
            if isinstance(w, QWidget) and w.isVisible() and not w.isWindow()
        ]
        area = parent.parentWidget()
        scrolled = isinstance(area, QAbstractScrollArea) and parent is area.viewport()
        sideways = (
            scrolled and area.horizontalScrollBarPolicy() != Qt.ScrollBarPolicy.ScrollBarAlwaysOff
        )
        inner = parent.rect()
        for w in kids:
            g = w.geometry()
            here = f"{path}/{name(w)}"
            if g.isEmpty():
                continue
            if not scrolled and not inner.contains(g):
                problems.append(f"{here} {g.getRect()} sticks out of {inner.getRect()}")
            elif scrolled and not sideways and (g.left() < 0 or g.right() > inner.right()):
                problems.append(f"{here} {g.getRect()} is cut at the sides of {inner.getRect()}")
            if isinstance(w, QLabel) and w.wordWrap() and w.text():
                need_h = w.heightForWidth(w.width())
                if w.height() + 1 < need_h:
                    problems.append(f"{here} {w.size().toTuple()} needs height {need_h}: cut")
            elif isinstance(w, QLabel | QAbstractButton) and w.text():
                need = w.minimumSizeHint()
                if w.width() + 1 < need.width() or w.height() + 1 < need.height():
                    problems.append(f"{here} {w.size().toTuple()} < {need.toTuple()}: cut")
        for i, a in enumerate(kids):
            for b in kids[i + 1 :]:
                if a.geometry().intersects(b.geometry()) and not (
                    getattr(a, "overlay", False) or getattr(b, "overlay", False)
                ):
                    problems.append(f"{path}: {name(a)} overlaps {name(b)}")
        for w in kids:
            visit(w, f"{path}/{name(w)}")

    visit(root, name(root))
    return problems


def visible_widgets(root: Any) -> int:
    from PySide6.QtWidgets import QWidget

    return sum(1 for w in root.findChildren(QWidget) if w.isVisible())
