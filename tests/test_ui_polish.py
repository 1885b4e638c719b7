"""Small things a newcomer reads: a status line that ends in … instead of being cut, the Verify
toast's numbers, development models described as built here with one size on every page, and
Settings fields that an environment variable decides."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tests.engine_helpers import ScriptedPipeline, engine_settings, mock_engine
from tests.ui_helpers import layout_problems, make_window, studio_for, wait_until
from wan_desktop.engine import Engine, JobState, simulated_profile
from wan_desktop.engine.context import JobContext
from wan_desktop.engine.jobs import JobOutput
from wan_desktop.ui import format as fmt
from wan_desktop.ui import theme
from wan_desktop.ui.cleanup import CleanupDialog
from wan_desktop.ui.panels.generate import GeneratePanel
from wan_desktop.ui.panels.models import ModelsPanel
from wan_desktop.ui.panels.settings import SettingsPanel
from wan_desktop.ui.widgets import Badge

LONG_STAGE = (
    "reading the transformer weights from the network share mounted at /mnt/studio/models, "
    "then moving both experts to the GPU in bf16 with model offload"
)


def _loading_until_cancelled(ctx: JobContext) -> JobOutput:
    ctx.set_state(JobState.loading)
    ctx.stage("loading", 0.1, LONG_STAGE)
    while not ctx.cancelled:
        ctx.cancel_token.wait(0.05)
    ctx.check_cancelled()
    raise AssertionError("cancelled jobs stop above")


def test_the_latest_cards_status_line_ends_in_an_ellipsis_when_it_is_too_long(
    qtbot: Any, tmp_path: Path
) -> None:
    engine = mock_engine(
        tmp_path, mock=False, pipelines=[ScriptedPipeline(_loading_until_cancelled)]
    )
    with studio_for(engine, tmp_path / "config") as studio:
        window = make_window(qtbot, studio)
        window.setFont(theme.ui_font())
        window.setStyleSheet(theme.stylesheet())
        window.resize(1024, 700)
        window.show_page("generate")
        page = window.pages["generate"]
        assert isinstance(page, GeneratePanel)
        job = studio.submit({"prompt": "a fox"})
        wait_until(qtbot, lambda: studio.jobs[job.id].stage_message == LONG_STAGE)
        card = page.now.card
        assert card is not None
        wait_until(qtbot, lambda: LONG_STAGE in card.status.full_text())
        qtbot.wait(50)
        shown = card.status.text()
        assert shown.endswith("…") and shown[:-1] in card.status.full_text(), shown
        assert card.status.fontMetrics().horizontalAdvance(shown) <= card.status.width()
        assert card.status.toolTip() == card.status.full_text(), "the whole line on hover"
        assert layout_problems(window) == []
        studio.engine.cancel(job.id)
        wait_until(qtbot, lambda: studio.jobs[job.id].finished)


def test_the_verify_toast_shows_a_time_and_rate_only_when_measured(
    qtbot: Any, tmp_path: Path, tiny_models_root: Path
) -> None:
    from wan_desktop.ui.panels.models import verified_text

    root = tmp_path / "models"
    shutil.copytree(tiny_models_root, root, symlinks=True)
    settings = engine_settings(tmp_path)
    settings = replace(settings, models=replace(settings.models, models_root=root, dev_mode=True))
    engine = Engine(settings, hardware=simulated_profile(0))
    with studio_for(engine, tmp_path / "config") as studio:
        window = make_window(qtbot, studio)
        models = window.pages["models"]
        assert isinstance(models, ModelsPanel)
        window.show_page("models")
        key = ("t2v-A14B@2.2.0", "tiny")
        wait_until(qtbot, lambda: key in models.rows and models.rows[key].verify_btn.isVisible())
        models.rows[key].verify_btn.click()
        wait_until(qtbot, lambda: any(n.title == "Verified" for n in window.toasts.history))
        report = engine.models.verify(*key)
        (toast,) = [n for n in window.toasts.history if n.title == "Verified"]
        assert toast.message.startswith(f"{key[0]} (tiny): {len(report.checked)} files, ")
        instant = verified_text(replace(report, seconds=0.0))
        assert " in " not in instant and "/s" not in instant and "0.0" not in instant, instant
        assert instant.endswith("checked")
        timed = verified_text(replace(report, seconds=0.5))
        rate = fmt.speed(report.bytes_hashed / 0.5).replace(" ", "\u00a0")
        assert timed.endswith(f" in 0.5\u00a0s ({rate})"), timed
        assert fmt.speed(0) == "" and fmt.speed(None) == ""


def test_development_models_read_as_built_here_with_one_size_on_every_page(
    qtbot: Any, tmp_path: Path, tiny_models_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """They said "Not downloaded … 436 KB to download", and a built one weighed 471 KB on one
    page and 475 KB on another (the files, or the folder)."""
    root = tmp_path / "models"
    shutil.copytree(tiny_models_root, root, symlinks=True)
    settings = engine_settings(tmp_path)
    settings = replace(settings, models=replace(settings.models, models_root=root, dev_mode=True))
    engine = Engine(settings, hardware=simulated_profile(0))
    engine.models.delete("ti2v-5B@2.2.0", "tiny")
    built, missing = ("i2v-A14B@2.2.0", "tiny"), ("ti2v-5B@2.2.0", "tiny")
    with studio_for(engine, tmp_path / "config") as studio:
        window = make_window(qtbot, studio)
        models = window.pages["models"]
        generate = window.pages["generate"]
        assert isinstance(models, ModelsPanel) and isinstance(generate, GeneratePanel)
        wait_until(qtbot, lambda: studio.catalog_loaded and missing in models.rows)
        qtbot.wait(50)
        # Not built yet: no download, on the Models page as on the Generate page.
        row = models.rows[missing]
        assert row.state.text() == "Not built yet"
        want = fmt.size(studio.row(*missing).size_bytes)  # type: ignore[union-attr]
        assert row.size_label.text() == f"{want}, built here"
        assert "download" not in row.size_label.text().lower()
        assert row.download_btn.text() == "Build"
        assert generate.picker.tiles[missing[0]].status.text() == f"builds here · {want}"

        # Built: the size is the folder's, as Clean up and the disk usage count it.
        usage = next(m for m in engine.models.disk_usage().models if m.model_id == built[0])
        size = fmt.size(usage.bytes)
        assert models.rows[built].size_label.text() == f"{size} on disk"
        assert generate.picker.tiles[built[0]].status.text() == f"ready · {size} · dev"
        dialog = CleanupDialog(studio, window)
        qtbot.addWidget(dialog)
        dialog.limit.setValue(0)
        wait_until(qtbot, dialog.remove_btn.isEnabled)
        items = [dialog.items.item(i).text() for i in range(dialog.items.count())]
        assert any(built[0] in t and t.split("\n")[0].endswith(size) for t in items), items
        dialog.close()
        monkeypatch.setattr("wan_desktop.ui.widgets.confirm", lambda *_a: True)  # "Delete"
        models.rows[built].delete_btn.click()
        wait_until(qtbot, lambda: any(n.title == "Model deleted" for n in window.toasts.history))
        (deleted,) = [n for n in window.toasts.history if n.title == "Model deleted"]
        assert deleted.message == f"{size} freed"


def test_settings_fields_an_environment_variable_decides_say_which_and_stay_read_only(
    qtbot: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from wan_desktop.ui.config import AppSettings

    env = {
        "MODELS_ROOT": str(tmp_path / "env-models"),
        "WAN_OUTPUTS_DIR": str(tmp_path / "env-outputs"),
        "WAN_IDLE_UNLOAD_S": "120",
        "WAN_DEV_MODE": "1",
        "WAN_DATA_DIR": str(tmp_path / "data"),
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    saved = AppSettings(welcomed=True, models_dir=str(tmp_path / "mine"), idle_unload_min=7)
    engine = mock_engine(tmp_path)
    with studio_for(engine, tmp_path / "config", saved) as studio:
        window = make_window(qtbot, studio)
        window.show_page("settings")
        page = window.pages["settings"]
        assert isinstance(page, SettingsPanel)
        for name, field, edit, var in (
            ("models_dir", page.models_field, page.models_dir, "MODELS_ROOT"),
            ("outputs_dir", page.outputs_field, page.outputs_dir, "WAN_OUTPUTS_DIR"),
            ("idle_unload_min", page.idle_field, page.idle, "WAN_IDLE_UNLOAD_S"),
        ):
            assert not edit.isEnabled(), name
            assert f"{var}={env[var]}" in field.hint.text() and "Read-only" in field.hint.text()
            badges = [b.text() for b in field.findChildren(Badge)]
            assert badges == [f"set by {var}"], (name, badges)
        assert not page.dev_mode.isEnabled()
        assert "WAN_DEV_MODE=1" in page.dev_mode_note.text() and page.dev_mode_note.isVisible()
        assert "set by WAN_DATA_DIR" in page.data_dir.text()
        # The user's own values stay: Save does not write the environment's over them.
        assert page.models_dir.text() == str(tmp_path / "mine")
        page.api_origins.setText("http://localhost:5173")
        assert page.save()
        assert studio.settings.models_dir == str(tmp_path / "mine")
        assert studio.settings.idle_unload_min == 7


def test_settings_fields_are_editable_without_the_environment(
    qtbot: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for k in ("MODELS_ROOT", "WAN_OUTPUTS_DIR", "WAN_IDLE_UNLOAD_S", "WAN_DEV_MODE"):
        monkeypatch.delenv(k, raising=False)
    with studio_for(mock_engine(tmp_path), tmp_path / "config") as studio:
        window = make_window(qtbot, studio)
        page = window.pages["settings"]
        assert isinstance(page, SettingsPanel)
        assert page.models_dir.isEnabled() and page.outputs_dir.isEnabled()
        assert page.idle.isEnabled() and page.dev_mode.isEnabled()
        assert not page.models_field.findChildren(Badge)
        assert not page.dev_mode_note.isVisibleTo(page)


def test_building_a_development_model_reads_as_building_not_downloading(
    qtbot: Any, tmp_path: Path
) -> None:
    settings = engine_settings(tmp_path)
    settings = replace(settings, models=replace(settings.models, dev_mode=True))
    engine = Engine(settings, hardware=simulated_profile(0))
    key = ("ti2v-5B@2.2.0", "tiny")
    with studio_for(engine, tmp_path / "config") as studio:
        window = make_window(qtbot, studio)
        models = window.pages["models"]
        generate = window.pages["generate"]
        assert isinstance(models, ModelsPanel) and isinstance(generate, GeneratePanel)
        window.show_page("models")
        wait_until(qtbot, lambda: key in models.rows and models.rows[key].download_btn.isVisible())
        seen: list[tuple[str, str, str]] = []
        studio.download_changed.connect(
            lambda _p: seen.append(
                (
                    models.rows[key].state.text(),
                    models.rows[key].progress_text.text(),
                    generate.picker.tiles[key[0]].status.text(),
                )
            )
        )
        models.rows[key].download_btn.click()
        wait_until(qtbot, lambda: models.rows[key].state.text() == "Ready", timeout=120)
        assert seen, "progress was shown"
        for badge, progress, tile in seen:
            assert badge.startswith("Building") and "download" not in progress, (badge, progress)
            assert not tile.startswith("downloading"), tile


def test_a_videos_length_reads_one_way_on_cards_and_in_the_player() -> None:
    """A 25.5 s video was "26s video" on its card and 0:25 in the player."""
    assert fmt.clock(25.5) == "0:25" and fmt.clock(25.9) == "0:25"
    assert fmt.clock(11.999) == fmt.clock(12.0) == "0:12", "frames and container agree"
    assert fmt.clock(0, 25.5) == "0:00" and fmt.clock(5.3, 25.5) == "0:05"
    assert fmt.clock(1.0625) == "1.0 s" and fmt.clock(0.4, 1.0625) == "0.4 s"
    assert fmt.clock(75.2) == "1:15" and fmt.clock(None) == "—"
