"""The app as a whole: entry points, the self-test, the event bridge, navigation, notices."""

from __future__ import annotations

import asyncio
import gc
import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.engine_helpers import wan_spec
from tests.helpers import ROOT
from tests.ui_helpers import app_env, controls, local, make_window, mock_studio, wait_until
from tests.wan_helpers import real_engine, small_spec
from wan_desktop import __version__
from wan_desktop.engine import JobState, MemorySample, QueueChanged
from wan_desktop.engine.jobstore import JobStore
from wan_desktop.models.store import ModelStore
from wan_desktop.ui.bridge import EngineBridge
from wan_desktop.ui.state import Notice
from wan_desktop.ui.window import PAGES


def test_version_is_printed_without_starting_qt(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "wan_desktop", "--version"],
        cwd=ROOT,
        env=app_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert out.stdout.strip() == f"wan-desktop {__version__}"
    assert "PySide6" not in out.stderr, "--version must not import Qt"


def test_self_test_opens_paints_every_page_and_exits_zero(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "wan_desktop", "--self-test", "--mock"],
        cwd=ROOT,
        env=app_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["self_test"] == "ok"
    assert report["pages"] == [name for name, _t, _i in PAGES]
    assert (tmp_path / "config" / "api-token").is_file(), "first start makes the API's token"
    assert (tmp_path / "data" / "jobs.sqlite3").is_file()


def test_without_a_display_it_explains_instead_of_aborting(tmp_path: Path) -> None:
    env = app_env(tmp_path)
    for name in ("QT_QPA_PLATFORM", "DISPLAY", "WAYLAND_DISPLAY"):
        env.pop(name, None)
    out = subprocess.run(
        [sys.executable, "-m", "wan_desktop"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 2 and "no display found" in out.stderr


def test_the_bridge_delivers_events_on_the_gui_thread_newest_sample_only(
    qtbot: Any, tmp_path: Path
) -> None:
    # Not started: no memory sampler whose own sample could supersede the burst's last one.
    with mock_studio(tmp_path, start=False) as studio:
        bridge = EngineBridge(studio.engine)
        threads: list[bool] = []
        samples: list[float] = []
        queue_events: list[str] = []

        def on_sample(s: MemorySample) -> None:
            threads.append(threading.current_thread() is threading.main_thread())
            samples.append(s.ram_used_mb)

        bridge.memory_sampled.connect(on_sample)
        bridge.queue_changed.connect(lambda e: queue_events.append(e.reason))

        def burst() -> None:
            for i in range(500):
                local(studio).bus.publish(
                    MemorySample(
                        device_name="CPU",
                        has_gpu=False,
                        vram_allocated_mb=0,
                        vram_reserved_mb=0,
                        vram_free_mb=0,
                        vram_total_mb=0,
                        gpu_percent=None,
                        ram_used_mb=float(i),
                        ram_total_mb=1000.0,
                    )
                )
            local(studio).bus.publish(QueueChanged(reason="paused", paused=True))

        t = threading.Thread(target=burst)
        t.start()
        t.join()
        wait_until(
            qtbot, lambda: queue_events == ["paused"] and bool(samples) and samples[-1] == 499.0
        )
        assert all(threads), "slots run on the GUI thread"
        assert len(samples) < 500, "superseded samples are dropped, not queued"
        bridge.close()


def test_a_closed_bridge_delivers_nothing_it_had_queued(qtbot: Any, tmp_path: Path) -> None:
    """The app closes its state, then shuts the engine down: an event still queued for the GUI
    thread (a server's link coming up, say) must not reach the closed state, which would ask
    the engine that is gone."""
    with mock_studio(tmp_path, start=False) as studio:
        bridge = EngineBridge(studio.engine)
        seen: list[str] = []
        bridge.queue_changed.connect(lambda e: seen.append(e.reason))
        local(studio).bus.publish(QueueChanged(reason="paused", paused=True))
        wait_until(qtbot, lambda: seen == ["paused"])
        local(studio).bus.publish(QueueChanged(reason="resumed", paused=False))
        deadline = time.monotonic() + 30
        while not bridge._pending:  # handed to the bridge; its drain waits for this thread
            assert time.monotonic() < deadline, "the event never reached the bridge"
            time.sleep(0.01)
        bridge.close()
        qtbot.wait(200)
        assert seen == ["paused"]


def test_pages_are_reachable_from_the_sidebar_and_shortcuts(qtbot: Any, tmp_path: Path) -> None:
    with mock_studio(tmp_path) as studio:
        window = make_window(qtbot, studio)
        for name, _title, _icon in PAGES:
            window.nav_buttons[name].click()
            assert window.current_page() == name
        studio.navigate.emit("queue")
        assert window.current_page() == "queue"
        assert window.mode_badge.text() == "MOCK MODE"


def test_notices_become_toasts_and_errors_stay_until_closed(qtbot: Any, tmp_path: Path) -> None:
    with mock_studio(tmp_path) as studio:
        window = make_window(qtbot, studio)
        studio.post(
            Notice("error", "Download failed", "disk full", ("free some space",), sticky=True)
        )
        studio.post(Notice("info", "Queued", "a job"))
        assert len(window.toasts.toasts) == 2
        error = window.toasts.toasts[0]
        assert error.isVisible() and error.geometry().right() <= window.width()
        error.dismiss()
        assert len(window.toasts.toasts) == 1


def test_the_queue_survives_a_restart_of_the_app(qtbot: Any, tmp_path: Path) -> None:
    with mock_studio(tmp_path) as studio:
        studio.engine.pause()
        ids = [studio.submit(wan_spec(prompt=f"kept {i}").params).id for i in range(2)]
    time.sleep(0.05)
    with mock_studio(tmp_path) as studio:
        window = make_window(qtbot, studio)
        queue = window.pages["queue"]
        window.show_page("queue")
        assert queue.upcoming.ids() == ids  # type: ignore[attr-defined]
        assert studio.paused and "paused" in queue.header.subtitle.text()  # type: ignore[attr-defined]


def test_emitting_signals_keeps_python_reference_counts_balanced(qtbot: Any) -> None:
    """PySide6 6.12.0 dropped a reference to True on every emit; a long session then aborts."""
    from PySide6.QtCore import QObject, Signal

    class Emitter(QObject):
        changed = Signal(object)

    emitter = Emitter()
    seen: list[object] = []
    emitter.changed.connect(seen.append)
    before = [sys.getrefcount(x) for x in (True, False, None)]
    for _ in range(200):
        emitter.changed.emit(None)
    after = [sys.getrefcount(x) for x in (True, False, None)]
    assert len(seen) == 200
    assert all(a >= b - 5 for a, b in zip(after, before, strict=True)), (before, after)


def test_quitting_while_a_video_generates_asks_first(
    qtbot: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    answers = [False, True]
    monkeypatch.setattr("wan_desktop.ui.widgets.confirm", lambda *_a: answers.pop(0))
    with mock_studio(tmp_path, step_s=0.05) as studio:
        window = make_window(qtbot, studio)
        window.confirm_quit = True
        job = studio.submit(wan_spec(steps=100).params)
        wait_until(qtbot, lambda: studio.jobs[job.id].state.active)
        window.close()
        assert window.isVisible(), "the user chose to stay"
        window.close()
        assert not window.isVisible() and answers == []


def _session(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, *, mock: bool) -> Any:
    from wan_desktop.__main__ import build_parser
    from wan_desktop.ui.app import Session
    from wan_desktop.ui.collector import GuiCollector

    for key, value in app_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    args = build_parser().parse_args(["--mock"] if mock else [])
    return Session(args, started=0.0, api_factory=None, collector=GuiCollector())


@pytest.mark.parametrize("case", ["mock", "libraries fail", "a model is loaded"])
def test_the_heap_is_frozen_once_the_libraries_are_in_unless_a_model_is(
    qapp: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, case: str
) -> None:
    import wan_desktop.ui.app as app_module

    session = _session(monkeypatch, tmp_path, mock=case == "mock")
    imported: list[bool] = []

    def libraries() -> dict[str, str]:
        imported.append(True)
        raise ImportError("no torch here")

    monkeypatch.setattr(app_module, "engine_libraries", libraries)
    if case == "a model is loaded":
        monkeypatch.setattr(session.engine, "loaded_models", lambda: [object()])
    try:
        asyncio.run(session._load_libraries())
        assert imported == ([] if case == "mock" else [True])  # mock jobs need no libraries
        frozen = session.collector.frozen
        assert (frozen > 0) == (case != "a model is loaded")
    finally:
        session.collector.stop()
        session.window.close()
        session.studio.close()
        session.engine.shutdown()
    assert gc.get_freeze_count() == 0


def _job_states(db: Path, ids: list[str]) -> dict[str, Any]:
    store = JobStore(db)
    try:
        return {i: store.get(i) for i in ids}
    finally:
        store.close()


def _launch_app(root: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "wan_desktop", "--dev"],
        cwd=ROOT,
        env=app_env(root),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _stop(proc: subprocess.Popen[str], sig: int) -> str:
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return err or ""


def test_waiting_jobs_complete_after_the_app_is_killed_and_relaunched(
    tiny_store: ModelStore, tmp_path: Path
) -> None:
    """The queue survives restarts, for real: the real app, development jobs, kill -9, relaunch.

    On a fresh start the worker takes a waiting job at once, while the app imports the
    generation libraries ahead of time: the two must not race (the job failed with
    "cannot import name 'DiffusionPipeline'").
    """
    assert tiny_store.config.models_root == tmp_path / "models"
    engine = real_engine(tmp_path / "models", tmp_path, start=False)
    ids = [engine.submit(small_spec(prompt=f"waiting {i}", seed=i)).id for i in range(3)]
    db = engine.settings.db_path
    engine.shutdown()

    def failures(jobs: dict[str, Any]) -> list[str]:
        return [f"{j.id}: {j.failure}" for j in jobs.values() if j.state is JobState.failed]

    # First launch: killed as soon as the first job has started, the others waiting.
    app = _launch_app(tmp_path)
    try:
        deadline = time.monotonic() + 240
        while all(j.state is JobState.queued for j in _job_states(db, ids).values()):
            assert app.poll() is None, app.stderr.read() if app.stderr else ""
            assert time.monotonic() < deadline, "the app never started a waiting job"
            time.sleep(0.05)
    finally:
        err = _stop(app, signal.SIGKILL)
    at_kill = _job_states(db, ids)
    assert not failures(at_kill), (failures(at_kill), err[-3000:])
    waiting = [i for i, j in at_kill.items() if j.state is JobState.queued]
    assert waiting, "the kill came after every job had started"

    # Relaunch: the interrupted job says so; every waiting job completes.
    app = _launch_app(tmp_path)
    try:
        deadline = time.monotonic() + 300
        while not all(j.state.finished for j in _job_states(db, waiting).values()):
            assert app.poll() is None, app.stderr.read() if app.stderr else ""
            assert time.monotonic() < deadline, _job_states(db, waiting)
            time.sleep(0.1)
    finally:
        err = _stop(app, signal.SIGTERM)
    after = _job_states(db, ids)
    assert not failures(after), (failures(after), err[-3000:])
    assert [after[i].state for i in waiting] == [JobState.completed] * len(waiting)
    for i in waiting:
        assert Path(after[i].output.video).is_file()
    started = [i for i in ids if i not in waiting]
    assert [after[i].state for i in started] == [JobState.interrupted] * len(started)


@pytest.mark.parametrize("size", [(1024, 700), (1440, 900)])
def test_toasts_stack_where_they_cover_no_control(
    qtbot: Any, tmp_path: Path, size: tuple[int, int]
) -> None:
    """Two of three Generate clicks hit a toast: toasts cover no button or field, on any page."""
    with mock_studio(tmp_path) as studio:
        window = make_window(qtbot, studio)
        window.resize(*size)
        studio.engine.pause()
        for i in range(3):
            studio.submit(wan_spec(prompt=f"waiting {i}").params)
        studio.post(
            Notice(
                "error",
                "Download failed",
                "the disk is full: 12.5 GB are needed in the models folder and 1.2 GB are free",
                ("free some space", "or move the models folder in Settings"),
                sticky=True,
            )
        )
        for title in ("Queued", "Video ready", "Model ready", "Settings saved"):
            studio.post(Notice("success", title, "a message that takes a line or two to say"))
        qtbot.wait(50)
        toasts = window.toasts.toasts
        assert toasts and any(t.notice.sticky for t in toasts), "the error is still shown"
        for name in window.pages:
            window.show_page(name)
            qtbot.wait(20)
            window.toasts.relayout()
            for toast in toasts:
                area = toast.geometry()
                assert window.rect().contains(area), (name, area)
                for control, shown in controls(window, skip=tuple(toasts)):
                    assert not area.intersects(shown), (name, control, control.toolTip())


def test_the_keyboard_reaches_everything_and_says_how(qtbot: Any, tmp_path: Path) -> None:
    """Tab leaves the prompt; a focused button shows a ring; the shortcuts are shown (tooltips,
    F1); Esc closes the newest notification; Ctrl+Q quits."""
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QImage

    from wan_desktop.ui import theme

    with mock_studio(tmp_path) as studio:
        window = make_window(qtbot, studio)
        window.setStyleSheet(theme.stylesheet())  # as the app applies it (to this window only)
        window.activateWindow()
        qtbot.waitUntil(window.isActiveWindow)
        gen = window.pages["generate"]
        prompt = gen.prompt  # type: ignore[attr-defined]
        prompt.setFocus()
        qtbot.waitUntil(prompt.hasFocus)
        qtbot.keyClicks(prompt, "a fox")
        qtbot.keyClick(prompt, Qt.Key.Key_Tab)
        assert prompt.toPlainText() == "a fox" and not prompt.hasFocus(), "Tab left the prompt"

        button = gen.generate_btn  # type: ignore[attr-defined]
        plain = button.grab().toImage()
        button.setFocus(Qt.FocusReason.TabFocusReason)
        qtbot.waitUntil(button.hasFocus)
        ringed = button.grab().toImage()
        assert isinstance(ringed, QImage) and ringed != plain, "a focused button shows a ring"

        for i, name in enumerate(window.pages):
            assert f"Ctrl+{i + 1}" in window.nav_buttons[name].toolTip()
        qtbot.keyClick(window, Qt.Key.Key_F1)
        dialog = window.shortcuts_dialog
        assert dialog is not None and dialog.isVisible()
        listed = [k for k, _what in window.shortcut_list()]
        assert {"Ctrl+1", "Ctrl+7", "Ctrl+Enter", "Esc", "F1", "Ctrl+Q"} <= set(listed)
        dialog.close()
        window.activateWindow()
        qtbot.waitUntil(window.isActiveWindow)

        studio.post(Notice("error", "Download failed", "disk full", sticky=True))
        assert len(window.toasts.toasts) == 1
        qtbot.keyClick(window, Qt.Key.Key_Escape)
        assert window.toasts.toasts == []
        qtbot.keyClick(window, Qt.Key.Key_Q, Qt.KeyboardModifier.ControlModifier)
        assert not window.isVisible(), "Ctrl+Q quits"
