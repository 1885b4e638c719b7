"""The Models panel: a download from a local source with a moving bar, cancel, verify, delete,
pins, what is in use, and a clean-up previewed before it removes anything."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tests.engine_helpers import engine_settings
from tests.helpers import (
    SYNTH_ID,
    SlowLocalSource,
    make_synth_folder,
    synth_model_entry,
    write_manifest,
)
from tests.ui_helpers import layout_problems, local, make_window, studio_for, wait_until
from wan_desktop.engine import Engine, simulated_profile
from wan_desktop.models import ModelState
from wan_desktop.models import sources as model_sources
from wan_desktop.ui import format as fmt
from wan_desktop.ui import theme
from wan_desktop.ui.cleanup import CleanupDialog
from wan_desktop.ui.panels.models import ModelsPanel
from wan_desktop.ui.state import Studio


class ThrottledLocal(SlowLocalSource):
    chunk = 256 * 1024
    delay_s = 0.03


def shown(models: ModelsPanel, key: tuple[str, str], button: str) -> bool:
    row = models.rows.get(key)
    return row is not None and getattr(row, button).isVisibleTo(models)


@pytest.fixture
def synth_studio(qtbot: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Studio]:
    monkeypatch.setitem(model_sources._FACTORIES, "local", ThrottledLocal)
    folder = make_synth_folder(tmp_path / "mirror", {"transformer/w-00001.safetensors": 6_000_000})
    manifest = write_manifest(
        tmp_path / "models.toml",
        {SYNTH_ID: synth_model_entry([f"local://{folder.path}"], folder.manifest_files())},
    )
    settings = engine_settings(tmp_path)
    settings = replace(settings, models=replace(settings.models, manifest_path=manifest))
    engine = Engine(settings, hardware=simulated_profile(0))
    with studio_for(engine, tmp_path / "config") as studio:
        yield studio


def test_a_download_from_a_local_source_moves_the_bar_and_ends_ready(
    qtbot: Any, synth_studio: Studio
) -> None:
    studio = synth_studio
    window = make_window(qtbot, studio)
    models = window.pages["models"]
    assert isinstance(models, ModelsPanel)
    window.show_page("models")
    studio.refresh_catalog()
    # New rows are shown by a queued event: wait for what the user would see.
    wait_until(qtbot, lambda: shown(models, (SYNTH_ID, "full"), "download_btn"))
    row = models.rows[(SYNTH_ID, "full")]
    assert row.state.text() == "Not downloaded" and row.download_btn.isVisibleTo(models)
    seen: list[int] = []
    studio.download_changed.connect(
        lambda _p: seen.append(models.rows[(SYNTH_ID, "full")].bar.value())
    )
    row.download_btn.click()
    assert row.cancel_btn.isVisibleTo(models) and not row.download_btn.isVisibleTo(models)
    wait_until(qtbot, lambda: models.rows[(SYNTH_ID, "full")].state.text() == "Ready", timeout=60)
    moving = sorted({v for v in seen if 0 < v < 1000})
    assert len(moving) >= 3, f"the bar moved through the download: {seen}"
    assert seen == sorted(seen) or max(seen) == 1000
    row = models.rows[(SYNTH_ID, "full")]
    assert not row.progress_box.isVisibleTo(models) and row.verify_btn.isVisibleTo(models)
    assert "on disk" in row.size_label.text()
    assert any(n.title == "Model ready" for n in window.toasts.history)


def test_a_download_can_be_cancelled_and_resumed_later(qtbot: Any, synth_studio: Studio) -> None:
    studio = synth_studio
    window = make_window(qtbot, studio)
    models = window.pages["models"]
    assert isinstance(models, ModelsPanel)
    studio.refresh_catalog()
    wait_until(qtbot, lambda: shown(models, (SYNTH_ID, "full"), "download_btn"))
    models.rows[(SYNTH_ID, "full")].download_btn.click()
    wait_until(qtbot, lambda: models.rows[(SYNTH_ID, "full")].bar.value() > 0)
    models.rows[(SYNTH_ID, "full")].cancel_btn.click()
    wait_until(qtbot, lambda: not studio.engine.downloads())
    wait_until(qtbot, lambda: models.rows[(SYNTH_ID, "full")].status_state() is ModelState.partial)
    row = models.rows[(SYNTH_ID, "full")]
    assert row.download_btn.text() == "Resume" and row.download_btn.isVisibleTo(models)
    assert not any(n.title == "Download failed" for n in window.toasts.history)


def test_verify_and_delete_a_model(
    qtbot: Any, tmp_path: Path, tiny_models_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[str] = []

    def confirm(_parent: object, title: str, _text: str, _action: str) -> bool:
        asked.append(title)
        return True

    monkeypatch.setattr("wan_desktop.ui.widgets.confirm", confirm)
    root = tmp_path / "models"
    shutil.copytree(tiny_models_root, root, symlinks=True)
    settings = engine_settings(tmp_path)
    settings = replace(settings, models=replace(settings.models, models_root=root, dev_mode=True))
    engine = Engine(settings, hardware=simulated_profile(0))
    with studio_for(engine, tmp_path / "config") as studio:
        window = make_window(qtbot, studio)
        models = window.pages["models"]
        assert isinstance(models, ModelsPanel)
        studio.refresh_catalog()
        key = ("t2v-A14B@2.2.0", "tiny")
        wait_until(qtbot, lambda: shown(models, key, "verify_btn"))
        assert len(models.rows) == 3, "development mode lists the tiny variants"
        models.rows[key].verify_btn.click()
        wait_until(qtbot, lambda: bool(window.toasts.history) and not models.rows[key].busy)
        assert [n.title for n in window.toasts.history] == ["Verified"], window.toasts.history
        assert models.rows[key].delete_btn.isEnabled()
        models.rows[key].delete_btn.click()
        wait_until(qtbot, lambda: models.rows[key].state.text() == "Not built yet")
        assert asked == ["Delete model"]
        assert not local(studio).models.status(*key).complete
        assert models.rows[key].download_btn.text() == "Build"


def test_pins_in_use_marks_and_a_clean_up_previewed_before_anything_goes(
    qtbot: Any, tmp_path: Path, tiny_models_root: Path
) -> None:
    root = tmp_path / "models"
    shutil.copytree(tiny_models_root, root, symlinks=True)
    settings = engine_settings(tmp_path)
    settings = replace(settings, models=replace(settings.models, models_root=root, dev_mode=True))
    engine = Engine(settings, hardware=simulated_profile(0))
    t2v, i2v, ti2v = ((f"{m}@2.2.0", "tiny") for m in ("t2v-A14B", "i2v-A14B", "ti2v-5B"))
    with studio_for(engine, tmp_path / "config") as studio:
        window = make_window(qtbot, studio)
        models = window.pages["models"]
        assert isinstance(models, ModelsPanel)
        window.show_page("models")
        wait_until(qtbot, lambda: shown(models, t2v, "pin_btn"))
        models.rows[t2v].pin_btn.click()
        wait_until(qtbot, lambda: models.rows[t2v].row.pinned and studio.catalog_loaded)
        assert engine.models.is_pinned(*t2v)
        wait_until(qtbot, lambda: models.rows[t2v].pin_btn.text() == "Unpin")
        assert models.rows[t2v].pin_badge.isVisibleTo(models)
        # A model held by a job (a lease, as the engine takes while a model is loaded).
        with engine.models.use(*i2v):
            studio.refresh_catalog()
            wait_until(qtbot, lambda: models.rows[i2v].use_badge.text() == "in use by this app")
            assert not models.rows[i2v].delete_btn.isEnabled()
            assert "1 pinned" in models.disk_text.text() and "1 in use" in models.disk_text.text()
            dialog = CleanupDialog(studio, window)
            qtbot.addWidget(dialog)
            dialog.limit.setValue(0)
            wait_until(qtbot, dialog.remove_btn.isEnabled)
            report = dialog.report
            assert report is not None and report.dry_run
            assert [(d.model_id, d.variant) for d in report.removed] == [ti2v]
            kept = {(d.model_id, d.variant): d.reason for d in report.kept}
            assert kept[t2v] == "pinned" and kept[i2v].startswith("in use by process")
            assert engine.models.status(*ti2v).complete, "a preview removes nothing"
            assert dialog.remove_btn.text() == "Remove 1 model"
            dialog.remove_btn.click()
            wait_until(
                qtbot, lambda: any(n.title == "Models cleaned up" for n in window.toasts.history)
            )
        assert not engine.models.status(*ti2v).complete
        assert engine.models.status(*t2v).complete and engine.models.status(*i2v).complete
        wait_until(qtbot, lambda: models.rows[ti2v].state.text() == "Not built yet")


@pytest.mark.parametrize("quota_gb", [None, 250])
def test_clean_up_opens_at_the_quota_or_with_nothing_selected(
    qtbot: Any, tmp_path: Path, tiny_models_root: Path, quota_gb: int | None
) -> None:
    """It opened at "under 0.0 GB" (now GiB) (the development models weigh KBs): one click on Remove
    deleted every model. Now it starts at the quota, or at what the folder holds."""
    root = tmp_path / "models"
    shutil.copytree(tiny_models_root, root, symlinks=True)
    settings = engine_settings(tmp_path)
    quota = None if quota_gb is None else quota_gb * 1024**3
    models_cfg = replace(settings.models, models_root=root, dev_mode=True, quota_bytes=quota)
    engine = Engine(replace(settings, models=models_cfg), hardware=simulated_profile(0))
    with studio_for(engine, tmp_path / "config") as studio:
        window = make_window(qtbot, studio)
        # The first scan of the models folder done (no scan beside the clean-up's preview).
        wait_until(qtbot, lambda: studio.catalog_loaded and studio.disk is not None)
        wait_until(qtbot, lambda: studio.background.pending == 0)
        measured = studio.disk
        for disk_known in (False, True):
            studio.disk = measured if disk_known else None  # not measured yet: it measures
            dialog = CleanupDialog(studio, window)
            qtbot.addWidget(dialog)
            wait_until(qtbot, lambda: dialog.report is not None)  # noqa: B023
            assert dialog.report is not None
            assert not dialog.report.removed, dialog.limit.text()
            assert not dialog.remove_btn.isEnabled()
            if quota_gb is not None:
                assert dialog.limit.value() == quota_gb
            else:
                assert dialog.max_size() > 0 and dialog.report.total_before <= dialog.max_size()
            dialog.close()


def test_a_leftover_partial_download_is_listed_and_can_be_resumed_or_discarded(
    qtbot: Any, synth_studio: Studio, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Clean up listed a cancelled download's leftovers; the Models page did not. It lists it
    with its size, and Resume finishes it, Discard removes it (only it)."""
    monkeypatch.setattr("wan_desktop.ui.widgets.confirm", lambda *_a: True)  # "Discard"
    studio = synth_studio
    window = make_window(qtbot, studio)
    models = window.pages["models"]
    assert isinstance(models, ModelsPanel)
    window.show_page("models")
    key = (SYNTH_ID, "full")
    wait_until(qtbot, lambda: shown(models, key, "download_btn"))
    assert not models.partials and not models.partials_title.isVisibleTo(models)

    def leave_a_partial() -> str:
        models.rows[key].download_btn.click()
        wait_until(qtbot, lambda: models.rows[key].bar.value() > 0)
        models.rows[key].cancel_btn.click()
        wait_until(qtbot, lambda: not studio.engine.downloads())
        studio.refresh_catalog()
        wait_until(qtbot, lambda: len(models.partials) == 1 and not studio.background.pending)
        (name,) = models.partials
        return name

    name = leave_a_partial()
    part = models.partials[name]
    usage = next(m for m in local(studio).models.disk_usage().models if not m.complete)
    assert part.isVisibleTo(models) and models.partials_title.isVisibleTo(models)
    assert f"{fmt.size(usage.bytes)} downloaded" in part.info.text() and usage.bytes > 0
    assert part.title.text() == f"{SYNTH_ID} (full)"
    assert part.resume_btn.isEnabled() and part.discard_btn.isEnabled()

    part.resume_btn.click()
    wait_until(qtbot, lambda: models.rows[key].state.text() == "Ready", timeout=60)
    wait_until(qtbot, lambda: not models.partials)
    assert local(studio).models.status(*key).complete

    local(studio).models.delete(*key)
    studio.refresh_catalog()
    wait_until(qtbot, lambda: shown(models, key, "download_btn"))
    name = leave_a_partial()
    staging = local(studio).models.paths.staging_dir(name)
    assert staging.is_dir()
    models.partials[name].discard_btn.click()
    wait_until(qtbot, lambda: not models.partials and not staging.exists())
    assert any(n.title == "Partial download discarded" for n in window.toasts.history)
    assert local(studio).models.status(*key).state is ModelState.not_present


def test_in_development_mode_a_real_models_partial_download_is_listed_and_discarded(
    qtbot: Any, tmp_path: Path, tiny_models_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Development mode shows only the tiny variants: a real model's download cancelled
    earlier (and a folder of a model no longer in models.toml) still shows, with why it cannot
    be resumed now; Discard removes it and nothing else."""
    monkeypatch.setattr("wan_desktop.ui.widgets.confirm", lambda *_a: True)
    root = tmp_path / "models"
    shutil.copytree(tiny_models_root, root, symlinks=True)
    settings = engine_settings(tmp_path)
    settings = replace(settings, models=replace(settings.models, models_root=root, dev_mode=True))
    engine = Engine(settings, hardware=simulated_profile(0))
    paths = engine.models.paths
    real = paths.staging_dir("t2v-A14B@2.2.0")  # the real T2V's default variant
    (real / "transformer").mkdir(parents=True)
    (real / "transformer" / ".wan-partial.diffusion_pytorch_model-00001.safetensors").write_bytes(
        b"\0" * 300_000
    )
    gone = paths.staging_dir("t2v-A14B@2.1.0")  # a version the manifest no longer lists
    gone.mkdir(parents=True)
    (gone / "model_index.json").write_text("{}")
    with studio_for(engine, tmp_path / "config") as studio:
        window = make_window(qtbot, studio)
        models = window.pages["models"]
        assert isinstance(models, ModelsPanel)
        window.show_page("models")
        wait_until(qtbot, lambda: len(models.partials) == 2)
        assert len(models.rows) == 3, "the page lists the tiny variants"
        window.setFont(theme.ui_font())  # the app's look, at the smallest supported size
        window.setStyleSheet(theme.stylesheet())
        window.resize(1024, 700)
        qtbot.wait(50)
        assert layout_problems(window) == []
        known, unknown = models.partials["t2v-A14B@2.2.0"], models.partials["t2v-A14B@2.1.0"]
        assert "293 KiB downloaded" in known.info.text()
        assert "development mode is on" in known.info.text() and not known.resume_btn.isEnabled()
        assert "no longer in the model list" in unknown.info.text()
        assert not unknown.resume_btn.isEnabled() and unknown.discard_btn.isEnabled()
        known.discard_btn.click()
        wait_until(qtbot, lambda: list(models.partials) == ["t2v-A14B@2.1.0"])
        assert not real.exists() and gone.is_dir()
        assert all(engine.models.status(*k).complete for k in models.rows)
        models.partials["t2v-A14B@2.1.0"].discard_btn.click()
        wait_until(qtbot, lambda: not models.partials and not gone.exists())
        assert not models.partials_title.isVisibleTo(models)
