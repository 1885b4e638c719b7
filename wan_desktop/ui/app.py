"""Start the app: Qt, the theme, the engine, the window, the qasync loop; and shut it all down.

The window is painted before anything slow happens: the engine's worker and memory sampler (whose
first sample imports torch to read the hardware) start after the first paint, and every later
slow step runs off the GUI thread. After that the generation libraries are imported in the
background (the first Generate then starts at once) and the heap they make is frozen, so that no
later garbage collection on the GUI thread has to walk it (``collector.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import sys
import time
from typing import Any

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QMessageBox

from wan_desktop import __version__, explainer
from wan_desktop.engine import Engine, libraries

from . import icons, theme
from .api_control import ApiController, ServerFactory
from .collector import GuiCollector
from .config import SettingsStore, engine_settings
from .state import Notice, Studio
from .window import MainWindow

log = logging.getLogger("wan_desktop.ui")

SELF_TEST_TIMEOUT_S = 120


# Background threads (engine worker, downloads, event delivery) run Python too; with the default
# 5 ms GIL switch interval the GUI thread can wait that long, several times, before it runs. A
# shorter interval hands it the GIL sooner: smoother frames for a little throughput.
GIL_SWITCH_INTERVAL_S = 0.001


def make_app() -> QApplication:
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    existing = QApplication.instance()
    app = existing if isinstance(existing, QApplication) else QApplication(["wan-desktop"])
    app.setApplicationName("Wan Desktop")
    app.setApplicationVersion(__version__)
    app.setOrganizationName("WanDesktop")
    app.setDesktopFileName("wan-desktop")
    theme.apply(app)
    app.setWindowIcon(icons.app_icon())
    return app


class Session:
    """Everything one run of the app owns, in the order it must be closed."""

    def __init__(
        self,
        args: argparse.Namespace,
        *,
        started: float,
        api_factory: ServerFactory | None,
        collector: GuiCollector | None = None,
    ) -> None:
        self.args = args
        self.collector = collector
        self.libraries_loaded: asyncio.Future[None] | None = None
        self.started = started
        self.store = SettingsStore()
        settings = self.store.load_or_init()
        if args.api:
            settings = dataclasses.replace(settings, api_enabled=True)
        explainer.register()  # the Explainer page submits explainer jobs
        self.engine = Engine(engine_settings(settings, mock=args.mock, dev=args.dev), start=False)
        self.studio = Studio(self.engine, self.store, settings)
        self.api = ApiController(self.engine, api_factory)
        self.window = MainWindow(self.studio, self.api)
        self.window.confirm_quit = not args.self_test
        self.first_paint_s: float | None = None
        self.window.first_painted.connect(self._after_first_paint)

    def _after_first_paint(self) -> None:
        self.first_paint_s = time.perf_counter() - self.started
        # Deferred so the window shows first: the sampler's first sample imports torch.
        QTimer.singleShot(0, self._start_engine)

    def _start_engine(self) -> None:
        self.engine.start()
        if not self.args.self_test:
            self.libraries_loaded = asyncio.ensure_future(self._load_libraries())
        if self.studio.settings.api_enabled:
            self.api.apply(self.studio.settings)
        if self.engine.recovered:
            self.studio.post(
                Notice(
                    "warning",
                    "Jobs interrupted",
                    f"{len(self.engine.recovered)} job(s) were running when the app last closed",
                    ("retry them from the Queue",),
                )
            )

    async def _load_libraries(self) -> None:
        """Import what generation needs, off the GUI thread, then freeze the heap (once)."""
        if not self.args.mock:
            loop = asyncio.get_running_loop()
            try:
                await loop.run_in_executor(None, engine_libraries)
            except Exception as exc:  # the first job reports it properly, with its fix
                log.warning("the generation libraries did not load ahead of time: %s", exc)
        if self.collector is None:
            return
        if self.engine.running_job_id is None and not self.engine.loaded_models():
            self.collector.freeze_long_lived()
        else:  # a model's objects must stay collectable: it will be unloaded one day
            log.info("a job started before the libraries were in: the heap is not frozen")

    async def main(self) -> int:
        app = QApplication.instance()
        assert isinstance(app, QApplication)
        # Qt must not stop the loop when the window closes: the shutdown below still needs it.
        app.setQuitOnLastWindowClosed(False)
        closed = asyncio.Event()
        app.lastWindowClosed.connect(closed.set)
        self.window.show()
        code = 0
        if self.args.self_test:
            code = await self.self_test()
            self.window.close()
        else:
            await closed.wait()
        await self.close()
        return code

    async def self_test(self) -> int:
        """Paint every page, report, close. Exit 0 only if all painted."""
        deadline = time.monotonic() + SELF_TEST_TIMEOUT_S
        while self.first_paint_s is None:
            if time.monotonic() > deadline:
                print("self-test: the window never painted", file=sys.stderr)
                return 1
            await asyncio.sleep(0.01)
        painted = []
        for name in self.window.pages:
            self.window.show_page(name)
            await asyncio.sleep(0.05)
            image = self.window.grab().toImage()
            if image.isNull() or image.width() < 100:
                print(f"self-test: page {name} did not paint", file=sys.stderr)
                return 1
            painted.append(name)
        libraries: dict[str, str] = {}
        if self.args.check_engine:
            loop = asyncio.get_running_loop()
            try:
                libraries = await loop.run_in_executor(None, engine_libraries)
            except Exception as exc:
                print(f"self-test: the generation libraries do not load: {exc}", file=sys.stderr)
                return 1
        print(
            json.dumps(
                {
                    "self_test": "ok",
                    "version": __version__,
                    "pages": painted,
                    "libraries": libraries,
                    "first_paint_s": round(self.first_paint_s, 3),
                    "first_paint_at": time.time()
                    - (time.perf_counter() - self.started - self.first_paint_s),
                }
            ),
            flush=True,
        )
        return 0

    async def close(self) -> None:
        if self.libraries_loaded is not None:
            self.libraries_loaded.cancel()  # an import cannot stop; exit waits for it
        await self.api.stop()
        self.studio.close()
        loop = asyncio.get_running_loop()
        # The engine joins its threads (up to its timeout): never on the GUI thread.
        await loop.run_in_executor(None, self.engine.shutdown)


def engine_libraries() -> dict[str, str]:
    """Import what generation needs (blocking: off the GUI thread) and return the versions.

    The engine's one place for it: a job that starts meanwhile waits for this import instead of
    racing it.
    """
    return libraries.load()


def run(
    args: argparse.Namespace,
    *,
    started: float | None = None,
    api_factory: ServerFactory | None = None,
) -> int:
    started = time.perf_counter() if started is None else started
    import qasync

    app = make_app()
    collector = GuiCollector(app)  # Qt objects are only ever freed on this thread
    try:
        session = Session(args, started=started, api_factory=api_factory, collector=collector)
    except Exception as exc:
        log.exception("the app could not start")
        if not args.self_test:
            QMessageBox.critical(None, "Wan Desktop could not start", f"{exc}")
        print(f"wan-desktop: could not start: {exc}", file=sys.stderr)
        return 1
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    collector.start()
    try:
        with loop:
            result: Any = loop.run_until_complete(session.main())
    finally:
        collector.stop()
        asyncio.set_event_loop(None)
    return int(result)
