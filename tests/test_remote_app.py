"""The real app driving a real ``wan serve --mock`` subprocess (``wan-desktop --connect``):
jobs with live steps, an uploaded image, cancel, the video played from the cache; a kill -9 of
the server; clear messages for servers that cannot be used; switching engines without restart."""

from __future__ import annotations

import argparse
import logging
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.api_helpers import WanServe, image_bytes
from tests.engine_helpers import wan_spec
from tests.remote_helpers import TOKEN, free_port, not_wan_server, serve
from tests.test_remote_engine import server_job
from tests.ui_helpers import app_env, wait_until
from wan_desktop.engine import Engine, JobKind, JobSpec, JobState
from wan_desktop.remote import RemoteEngine
from wan_desktop.ui.app import Session, run
from wan_desktop.ui.config import AppSettings, SettingsStore
from wan_desktop.ui.engines import EngineChoice
from wan_desktop.ui.panels.gallery import GalleryPanel
from wan_desktop.ui.panels.settings import SettingsPanel


def app_args(**kw: Any) -> argparse.Namespace:
    base = {
        "connect": None,
        "token": None,
        "mock": True,
        "dev": False,
        "api": False,
        "self_test": True,  # no confirmation on quit, no library import
        "check_engine": False,
    }
    return argparse.Namespace(**{**base, **kw})


@pytest.fixture
def app_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for key, value in app_env(tmp_path / "app").items():
        if key.startswith(("WAN_", "MODELS_ROOT", "PYTHON_KEYRING")):
            monkeypatch.setenv(key, value)
    return tmp_path / "app"


@contextmanager
def session_for(qtbot: Any, args: argparse.Namespace) -> Iterator[Session]:
    session = Session(args, started=0.0, api_factory=None)
    session.window.show()
    session._start_engine()
    try:
        yield session
    finally:
        session.window.confirm_quit = False
        session.window.close()
        session.studio.close()
        session.engine.shutdown()


def test_the_app_on_a_server_runs_cancels_plays_and_survives_a_server_kill(
    qtbot: Any, tmp_path: Path, app_folders: Path
) -> None:
    port = free_port()
    server = serve(tmp_path / "server", port=port)
    try:
        with session_for(qtbot, app_args(connect=server.url, token=TOKEN)) as session:
            studio, window = session.studio, session.window
            assert isinstance(studio.engine, RemoteEngine)
            wait_until(qtbot, lambda: studio.link is not None and studio.link.state == "up")
            assert window.engine_status.text() == f"Engine: {server.url}  ·  connected"

            t2v = studio.submit(wan_spec(steps=6).params)
            picture = tmp_path / "first.png"
            picture.write_bytes(image_bytes())
            i2v = studio.submit(wan_spec(model="I2V-A14B", image=str(picture), steps=3).params)
            doomed = studio.submit(wan_spec(steps=100).params)
            wait_until(qtbot, lambda: (studio.jobs[t2v.id].step or 0) >= 1, 60)
            wait_until(qtbot, lambda: studio.jobs[doomed.id].state.active, 60)
            studio.job_command("cancel", doomed.id)
            wait_until(qtbot, lambda: studio.jobs[doomed.id].state is JobState.cancelled, 60)
            done = (t2v.id, i2v.id)
            wait_until(qtbot, lambda: all(studio.jobs[i].state.finished for i in done), 60)
            assert [studio.jobs[i].state for i in done] == [JobState.completed] * 2
            assert server_job(server.url, doomed.id)["state"] == "cancelled"

            window.show_page(f"gallery:{i2v.id}")
            gallery = window.pages["gallery"]
            assert isinstance(gallery, GalleryPanel) and gallery.player is not None
            played = Path(gallery.player.player.source().toLocalFile())
            assert played.is_relative_to(app_folders), "it plays the local cache"
            remote = server_job(server.url, i2v.id)["output"]["video"]
            assert played.read_bytes() == Path(remote).read_bytes()

            running = studio.submit(wan_spec(steps=100).params)
            wait_until(qtbot, lambda: studio.jobs[running.id].state.active, 60)
            server.stop(sig=signal.SIGKILL)
            wait_until(qtbot, lambda: studio.link is not None and studio.link.state != "up", 30)
            assert "reconnecting" in window.engine_status.text() or "down" in (
                window.engine_status.text()
            )
            server = serve(tmp_path / "server", port=port)
            wait_until(qtbot, lambda: studio.link is not None and studio.link.state == "up", 60)
            wait_until(qtbot, lambda: studio.jobs[running.id].state is JobState.interrupted, 30)
            for job_id in (t2v.id, i2v.id, doomed.id, running.id):
                assert str(studio.jobs[job_id].state) == server_job(server.url, job_id)["state"]
            assert window.engine_status.text().endswith("connected")
    finally:
        server.stop()


def test_a_server_that_cannot_be_used_is_a_clear_message_without_a_traceback(
    qtbot: Any,
    tmp_path: Path,
    app_folders: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    with serve(tmp_path / "server") as server:
        assert run(app_args(connect=server.url, token="wrong-token-wrong-token")) == 1
        assert "refused the access token" in capsys.readouterr().err
    assert run(app_args(connect=f"127.0.0.1:{free_port()}", token=TOKEN)) == 1
    assert "cannot reach the server" in capsys.readouterr().err
    with not_wan_server() as url:
        assert run(app_args(connect=url, token=TOKEN)) == 1
        assert "not a Wan Desktop server" in capsys.readouterr().err
    assert "Traceback" not in caplog.text


def test_settings_switch_between_this_computer_and_a_server_without_restart(
    qtbot: Any, qapp: Any, tmp_path: Path, app_folders: Path
) -> None:
    import qasync

    with serve(tmp_path / "server") as server, session_for(qtbot, app_args()) as session:
        assert session.window.engine_status.text() == "Engine: this computer"
        session.window.show_page("settings")
        page = session.window.pages["settings"]
        assert isinstance(page, SettingsPanel)
        card = page.engine_card
        assert card.local.isChecked() and not card.use_btn.isEnabled(), "already on it"
        card.server.setChecked(True)
        assert card.use_btn.isEnabled() and card.use_btn.text() == "Connect"
        card.address.setText(server.url)
        card.token.setText("wrong-token-wrong-token")
        card.test_btn.click()
        wait_until(qtbot, lambda: "refused the access token" in card.result.text(), 30)
        card.token.setText(TOKEN)
        card.test_btn.click()
        wait_until(qtbot, lambda: card.result.text().startswith("OK: Wan Desktop"), 30)

        loop = qasync.QEventLoop(qapp)
        try:
            choice = card.wanted()
            assert loop.run_until_complete(session.switch_engine(choice))
            assert isinstance(session.engine, RemoteEngine)
            wait_until(qtbot, lambda: session.window.engine_status.text().endswith("connected"))
            job = session.studio.submit(wan_spec(steps=2).params)
            wait_until(qtbot, lambda: session.studio.jobs[job.id].state is JobState.completed, 60)
            assert server_job(server.url, job.id)["state"] == "completed"
            assert loop.run_until_complete(session.switch_engine(EngineChoice()))
            assert session.window.engine_status.text() == "Engine: this computer"
            assert job.id not in session.studio.jobs, "this computer's own queue again"
        finally:
            loop.close()


def test_submitting_a_large_image_over_a_slow_link_never_blocks_the_window(
    qtbot: Any, tmp_path: Path, app_folders: Path
) -> None:
    """The job goes to the server off the GUI thread: the window keeps turning (a timer ticks)
    while the image crawls up the link, the button says so, and the job then shows."""
    import random

    from PySide6.QtCore import QTimer
    from PySide6.QtGui import QColor, QImage

    from tests.netproxy import LinkProxy
    from wan_desktop.ui.panels.generate import GeneratePanel

    rng = random.Random(5)
    picture = QImage(1400, 1400, QImage.Format.Format_RGB32)
    for y in range(0, 1400, 2):  # noise that PNG cannot squeeze: several MB to send
        for x in range(0, 1400, 2):
            picture.setPixelColor(x, y, QColor(rng.randrange(1 << 24)))
    path = tmp_path / "large.png"
    assert picture.save(str(path))
    size = path.stat().st_size
    assert size > 1_500_000
    up_bps = size / 4.0  # about four seconds on the way up
    with (
        serve(tmp_path / "server") as server,
        LinkProxy(int(server.url.rsplit(":", 1)[1]), rate_bps=50e6, up_bps=up_bps) as proxy,
        session_for(qtbot, app_args(connect=proxy.endpoint, token=TOKEN)) as session,
    ):
        studio, window = session.studio, session.window
        wait_until(qtbot, lambda: studio.link is not None and studio.link.state == "up")
        window.show_page("generate")
        gen = window.pages["generate"]
        assert isinstance(gen, GeneratePanel)
        wait_until(qtbot, lambda: studio.catalog_loaded, 30)
        gen.select_model("I2V-A14B")
        gen.prompt.setPlainText("a tide pool at noon")
        gen.steps.setValue(2)
        gen.frames.setValue(5)
        gen.image.set_path(str(path))
        ticks: list[int] = []
        timer = QTimer()
        timer.timeout.connect(lambda: ticks.append(1))
        timer.start(50)
        try:
            gen.generate_btn.click()
            assert not studio.jobs, "the click returned before the job reached the server"
            assert gen.generate_btn.text() == "Sending…" and not gen.generate_btn.isEnabled()
            before = len(ticks)
            wait_until(qtbot, lambda: len(studio.jobs) == 1, 120)
            in_flight = len(ticks) - before
        finally:
            timer.stop()
        assert in_flight >= 10, f"the timer ticked {in_flight} times while the job was sent"
        # The job's own event may reach the app just before the engine's answer to the submit.
        wait_until(qtbot, lambda: gen.generate_btn.text() == "Generate", 30)
        assert gen.generate_btn.isEnabled()
        (job,) = studio.jobs.values()
        assert job.params["image"] != str(path), "the server's copy of the image"
        assert server_job(server.url, job.id)["id"] == job.id
        assert proxy.link.bytes > 0


def test_the_explainer_page_shows_the_servers_language_model_never_its_key(
    qtbot: Any, tmp_path: Path, app_folders: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The explainer runs on the server: its page shows the server's settings (from the hello),
    not this computer's environment, and the server's API key never travels."""
    import httpx

    from wan_desktop.ui.panels.explainer import ExplainerPanel

    monkeypatch.setenv("LLM_BASE_URL", "http://127.0.0.1:9/v1")  # this computer's: not used
    monkeypatch.setenv("PLANNER_MODEL", "laptop-model")
    env = {
        "WAN_API_TOKEN": TOKEN,
        "LLM_BASE_URL": "http://10.0.0.7:11434/v1",
        "PLANNER_MODEL": "server-planner",
        "LLM_API_KEY": "sk-server-secret-0123",
        "MAX_FIX_ATTEMPTS": "2",
    }
    with WanServe(tmp_path / "server", env=env) as server:
        hello = httpx.get(
            f"{server.url}/api/v1/engine/hello", headers={"Authorization": f"Bearer {TOKEN}"}
        )
        assert "sk-server-secret" not in hello.text
        with session_for(qtbot, app_args(connect=server.url, token=TOKEN)) as session:
            page = session.window.pages["explain"]
            assert isinstance(page, ExplainerPanel)
            assert page.writer_badge.text() == "MODEL: server-planner"
            assert page.llm_values["LLM_BASE_URL"].text() == "http://10.0.0.7:11434/v1"
            assert page.llm_values["LLM_API_KEY"].text() == "set (hidden)"
            assert "up to 2 tries" in page.writer_note.text()
    bad = {"WAN_API_TOKEN": TOKEN, "DEFAULT_QUALITY": "cinematic"}
    with (
        WanServe(tmp_path / "bad", env=bad) as server,
        session_for(qtbot, app_args(connect=server.url, token=TOKEN)) as session,
    ):
        page = session.window.pages["explain"]
        assert isinstance(page, ExplainerPanel)
        assert page.writer_badge.text() == "MISCONFIGURED"
        assert "DEFAULT_QUALITY='cinematic'" in page.writer_note.text()


def test_the_system_page_shows_the_servers_gpu_and_this_computers_ram_and_cpu(
    qtbot: Any, tmp_path: Path, app_folders: Path
) -> None:
    import psutil

    from tests.test_ui_system import sample
    from wan_desktop.ui.panels.system import SystemPanel

    with (
        serve(tmp_path / "server") as server,
        session_for(qtbot, app_args(connect=server.url, token=TOKEN)) as session,
    ):
        studio, window = session.studio, session.window
        system = window.pages["system"]
        assert isinstance(system, SystemPanel)
        assert system.ram.title.text() == "RAM  ·  this computer"
        assert system.cpu.title.text() == "CPU  ·  this computer"
        assert system.gpu.title.text() == "GPU load  ·  server"
        here_total = f"{psutil.virtual_memory().total / 1024**3:.1f} GiB"
        wait_until(qtbot, lambda: system.ram.value.text().endswith(f" / {here_total}"), 30)
        wait_until(qtbot, lambda: system.cpu.value.text().endswith("%"), 30)
        studio._on_memory(sample(92.0))  # a sample of the server's: a 24 GB GPU, 32 GiB of RAM
        assert system.gauge.percent == pytest.approx(92.0)
        assert "22.1 of 24.0 GiB" in system.gauge.caption
        assert system.gpu.value.text() == "63%"
        assert system.ram.value.text().endswith(f" / {here_total}"), "this computer's RAM"
        assert list(system.history.history["VRAM"]) == [pytest.approx(92.0)]
        assert 25.0 not in system.history.history["RAM"], "the server's RAM is not this one's"


def test_the_models_page_on_a_server_shows_its_disk_and_cleans_it_up_as_wan_models_gc(
    qtbot: Any, tmp_path: Path, app_folders: Path, tiny_models_root: Path
) -> None:
    """The server's models folder: its use, free space, quota, pins; Clean up previews and
    removes on the server by the code ``wan models gc`` runs there (the same answer)."""
    import json
    import os
    import shutil
    import subprocess
    import sys

    from tests.helpers import REAL_MANIFEST, ROOT
    from wan_desktop.ui.cleanup import CleanupDialog
    from wan_desktop.ui.panels.models import ModelsPanel

    root = tmp_path / "server" / "models"
    shutil.copytree(tiny_models_root, root, symlinks=True)
    env = {"WAN_API_TOKEN": TOKEN, "WAN_DEV_MODE": "1"}
    t2v, i2v, ti2v = ((f"{m}@2.2.0", "tiny") for m in ("t2v-A14B", "i2v-A14B", "ti2v-5B"))
    with (
        WanServe(tmp_path / "server", env=env) as server,
        session_for(qtbot, app_args(connect=server.url, token=TOKEN)) as session,
    ):
        studio, window = session.studio, session.window
        window.show_page("models")
        models = window.pages["models"]
        assert isinstance(models, ModelsPanel)
        wait_until(qtbot, lambda: t2v in models.rows and studio.disk is not None, 30)
        models.rows[t2v].pin_btn.click()
        wait_until(qtbot, lambda: "1 pinned" in models.disk_text.text(), 30)
        disk = studio.disk
        assert disk is not None and disk.models_root == root, "the server's folder"
        assert disk.total_bytes > 0 and disk.free_bytes > 0 and disk.quota_bytes is None
        row = studio.row(*ti2v)
        assert row is not None and row.disk_bytes > 0 and row.usage is not None

        view = studio.engine.models_view
        view.set_quota(40 * 1024**3)  # saved on the server, in force there at once
        assert view.saved_quota() == 40 * 1024**3 and view.quota_bytes == 40 * 1024**3
        cli_env = {
            **os.environ,
            "MODELS_ROOT": str(root),
            "WAN_DATA_DIR": str(tmp_path / "server" / "data"),
            "WAN_MODELS_MANIFEST": str(REAL_MANIFEST),
            "WAN_DEV_MODE": "1",
        }
        gc_args = ("models", "gc", "--max-size", "0", "--dry-run", "--json")
        cli = subprocess.run(
            [sys.executable, "-m", "wan_desktop.cli", *gc_args],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=cli_env,
            timeout=120,
            check=True,
        )
        by_cli = json.loads(cli.stdout)

        dialog = CleanupDialog(studio, window)
        qtbot.addWidget(dialog)
        wait_until(qtbot, lambda: dialog.report is not None, 30)
        assert dialog.limit.value() == 40.0, "it opens at the server's quota"
        dialog.limit.setValue(0)
        wait_until(qtbot, dialog.remove_btn.isEnabled, 30)
        report = dialog.report
        assert report is not None and report.dry_run
        removed = sorted((d.model_id, d.variant) for d in report.removed)
        assert removed == sorted([i2v, ti2v])
        assert [d.dir_name for d in report.removed] == [d["dir_name"] for d in by_cli["removed"]]
        assert {d.model_id: d.reason for d in report.kept} == {t2v[0]: "pinned"}
        dialog.remove_btn.click()
        wait_until(
            qtbot, lambda: any(n.title == "Models cleaned up" for n in window.toasts.history), 30
        )
        wait_until(qtbot, lambda: models.rows[ti2v].state.text() == "Not built yet", 30)
        after = {r.key: r.status.complete for r in view.catalog().rows}
        assert after == {t2v: True, i2v: False, ti2v: False}


def test_a_remembered_server_that_is_gone_leaves_the_app_on_this_computer_and_says_so(
    qtbot: Any, tmp_path: Path, app_folders: Path
) -> None:
    store = SettingsStore(app_folders / "config")
    store.save(AppSettings(engine_url=f"http://127.0.0.1:{free_port()}", welcomed=True))
    with session_for(qtbot, app_args()) as session:
        assert isinstance(session.engine, Engine)
        assert session.window.engine_status.text() == "Engine: this computer"
        notices = [n for n in session.window.toasts.history if n.kind == "error"]
        assert [n.title for n in notices] == ["Could not connect to the server"]
        assert "cannot reach the server" in notices[0].message
        assert session.studio.settings.engine_url, "the choice stays for the next start"


def test_a_video_made_before_the_app_connected_is_fetched_when_shown(
    qtbot: Any, tmp_path: Path, app_folders: Path
) -> None:
    with serve(tmp_path / "server") as server:
        with RemoteEngine(server.url, TOKEN, data_dir=tmp_path / "elsewhere") as other:
            job = other.submit(JobSpec(kind=JobKind.wan, params=wan_spec(steps=2).params))
            wait_until(qtbot, lambda: other.get(job.id).state is JobState.completed, 60)
        with session_for(qtbot, app_args(connect=server.url, token=TOKEN)) as session:
            studio, window = session.studio, session.window
            wait_until(qtbot, lambda: job.id in studio.jobs)
            listed = studio.jobs[job.id].output
            assert listed is not None
            video = Path(listed.video)
            assert video.is_relative_to(app_folders) and not video.exists(), "not fetched yet"
            wait_until(qtbot, lambda: Path(studio.jobs[job.id].output.thumbnail).is_file())  # type: ignore[arg-type, union-attr]
            window.show_page(f"gallery:{job.id}")
            gallery = window.pages["gallery"]
            assert isinstance(gallery, GalleryPanel)
            wait_until(
                qtbot,
                lambda: (
                    gallery.player is not None
                    and gallery.player.player.source().toLocalFile() == str(video)
                ),
                60,
            )
            remote = server_job(server.url, job.id)["output"]["video"]
            assert video.read_bytes() == Path(remote).read_bytes()


def test_the_app_on_wan_dev_serve_runs_a_real_tiny_model_job(
    qtbot: Any, tmp_path: Path, app_folders: Path
) -> None:
    """No mock: the server builds the tiny T2V-A14B and runs the real pipeline on it."""
    env = {"WAN_API_TOKEN": TOKEN, "WAN_DEV_MODE": "1"}
    with (
        WanServe(tmp_path / "server", env=env, mock=False) as server,
        session_for(qtbot, app_args(connect=server.url, token=TOKEN, mock=False)) as session,
    ):
        studio, window = session.studio, session.window
        wait_until(qtbot, lambda: studio.link is not None and studio.link.state == "up")
        assert studio.dev_mode and not studio.mock, "the server's mode shows in the app"
        params = wan_spec(steps=2, frames=5, resolution="160x96", seed=7).params
        job = studio.submit(params)
        wait_until(qtbot, lambda: studio.jobs[job.id].finished, 240)
        done = studio.jobs[job.id]
        assert done.state is JobState.completed, done.failure
        assert done.development and done.total_steps == 2
        window.show_page(f"gallery:{job.id}")
        gallery = window.pages["gallery"]
        assert isinstance(gallery, GalleryPanel) and gallery.player is not None
        played = Path(gallery.player.player.source().toLocalFile())
        remote = server_job(server.url, job.id)["output"]["video"]
        assert played.is_relative_to(app_folders)
        assert played.read_bytes() == Path(remote).read_bytes()
        key = ("t2v-A14B@2.2.0", "tiny")
        wait_until(qtbot, lambda: (r := studio.row(*key)) is not None and r.status.complete, 30)
