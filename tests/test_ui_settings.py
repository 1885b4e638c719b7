"""Settings: saved to a file and read back, errors next to fields, secrets only in a keyring,
the local API switch, and how the settings shape the engine."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.engine_helpers import wan_spec
from tests.ui_helpers import local, make_window, mock_studio, wait_until
from wan_desktop.access import load_token
from wan_desktop.models.settings import load_settings
from wan_desktop.ui import secrets
from wan_desktop.ui.api_control import ApiController
from wan_desktop.ui.config import AppSettings, SettingsStore, engine_settings
from wan_desktop.ui.panels.settings import SettingsPanel
from wan_desktop.ui.state import Studio


@pytest.fixture
def studio(qtbot: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Studio]:
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
    with mock_studio(tmp_path) as s:
        yield s


def settings_panel(qtbot: Any, studio: Studio) -> SettingsPanel:
    window = make_window(qtbot, studio)
    panel = window.pages["settings"]
    assert isinstance(panel, SettingsPanel)
    return panel


def test_settings_saved_in_the_panel_are_read_back_by_a_new_start(
    qtbot: Any, studio: Studio, tmp_path: Path
) -> None:
    panel = settings_panel(qtbot, studio)
    panel.outputs_dir.setText(str(tmp_path / "videos"))
    panel.idle.setValue(25)
    panel.api_port.setValue(8123)
    panel.api_origins.setText("http://localhost:5173, http://127.0.0.1:5173")
    panel.notifications.setChecked(False)
    assert panel.save()
    again = SettingsStore(tmp_path / "config").load()
    assert again.outputs_dir == str(tmp_path / "videos")
    assert again.idle_unload_min == 25 and again.api_port == 8123
    assert again.api_origins == ("http://localhost:5173", "http://127.0.0.1:5173")
    assert not again.notifications
    assert local(studio).settings.idle_unload_s == 25 * 60, "applies to the running engine"
    mode = SettingsStore(tmp_path / "config").path.stat().st_mode & 0o777
    assert mode == 0o600, "only its owner reads the user's folders and hosts"


def test_bad_values_are_shown_next_to_their_fields_and_not_saved(
    qtbot: Any, studio: Studio, tmp_path: Path
) -> None:
    panel = settings_panel(qtbot, studio)
    panel.api_origins.setText("localhost:3000")
    panel.api_host.setText("0.0.0.0")
    panel.api_token.setText("")
    panel.outputs_dir.setText("relative/folder")
    assert not panel.save()
    assert "http://" in panel.api_origins_field.error.text()
    assert "token" in panel.api_token_field.error.text()
    assert "absolute" in panel.outputs_field.error.text()
    assert not panel.api_port_field.error.isVisible()
    assert not SettingsStore(tmp_path / "config").path.exists()


def test_an_unreadable_settings_file_is_kept_aside_not_overwritten(tmp_path: Path) -> None:
    store = SettingsStore(tmp_path)
    store.path.write_text("{ not json")
    assert store.load() == AppSettings()
    assert store.load_error and "kept as" in store.load_error
    kept = list(tmp_path.glob("desktop.json.broken-*"))
    assert len(kept) == 1 and kept[0].read_text() == "{ not json"
    first = store.load_or_init()
    assert len(first.api_token) >= 16, "a token is made on first start"
    assert SettingsStore(tmp_path).load_or_init().api_token == first.api_token
    assert load_token() == first.api_token, "one token file for the app and wan serve"


def test_with_no_keyring_the_panel_says_so_and_stores_nothing(qtbot: Any, studio: Studio) -> None:
    status = secrets.status()
    assert not status.available and "HF_TOKEN" in status.message
    panel = settings_panel(qtbot, studio)
    wait_until(qtbot, lambda: "No OS keyring" in panel.keyring_note.text())
    assert not panel.hf_token.isEnabled() and not panel.s3_secret.isEnabled()
    assert "HF_TOKEN" in panel.hf_token.placeholderText()
    assert panel.save(), "saving the rest still works"


def test_engine_settings_follow_the_app_settings_unless_the_environment_says_otherwise(
    tmp_path: Path,
) -> None:
    app = AppSettings(
        models_dir=str(tmp_path / "m"),
        outputs_dir=str(tmp_path / "o"),
        idle_unload_min=2,
        dev_mode=True,
    )
    env = {"WAN_DATA_DIR": str(tmp_path / "d")}
    s = engine_settings(app, environ=env)
    assert s.models.models_root == tmp_path / "m" and s.outputs_dir == tmp_path / "o"
    assert s.idle_unload_s == 120 and s.dev_mode and not s.mock
    env |= {"MODELS_ROOT": str(tmp_path / "env-models"), "WAN_IDLE_UNLOAD_S": "5"}
    s = engine_settings(app, environ=env, mock=True)
    assert s.models.models_root == tmp_path / "env-models" and s.idle_unload_s == 5 and s.mock


def test_the_api_switch_says_when_the_api_is_not_installed(qtbot: Any, studio: Studio) -> None:
    panel = settings_panel(qtbot, studio)  # its controller was given no server factory
    api = panel.api
    assert not api.available
    assert api.describe() == "API not installed in this build"
    assert not panel.api_enabled.isEnabled()
    assert panel.api_state.text() == "API not installed in this build"


def is_running(api: ApiController) -> bool:
    return api.running


def test_the_api_switch_serves_the_engine_on_the_app_loop(
    qtbot: Any, qapp: Any, studio: Studio
) -> None:
    import asyncio
    import socket
    import urllib.request

    import qasync

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    from wan_desktop.api.server import EmbeddedServer

    api = ApiController(local(studio), EmbeddedServer)
    # A token is set, but on loopback none is asked: the React frontend sends none.
    settings = AppSettings(api_enabled=True, api_port=port, api_token="t" * 24)
    loop = qasync.QEventLoop(qapp)
    asyncio.set_event_loop(loop)

    async def scenario() -> dict[str, Any]:
        api.apply(settings)
        for _ in range(500):
            if api.running or api.error:
                break
            await asyncio.sleep(0.01)
        assert api.running, api.error
        # Never a synchronous call to our own server on the GUI thread: use a worker thread.
        url = f"{api.server.url.rstrip('/')}/api/v1/queue"
        body = await loop.run_in_executor(None, lambda: urllib.request.urlopen(url).read())
        api.apply(AppSettings(api_enabled=False))
        for _ in range(500):
            if not is_running(api):
                break
            await asyncio.sleep(0.01)
        return dict(json.loads(body))

    try:
        with loop:
            queue = loop.run_until_complete(scenario())
    finally:
        asyncio.set_event_loop(None)
    assert queue["total_tasks"] == 0
    assert not api.running


def test_the_quota_goes_where_the_orchestrator_reads_it_and_applies_at_once(
    qtbot: Any, studio: Studio, tmp_path: Path
) -> None:
    path = local(studio).models.config.settings_path
    assert path == tmp_path / "config" / "orchestrator.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('# my notes\nmax_age = "30d"\n')
    panel = settings_panel(qtbot, studio)
    wait_until(qtbot, panel.quota.isEnabled)
    assert panel.quota.text() == "no quota"
    panel.quota.setValue(300)
    assert panel.save()
    wait_until(qtbot, lambda: load_settings(path).quota_bytes == 300 * 1024**3)
    saved = load_settings(path)
    assert saved.max_age_s == 30 * 86400 and "# my notes" in path.read_text(), "the rest stays"
    wait_until(qtbot, lambda: local(studio).models.config.quota_bytes == 300 * 1024**3)
    assert "quota" not in json.loads(SettingsStore(tmp_path / "config").path.read_text())
    # A new start reads it back from the orchestrator's file.
    again = settings_panel(qtbot, studio)
    wait_until(qtbot, lambda: again.quota.isEnabled() and again.quota.value() == 300)


def test_a_quota_from_the_environment_wins_and_the_field_says_so(
    qtbot: Any, studio: Studio, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WAN_QUOTA", "50GB")
    panel = settings_panel(qtbot, studio)
    wait_until(qtbot, lambda: "WAN_QUOTA=50GB" in panel.quota_field.hint.text())
    assert not panel.quota.isEnabled()


def test_development_mode_set_elsewhere_shows_in_settings_and_save_keeps_it(
    qtbot: Any, studio: Studio, tmp_path: Path
) -> None:
    """One source of truth: the welcome card's and the banner's switch show in Settings, and
    saving Settings for something else never flips development mode back."""
    window = make_window(qtbot, studio)
    panel = window.pages["settings"]
    assert isinstance(panel, SettingsPanel)
    generate = window.pages["generate"]

    def modes() -> tuple[bool, bool, bool]:  # the app's, the form's, the saved file's
        saved = SettingsStore(tmp_path / "config").load().dev_mode
        return studio.dev_mode, panel.dev_mode.isChecked(), saved

    assert not panel.dev_mode.isChecked()
    panel.idle.setValue(7)  # an edit not saved yet survives the change made elsewhere
    generate._use_dev_mode()  # type: ignore[attr-defined]  # the welcome card's button
    assert panel.dev_mode.isChecked() and panel.idle.value() == 7
    assert panel.save()
    assert modes() == (True, True, True)
    assert studio.settings.idle_unload_min == 7

    generate.banner_btn.click()  # type: ignore[attr-defined]  # the banner's "Turn off"
    assert modes() == (False, False, False)
    panel.notifications.setChecked(not panel.notifications.isChecked())
    assert panel.save()
    assert modes() == (False, False, False), "saving something else left the mode alone"


def test_the_live_preview_is_on_by_default_and_its_interval_is_a_setting(
    qtbot: Any, studio: Studio, tmp_path: Path
) -> None:
    assert engine_settings(AppSettings(), environ={}).preview_every > 0, "on by default"
    env = {"WAN_PREVIEW_EVERY": "0"}
    assert engine_settings(AppSettings(preview_every=3), environ=env).preview_every == 0
    panel = settings_panel(qtbot, studio)
    assert panel.preview.value() == AppSettings().preview_every
    panel.preview.setValue(1)
    assert panel.save()
    assert SettingsStore(tmp_path / "config").load().preview_every == 1
    assert local(studio).settings.preview_every == 1, "applies to the running engine"
    job = studio.submit(wan_spec(prompt="a preview every step", steps=4, frames=5).params)
    wait_until(qtbot, lambda: job.id in studio.previews)
    panel.preview.setValue(0)
    assert panel.save() and local(studio).settings.preview_every == 0
    assert panel.preview.text() == "off"


def test_quitting_right_after_the_api_is_switched_off_leaves_no_traceback(
    qtbot: Any, qapp: Any, studio: Studio, caplog: pytest.LogCaptureFixture, capfd: Any
) -> None:
    """The app's loop ends only once the API has really stopped (its event stream's pinger
    and WebSocket tasks included): nothing pending is destroyed at exit, nothing printed."""
    import asyncio
    import gc
    import logging

    import qasync

    from wan_desktop.api.server import EmbeddedServer

    api = ApiController(local(studio), EmbeddedServer)
    loop = qasync.QEventLoop(qapp)
    asyncio.set_event_loop(loop)

    async def scenario() -> None:
        api.apply(AppSettings(api_enabled=True, api_port=0, api_token="t" * 24))
        for _ in range(500):
            if api.running or api.error:
                break
            await asyncio.sleep(0.01)
        assert api.running, api.error
        api.apply(AppSettings(api_enabled=False))  # switched off…
        await asyncio.sleep(0)
        await api.stop()  # …and the app quits at once (Session.close)
        assert not api.running

    caplog.set_level(logging.DEBUG)
    try:
        with loop:
            loop.run_until_complete(scenario())
    finally:
        asyncio.set_event_loop(None)
    gc.collect()  # a task left pending says so when it is collected
    logged = "\n".join(r.getMessage() + (r.exc_text or "") for r in caplog.records)
    printed = capfd.readouterr().err
    for text in (logged, printed):
        assert "Traceback" not in text and "was destroyed but it is pending" not in text, text
