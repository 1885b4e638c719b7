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
from wan_desktop.engine.face import EngineFace
from wan_desktop.remote import RemoteError

from . import icons, theme
from .api_control import ApiController, ServerFactory
from .collector import GuiCollector
from .config import AppSettings, SettingsStore
from .engines import EngineChoice, choose, open_engine
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
        self.api_factory = api_factory
        self.collector = collector
        self.libraries_loaded: asyncio.Future[None] | None = None
        self.started = started
        self.store = SettingsStore()
        settings = self.store.load_or_init()
        if args.api:
            settings = dataclasses.replace(settings, api_enabled=True)
        explainer.register()  # the Explainer page submits explainer jobs
        connect = getattr(args, "connect", None)
        self.choice = choose(settings, connect, getattr(args, "token", None))
        unreachable: RemoteError | None = None
        try:
            engine = open_engine(self.choice, settings, mock=args.mock, dev=args.dev)
        except RemoteError as exc:
            if connect:  # asked for on the command line: say why and stop
                raise
            # The remembered server cannot be used now: this computer's engine meanwhile.
            unreachable, self.choice = exc, EngineChoice()
            engine = open_engine(self.choice, settings, mock=args.mock, dev=args.dev)
        self._build(engine, settings)
        self.first_paint_s: float | None = None
        self.window.first_painted.connect(self._after_first_paint)
        if unreachable is not None:
            self.studio.post(
                Notice(
                    "error",
                    "Could not connect to the server",
                    unreachable.problem,
                    (unreachable.what_to_do, "this computer's engine runs meanwhile"),
                    sticky=True,
                )
            )

    def _build(self, engine: EngineFace, settings: AppSettings) -> None:
        """The state, the API switch and the window over ``engine``."""
        self.engine = engine
        self.studio = Studio(engine, self.store, settings)
        self.studio.engine_requested.connect(self._on_engine_requested)
        # The local API serves this computer's engine only.
        self.api = ApiController(engine if isinstance(engine, Engine) else None, self.api_factory)
        self.window = MainWindow(self.studio, self.api)
        self.window.confirm_quit = not self.args.self_test

    def _after_first_paint(self) -> None:
        self.first_paint_s = time.perf_counter() - self.started
        # Deferred so the window shows first: the sampler's first sample imports torch.
        QTimer.singleShot(0, self._start_engine)

    def _start_engine(self) -> None:
        self.engine.start()
        if not self.args.self_test and not self.choice.remote:
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

    def _on_engine_requested(self, choice: EngineChoice) -> None:
        self.switching = asyncio.ensure_future(self.switch_engine(choice))

    async def switch_engine(self, choice: EngineChoice) -> bool:
        """Drive ``choice``'s engine from now on, without a restart: a new window over it takes
        the old one's place; the old engine stops (its running job is marked interrupted)."""
        loop = asyncio.get_running_loop()
        settings = self.studio.settings
        args = self.args
        try:
            engine = await loop.run_in_executor(
                None, lambda: open_engine(choice, settings, mock=args.mock, dev=args.dev)
            )
        except Exception as exc:  # a RemoteError says what to do; a local store may refuse
            log.warning("could not switch to %s: %s", choice.describe(), exc)
            self.studio.post(
                Notice("error", f"Could not switch to {choice.describe()}", str(exc), sticky=True)
            )
            return False
        old_window, old_studio, old_engine, old_api = (
            self.window,
            self.studio,
            self.engine,
            self.api,
        )
        await old_api.stop()
        self.choice = choice
        self._build(engine, settings)
        self.window.setGeometry(old_window.geometry())
        self.window.show()
        self.window.show_page("settings")
        old_window.confirm_quit = False
        old_window.close()  # another window is open: the app goes on
        old_studio.close()
        engine.start()
        if settings.api_enabled:
            self.api.apply(settings)
        self.studio.post(Notice("success", "Engine switched", f"now on {choice.describe()}"))
        await loop.run_in_executor(None, old_engine.shutdown)
        old_window.deleteLater()
        return True

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
    except RemoteError as exc:  # --connect to a server that cannot be used: what to do
        log.error("could not connect: %s", exc)
        if not args.self_test:
            QMessageBox.critical(None, "Wan Desktop could not connect", f"{exc}")
        print(f"wan-desktop: could not connect: {exc}", file=sys.stderr)
        return 1
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
