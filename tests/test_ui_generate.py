"""The Generate panel: a job goes from the form to the queue to the gallery; bad input is shown
next to its field; inputs appear only for models that take them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.api_helpers import lora_bytes, not_lora_bytes
from tests.engine_helpers import engine_settings, mock_engine
from tests.helpers import REAL_MANIFEST
from tests.ui_helpers import local, make_window, mock_studio, studio_for, wait_until
from wan_desktop.engine import Engine, JobState, simulated_profile
from wan_desktop.engine.estimate import fit_verdict
from wan_desktop.engine.pipelines.mock import MOCK_LABEL, MockPipeline
from wan_desktop.models import DEV_LABEL, load_manifest
from wan_desktop.ui.fit import describe
from wan_desktop.ui.panels.generate import GeneratePanel
from wan_desktop.ui.panels.queue import QueuePanel
from wan_desktop.ui.state import Studio
from wan_desktop.ui.window import MainWindow

T2V, I2V, TI2V = "t2v-A14B@2.2.0", "i2v-A14B@2.2.0", "ti2v-5B@2.2.0"


@pytest.fixture
def studio(qtbot: Any, tmp_path: Path) -> Iterator[Studio]:
    with mock_studio(tmp_path, step_s=0.02) as s:
        yield s


@pytest.fixture
def window(qtbot: Any, studio: Studio) -> MainWindow:
    return make_window(qtbot, studio)


def fill(
    panel: GeneratePanel,
    *,
    model: str = T2V,
    prompt: str = "a lighthouse in a storm",
    steps: int = 4,
    frames: int = 5,
) -> None:
    panel.select_model(model)
    panel.prompt.setPlainText(prompt)
    panel.resolution.setCurrentText("854x480")
    panel.steps.setValue(steps)
    panel.frames.setValue(frames)


def test_a_job_submitted_from_the_form_runs_in_the_queue_and_lands_in_the_gallery(
    qtbot: Any, window: MainWindow, studio: Studio
) -> None:
    gen = window.pages["generate"]
    queue = window.pages["queue"]
    assert isinstance(gen, GeneratePanel) and isinstance(queue, QueuePanel)
    fill(gen, steps=6)
    gen.seed.setText("1234")
    gen.generate_btn.click()  # sent off the GUI thread: the job shows once the engine took it
    wait_until(qtbot, lambda: len(studio.jobs) == 1)
    window.show_page("queue")
    jobs = list(studio.jobs.values())
    assert len(jobs) == 1
    job = jobs[0]
    assert job.params["seed"] == 1234 and job.params["steps"] == 6
    assert job.params["width"] == 848, "the engine rounded 854 to the model's block size"
    # It shows up in the queue (waiting or already running) with its mock label.
    wait_until(qtbot, lambda: job.id in queue.upcoming.cards or job.id in queue.running.cards)
    card = queue.upcoming.cards.get(job.id) or queue.running.cards[job.id]
    assert card.label_badge.text() == "MOCK" and card.label_badge.toolTip() == MOCK_LABEL
    # Steps move the running card's timeline, then the job finishes into the history.
    wait_until(qtbot, lambda: job.id in queue.history.cards)
    done = studio.jobs[job.id]
    assert done.state is JobState.completed and done.output is not None
    assert queue.history.cards[job.id].state_badge.text() == "Done"
    assert not queue.running.isVisible()
    gallery = window.pages["gallery"]
    window.show_page("gallery")
    assert gallery.grid.count() == 1  # type: ignore[attr-defined]
    assert "MOCK" in gallery.grid.item(0).text()  # type: ignore[attr-defined]
    wait_until(qtbot, lambda: any(n.title == "Video ready" for n in window.toasts.history))


def test_input_errors_show_next_to_their_fields_and_nothing_is_queued(
    qtbot: Any, window: MainWindow, studio: Studio
) -> None:
    gen = window.pages["generate"]
    assert isinstance(gen, GeneratePanel)
    fill(gen, prompt="   ", frames=10)
    assert gen.submit() is None
    assert gen.prompt_field.error.isVisible()
    assert "prompt" in gen.prompt_field.error.text()
    assert gen.frames_field.error.isVisible() and "4k+1" in gen.frames_field.error.text()
    assert gen.prompt.property("invalid") is True
    assert not gen.steps_field.error.isVisible()
    assert studio.jobs == {}
    # Fixing the fields clears the errors.
    fill(gen, prompt="a calm lake", frames=9)
    assert gen.submit() is not None
    assert not gen.prompt_field.error.isVisible() and not gen.frames_field.error.isVisible()


def test_image_inputs_appear_only_for_models_that_take_them(
    qtbot: Any, window: MainWindow, studio: Studio, tmp_path: Path
) -> None:
    gen = window.pages["generate"]
    assert isinstance(gen, GeneratePanel)
    gen.select_model(T2V)
    assert not gen.images_card.isVisible()
    gen.select_model(TI2V)
    assert gen.images_card.isVisible() and not gen.end_image_field.isVisible()
    gen.select_model(I2V)
    assert gen.images_card.isVisible() and gen.end_image_field.isVisible()
    # I2V needs an image: the engine's message shows under the drop zone.
    fill(gen, model=I2V)
    assert gen.submit() is None
    assert gen.image_field.error.isVisible() and "image" in gen.image_field.error.text()
    picture = tmp_path / "start.png"
    Image.new("RGB", (64, 48), (200, 40, 40)).save(picture)
    gen.image.set_path(str(picture))
    assert "64×48" in gen.image.hint.text()
    job = gen.submit()
    assert job is not None and job.params["image"] == str(picture.resolve())


def test_use_these_settings_again_fills_the_form_from_a_finished_job(
    qtbot: Any, window: MainWindow, studio: Studio
) -> None:
    gen = window.pages["generate"]
    assert isinstance(gen, GeneratePanel)
    fill(gen, model=TI2V, prompt="paper boats on a river", steps=3, frames=9)
    gen.seed.setText("77")
    job = gen.submit()
    assert job is not None
    wait_until(qtbot, lambda: studio.jobs[job.id].state is JobState.completed)
    fill(gen, model=T2V, prompt="something else", steps=20)
    gallery = window.pages["gallery"]
    window.show_page("gallery")
    wait_until(qtbot, lambda: gallery.current is not None)  # type: ignore[attr-defined]
    gallery.reuse_btn.click()  # type: ignore[attr-defined]
    assert window.current_page() == "generate"
    assert gen.spec is not None and gen.spec.id == TI2V
    assert gen.prompt.toPlainText() == "paper boats on a river"
    assert gen.seed.text() == "77" and gen.steps.value() == 3 and gen.frames.value() == 9


def test_deleting_a_video_asks_first_and_keeps_the_job_in_the_history(
    qtbot: Any, window: MainWindow, studio: Studio, monkeypatch: pytest.MonkeyPatch
) -> None:
    answers = [False, True]
    monkeypatch.setattr("wan_desktop.ui.widgets.confirm", lambda *_a: answers.pop(0))
    gen = window.pages["generate"]
    assert isinstance(gen, GeneratePanel)
    fill(gen, steps=2)
    job = gen.submit()
    assert job is not None
    wait_until(qtbot, lambda: studio.jobs[job.id].state is JobState.completed)
    video = Path(studio.jobs[job.id].output.video)  # type: ignore[union-attr]
    window.show_page(f"gallery:{job.id}")
    gallery = window.pages["gallery"]
    gallery.delete_btn.click()  # type: ignore[attr-defined]
    assert video.is_file(), "the user said no"
    gallery.delete_btn.click()  # type: ignore[attr-defined]
    assert not video.exists()
    assert gallery.grid.count() == 0 and gallery.empty.isVisible()  # type: ignore[attr-defined]
    assert studio.jobs[job.id].output is None and studio.jobs[job.id].state is JobState.completed


def test_loras_are_added_through_the_library_with_a_strength_per_expert(
    qtbot: Any,
    window: MainWindow,
    studio: Studio,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gen = window.pages["generate"]
    assert isinstance(gen, GeneratePanel)
    picker = gen.loras
    wait_until(qtbot, lambda: picker.scanned and not picker.rows)
    good = tmp_path / "Film Grain.safetensors"
    good.write_bytes(lora_bytes(rank=8))
    bad = tmp_path / "weights.safetensors"
    bad.write_bytes(not_lora_bytes())
    # "Add LoRA…" asks for a file (the dialog answers here), then the library checks it.
    chosen = [str(bad), str(good)]
    monkeypatch.setattr(
        "wan_desktop.ui.loras.QFileDialog.getOpenFileName", lambda *_a: (chosen.pop(0), "")
    )
    picker.add_btn.click()
    wait_until(qtbot, picker.field.error.isVisible)
    assert "not a LoRA" in picker.field.error.text() and not studio.loras.list()
    picker.add_btn.click()
    wait_until(qtbot, lambda: [r.lora.filename for r in picker.rows] == ["Film_Grain.safetensors"])
    assert not picker.field.error.isVisible()
    row = picker.rows[0]
    assert row.check.isChecked(), "a LoRA just added is ticked"
    assert "rank 8" in row.about.text()
    assert any(n.title == "LoRA added" for n in window.toasts.history)
    # A14B: a strength for each expert.
    fill(gen, model=T2V)
    assert row.low.isVisibleTo(picker)
    row.high.set_value(0.65)
    row.low.set_value(0.3)
    path = str(studio.loras.root / "Film_Grain.safetensors")
    assert gen.params()["loras"] == [{"path": path, "strength": 0.65, "strength_2": 0.3}]
    # TI2V-5B has one transformer: one strength, and the engine takes the job.
    fill(gen, model=TI2V)
    assert not row.low.isVisibleTo(picker)
    assert gen.params()["loras"] == [{"path": path, "strength": 0.65}]
    job = gen.submit()
    assert job is not None and job.params["loras"][0]["strength"] == 0.65
    # Deleting asks first.
    monkeypatch.setattr("wan_desktop.ui.widgets.confirm", lambda *_a: True)
    row.delete_btn.click()
    wait_until(qtbot, lambda: not picker.rows)
    assert not (studio.loras.root / "Film_Grain.safetensors").exists()


def test_each_model_shows_whether_and_how_it_fits_this_machine(qtbot: Any, tmp_path: Path) -> None:
    rtx3070 = simulated_profile(8, 32, name="RTX 3070", compute_capability=(8, 6))
    engine = Engine(
        engine_settings(tmp_path),
        pipelines=[MockPipeline(load_manifest(REAL_MANIFEST))],
        hardware=rtx3070,
    )
    with studio_for(engine, tmp_path / "config") as studio:
        window = make_window(qtbot, studio)
        gen = window.pages["generate"]
        assert isinstance(gen, GeneratePanel)
        tiles = gen.picker.tiles

        def verdict(model: str) -> str:
            return tiles[model].fit.text()

        wait_until(qtbot, lambda: "checking" not in verdict(TI2V))
        assert verdict(T2V) == "does not fit" and tiles[T2V].fit.property("kind") == "danger"
        assert verdict(TI2V).startswith("fits with offloading")
        assert "RTX 3070" in gen.picker.machine.text()
        gen.select_model(T2V)
        assert gen.picker.fit_detail.text() == tiles[T2V].fit.toolTip()
        assert "RTX 3070 has 8 GiB usable" in gen.picker.fit_detail.text()
        # The verdict follows the form: fewer frames, fewer minutes, as the planner says.
        before = verdict(TI2V)
        gen.frames.setValue(17)
        wait_until(qtbot, lambda: verdict(TI2V) != before)
        expected = fit_verdict(engine.models, rtx3070, TI2V, gen._fit_params())
        assert verdict(TI2V) == describe(expected, rtx3070)[0]


def test_first_run_offers_development_mode_and_real_models(qtbot: Any, tmp_path: Path) -> None:
    engine = mock_engine(tmp_path, mock=False, pipelines=[])
    from wan_desktop.ui.config import AppSettings

    with studio_for(engine, tmp_path / "config", AppSettings()) as studio:
        window = make_window(qtbot, studio)
        gen = window.pages["generate"]
        assert isinstance(gen, GeneratePanel)
        wait_until(qtbot, lambda: studio.catalog_loaded)
        assert gen.welcome.isVisible()
        assert gen.welcome_models.count() == 3, "each real model with its size and fit"
        assert not local(studio).settings.dev_mode
        buttons = [
            b
            for b in gen.welcome.findChildren(type(gen.generate_btn))
            if b.text() == "Use development mode"
        ]
        buttons[0].click()
        assert studio.dev_mode and local(studio).models.config.dev_mode
        assert studio.settings_store.load().dev_mode, "the choice is saved"
        assert not gen.welcome.isVisible()
        assert gen.banner.isVisible() and "random-weight" in gen.banner_text.text()
        wait_until(qtbot, lambda: all(r.variant.development for r in studio.catalog))


@pytest.mark.slow
def test_a_tiny_variant_job_runs_through_the_real_wan_pipeline(qtbot: Any, tmp_path: Path) -> None:
    root = tmp_path / "models"  # empty: the job builds its tiny model, with progress events
    settings = engine_settings(tmp_path, mock=False)
    from dataclasses import replace

    settings = replace(settings, models=replace(settings.models, models_root=root, dev_mode=True))
    from wan_desktop.engine import simulated_profile

    engine = Engine(settings, hardware=simulated_profile(0))
    with studio_for(engine, tmp_path / "config") as studio:
        window = make_window(qtbot, studio)
        gen = window.pages["generate"]
        assert isinstance(gen, GeneratePanel)
        fill(gen, model=T2V, steps=2, frames=5)
        progress: list[str] = []
        studio.download_changed.connect(lambda p: progress.append(p.model_id))
        job = gen.submit()
        assert job is not None and job.development and job.label == DEV_LABEL
        wait_until(qtbot, lambda: studio.jobs[job.id].finished, timeout=240)
        done = studio.jobs[job.id]
        assert done.state is JobState.completed, done.failure
        window.show_page("queue")  # hidden pages refresh when shown
        queue = window.pages["queue"]
        wait_until(qtbot, lambda: job.id in queue.history.cards)  # type: ignore[attr-defined]
        assert queue.history.cards[job.id].label_badge.text() == "DEV · NOISE"  # type: ignore[attr-defined]
        assert done.output is not None and Path(done.output.video).is_file()
        assert T2V in progress and not studio.downloads, "the job's own download ended with it"
        wait_until(qtbot, lambda: gen.picker.tiles[T2V].status.text().startswith("ready"))


def test_clicking_anywhere_on_a_model_card_selects_it(qtbot: Any, window: MainWindow) -> None:
    """The name, the task line and the badges take the click too (they were selectable text
    that swallowed it); no text on a clickable card is selectable."""
    from PySide6.QtCore import QPoint, Qt
    from PySide6.QtWidgets import QLabel

    gen = window.pages["generate"]
    assert isinstance(gen, GeneratePanel)
    window.show_page("generate")
    gen.select_model(T2V)
    for model_id in (I2V, TI2V, T2V):
        tile = gen.picker.tiles[model_id]
        labels = [w for w in tile.findChildren(QLabel) if w.isVisible()]
        assert len(labels) >= 2
        for lab in labels:
            gen.select_model(T2V if model_id != T2V else I2V)
            qtbot.mouseClick(lab, Qt.MouseButton.LeftButton, pos=QPoint(3, lab.height() // 2))
            assert gen.picker.selected == model_id, (model_id, lab.text())
            assert not lab.textInteractionFlags() & Qt.TextInteractionFlag.TextSelectableByMouse
    for zone in (gen.image, gen.end_image):
        for lab in zone.findChildren(QLabel):
            assert not lab.textInteractionFlags() & Qt.TextInteractionFlag.TextSelectableByMouse


def test_a_file_that_is_not_an_image_blocks_generate_with_the_reason_at_its_field(
    qtbot: Any, window: MainWindow, studio: Studio, tmp_path: Path
) -> None:
    from PySide6.QtCore import Qt

    gen = window.pages["generate"]
    assert isinstance(gen, GeneratePanel)
    window.show_page("generate")
    fill(gen, model=I2V)
    notes = tmp_path / "notes.txt"
    notes.write_text("not a picture", "utf-8")
    for zone, field in ((gen.image, gen.image_field), (gen.end_image, gen.end_image_field)):
        zone.set_path(str(notes))
        assert not gen.generate_btn.isEnabled()
        assert field.error.isVisible() and "notes.txt cannot be read as an image" in (
            field.error.text()
        )
        qtbot.mouseClick(gen.generate_btn, Qt.MouseButton.LeftButton)
        assert gen.submit() is None and studio.engine.jobs() == [], "nothing was queued"
        zone.set_path("")
        assert not field.error.isVisible()
    picture = tmp_path / "start.png"
    Image.new("RGB", (64, 48), (200, 40, 40)).save(picture)
    gen.image.set_path(str(picture))
    assert gen.generate_btn.isEnabled() and not gen.image_field.error.isVisible()
    assert gen.submit() is not None


def test_number_fields_show_the_allowed_range_instead_of_clamping_and_ignore_a_passing_wheel(
    qtbot: Any, window: MainWindow, studio: Studio
) -> None:
    from PySide6.QtCore import QPoint, QPointF, Qt
    from PySide6.QtGui import QWheelEvent
    from PySide6.QtWidgets import QApplication

    gen = window.pages["generate"]
    assert isinstance(gen, GeneratePanel)
    window.show_page("generate")
    fill(gen, model=T2V, steps=4, frames=9)
    assert gen.generate_btn.isEnabled()
    typed = [
        (gen.steps, gen.steps_field, "99999", "use 1–100"),
        (gen.frames, gen.frames_field, "321", "use 1–241"),
    ]
    for box, field, text, allowed in typed:
        before = box.value()
        box.lineEdit().selectAll()
        qtbot.keyClicks(box.lineEdit(), text)
        assert box.value() == int(text), "kept as typed, not clamped"
        assert field.error.isVisible() and allowed in field.error.text()
        assert not gen.generate_btn.isEnabled()
        assert gen.submit() is None and studio.jobs == {}
        box.setValue(before)
        assert not field.error.isVisible() and gen.generate_btn.isEnabled()
    gen.seed.clear()
    qtbot.keyClicks(gen.seed, "abc-1")
    assert gen.seed.text() == "abc-1"
    assert gen.seed_field.error.isVisible() and "whole number" in gen.seed_field.error.text()
    assert not gen.generate_btn.isEnabled()
    gen.seed.setText("7")
    assert not gen.seed_field.error.isVisible() and gen.generate_btn.isEnabled()

    def wheel(widget: Any) -> None:
        centre = QPointF(widget.width() / 2, widget.height() / 2)
        event = QWheelEvent(
            centre,
            widget.mapToGlobal(centre),
            QPoint(0, 0),
            QPoint(0, 120),
            Qt.MouseButton.NoButton,
            Qt.KeyboardModifier.NoModifier,
            Qt.ScrollPhase.NoScrollPhase,
            False,
        )
        QApplication.sendEvent(widget, event)

    def values() -> tuple[Any, ...]:
        return (
            gen.steps.value(),
            gen.frames.value(),
            gen.guidance.value(),
            gen.resolution.currentText(),
        )

    assert not any(w.hasFocus() for w in (gen.steps, gen.frames, gen.guidance, gen.resolution))
    shown = values()
    for widget in (gen.steps, gen.frames, gen.guidance, gen.resolution):
        wheel(widget)
        assert values() == shown, widget


def test_development_mode_fills_the_tiny_variants_defaults_also_after_switching_model(
    qtbot: Any, window: MainWindow, studio: Studio
) -> None:
    manifest = local(studio).models.manifest
    gen = window.pages["generate"]
    assert isinstance(gen, GeneratePanel)

    def shown() -> tuple[str, int, int]:
        return gen.resolution.currentText(), gen.frames.value(), gen.steps.value()

    def expected(model_id: str, variant: str | None) -> tuple[str, int, int]:
        d = manifest.get(model_id).defaults_for(variant)
        return d.resolution, d.frames, d.steps

    gen.select_model(T2V)
    assert shown() == expected(T2V, None)
    studio.set_dev_mode(True)
    assert shown() == expected(T2V, "tiny") and shown() != expected(T2V, None)
    for model_id in (I2V, TI2V, T2V):
        gen.select_model(model_id)
        assert shown() == expected(model_id, "tiny"), model_id
    studio.set_dev_mode(False)
    assert shown() == expected(T2V, None)


def test_the_caption_under_generate_follows_the_job_to_its_end(
    qtbot: Any, window: MainWindow, studio: Studio, tmp_path: Path
) -> None:
    gen = window.pages["generate"]
    assert isinstance(gen, GeneratePanel)
    studio.engine.pause()
    fill(gen)
    job = gen.submit()
    assert job is not None and gen.estimate.text().startswith("Queued")
    studio.engine.resume()
    wait_until(qtbot, lambda: studio.jobs[job.id].state is JobState.completed)
    wait_until(qtbot, lambda: gen.estimate.text().startswith("Done"))
    assert "Queued" not in gen.estimate.text()


def test_the_caption_under_generate_says_when_the_job_failed_and_why(
    qtbot: Any, tmp_path: Path
) -> None:
    from tests.engine_helpers import ScriptedPipeline
    from wan_desktop.engine import FailureCategory, JobFailedError

    def fail(_ctx: Any) -> Any:
        raise JobFailedError(FailureCategory.out_of_memory, "the GPU ran out of memory", ())

    engine = mock_engine(tmp_path, mock=False, pipelines=[ScriptedPipeline(fail)], start=False)
    engine.pause()
    engine.start()
    with studio_for(engine, tmp_path / "config") as studio:
        window = make_window(qtbot, studio)
        gen = window.pages["generate"]
        assert isinstance(gen, GeneratePanel)
        fill(gen)
        job = gen.submit()
        assert job is not None and gen.estimate.text().startswith("Queued")
        engine.resume()
        wait_until(qtbot, lambda: studio.jobs[job.id].state is JobState.failed)
        wait_until(qtbot, lambda: not gen.estimate.text().startswith("Queued"))
        assert gen.estimate.text().startswith("Failed: the GPU ran out of memory")


def test_the_last_prompt_and_settings_are_there_after_a_restart(qtbot: Any, tmp_path: Path) -> None:
    from wan_desktop.ui.config import SettingsStore

    with mock_studio(tmp_path) as studio:
        window = make_window(qtbot, studio)
        gen = window.pages["generate"]
        assert isinstance(gen, GeneratePanel)
        fill(gen, model=TI2V, prompt="a lighthouse in a storm, remembered", steps=7, frames=13)
        gen.seed.setText("99")
        assert gen.submit() is not None
        window.close()
    saved = SettingsStore(tmp_path / "config").load()
    engine = mock_engine(tmp_path)
    with studio_for(engine, tmp_path / "config", saved) as studio:
        window = make_window(qtbot, studio)
        gen = window.pages["generate"]
        assert isinstance(gen, GeneratePanel)
        assert gen.prompt.toPlainText() == "a lighthouse in a storm, remembered"
        assert gen.spec is not None and gen.spec.id == TI2V
        assert (gen.steps.value(), gen.frames.value()) == (7, 13)
        assert gen.seed.text() == "", "a new video gets a new seed"
        assert window.current_page() == "generate"
