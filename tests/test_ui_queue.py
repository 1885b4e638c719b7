"""The Queue panel: cancel, reorder by dragging, pause/resume, failures with advice, previews."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QScrollArea, QWidget

from tests.engine_helpers import ScriptedPipeline, mock_engine, wan_spec
from tests.remote_helpers import TOKEN, serve
from tests.ui_helpers import make_window, mock_studio, studio_for, wait_until
from wan_desktop.engine import FailureCategory, JobFailedError, JobState
from wan_desktop.engine.context import JobContext
from wan_desktop.engine.jobs import JobOutput
from wan_desktop.remote import RemoteEngine
from wan_desktop.ui.panels.queue import QueuePanel
from wan_desktop.ui.state import Studio


@pytest.fixture(params=["local", "remote"])
def studio(qtbot: Any, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Studio]:
    """One test body, two engines: this process's own, and a `wan serve` driven over the wire
    (its mock pipeline also takes 0.05 s a step)."""
    if request.param == "local":
        with mock_studio(tmp_path, step_s=0.05) as s:
            yield s
        return
    with serve(tmp_path / "server") as server:
        engine = RemoteEngine(server.url, TOKEN, data_dir=tmp_path / "app", start=False)
        with studio_for(engine, tmp_path) as s:
            engine.start()  # as the app does: once the studio listens
            wait_until(qtbot, lambda: s.link is not None and s.link.state == "up")
            yield s


def panel(qtbot: Any, studio: Studio) -> QueuePanel:
    window = make_window(qtbot, studio)
    page = window.pages["queue"]
    assert isinstance(page, QueuePanel)
    window.show_page("queue")
    return page


def test_cancelling_the_running_job_from_its_card(
    qtbot: Any, studio: Studio, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("wan_desktop.ui.widgets.confirm", lambda *_a: True)  # "Stop the job"
    queue = panel(qtbot, studio)
    job = studio.submit(wan_spec(steps=100).params)
    wait_until(qtbot, lambda: job.id in queue.running.cards)
    card = queue.running.cards[job.id]
    wait_until(qtbot, lambda: (studio.jobs[job.id].step or 0) >= 2)
    assert card.timeline.phase == 2, "the steps segment is current"
    assert "step" in card.status.text() and card.cancel_btn.isVisible()
    card.cancel_btn.click()
    wait_until(qtbot, lambda: job.id in queue.history.cards)
    assert studio.jobs[job.id].state is JobState.cancelled
    assert queue.history.cards[job.id].state_badge.text() == "Cancelled"
    assert queue.history.cards[job.id].retry_btn.isVisible()
    queue.history.cards[job.id].retry_btn.click()
    again = [j for j in studio.jobs.values() if j.retry_of == job.id]
    assert len(again) == 1 and again[0].params["seed"] == studio.jobs[job.id].params["seed"]
    studio.engine.cancel(again[0].id)


def test_dragging_a_queued_job_reorders_the_engine_queue(qtbot: Any, studio: Studio) -> None:
    studio.engine.pause()
    queue = panel(qtbot, studio)
    ids = [studio.submit(wan_spec(prompt=f"job {i}").params).id for i in range(3)]
    wait_until(qtbot, lambda: queue.upcoming.ids() == ids)
    assert queue.drag_hint.isVisible()
    # What a drop does: the list model moves the row (the view's InternalMove ends here).
    model = queue.upcoming.model()
    root = model.index(0, 0).parent()
    assert model.moveRow(root, 2, root, 0)
    wanted = [ids[2], ids[0], ids[1]]
    wait_until(qtbot, lambda: [j.id for j in studio.engine.queue()] == wanted)
    wait_until(qtbot, lambda: queue.upcoming.ids() == wanted)
    assert set(queue.upcoming.cards) == set(ids), "every card survives the move"
    for row in range(queue.upcoming.count()):
        item = queue.upcoming.item(row)
        card = queue.upcoming.itemWidget(item)
        assert card is queue.upcoming.cards[item.data(Qt.ItemDataRole.UserRole)]
        assert card.job.id == wanted[row] and card.isVisibleTo(queue)


def test_pause_and_resume_buttons_drive_the_engine(qtbot: Any, studio: Studio) -> None:
    queue = panel(qtbot, studio)
    queue.pause_btn.click()
    wait_until(qtbot, lambda: studio.paused)
    assert studio.engine.paused and queue.pause_btn.text() == "Resume queue"
    job = studio.submit(wan_spec(steps=2).params)
    time.sleep(0.3)
    assert studio.engine.get(job.id).state is JobState.queued, "a paused queue holds jobs"
    assert "paused" in queue.header.subtitle.text()
    queue.pause_btn.click()
    wait_until(qtbot, lambda: studio.jobs[job.id].state is JobState.completed)
    assert queue.pause_btn.text() == "Pause queue"


def _fail(ctx: JobContext) -> JobOutput:
    ctx.stage("loading_model", 0.05)
    raise JobFailedError(
        FailureCategory.out_of_memory,
        "the GPU ran out of memory while loading",
        ("lower the resolution", "close other programs that use the GPU"),
    )


def test_a_failed_job_shows_its_message_and_what_to_do(qtbot: Any, tmp_path: Path) -> None:
    engine = mock_engine(tmp_path, mock=False, pipelines=[ScriptedPipeline(_fail)])
    with studio_for(engine, tmp_path / "config") as studio:
        window = make_window(qtbot, studio)
        queue = window.pages["queue"]
        assert isinstance(queue, QueuePanel)
        window.show_page("queue")
        job = studio.submit({"prompt": "x"})
        wait_until(qtbot, lambda: job.id in queue.history.cards)
        card = queue.history.cards[job.id]
        assert card.state_badge.text() == "Failed"
        assert card.failure.isVisible()
        assert "ran out of memory" in card.failure.text()
        assert "lower the resolution" in card.failure.text()
        wait_until(qtbot, lambda: bool(window.toasts.toasts))
        toast = window.toasts.history[-1]
        assert toast.kind == "error" and toast.sticky
        assert toast.suggestions == (
            "lower the resolution",
            "close other programs that use the GPU",
        )


def _with_previews(ctx: JobContext) -> JobOutput:
    ctx.set_state(JobState.running)
    ctx.stage("generating", 0.1)
    ctx.timer.start()
    frame: np.ndarray = np.zeros((48, 64, 3), dtype=np.uint8)
    frame[:, :, 1] = 200  # green
    for i in range(1, 200):
        ctx.preview(i, frame)
        ctx.step(i, 200)
        time.sleep(0.02)
    raise AssertionError("cancelled before here")


def test_preview_frames_show_on_the_running_job(qtbot: Any, tmp_path: Path) -> None:
    engine = mock_engine(tmp_path, mock=False, pipelines=[ScriptedPipeline(_with_previews)])
    with studio_for(engine, tmp_path / "config") as studio:
        window = make_window(qtbot, studio)
        queue = window.pages["queue"]
        assert isinstance(queue, QueuePanel)
        window.show_page("queue")
        job = studio.submit({"prompt": "previewed"})
        wait_until(qtbot, lambda: job.id in studio.previews)
        wait_until(qtbot, lambda: job.id in queue.running.cards)
        card = queue.running.cards[job.id]
        wait_until(qtbot, lambda: card.picture.image is not None)
        image = card.picture.grab().toImage()
        centre = image.pixelColor(image.width() // 2, image.height() // 2)
        assert centre.green() > 150 and centre.red() < 60, "the preview frame is painted"
        studio.engine.cancel(job.id)
        wait_until(qtbot, lambda: studio.jobs[job.id].finished)


def test_retry_keeps_the_card_under_the_pointer_and_cancelling_a_running_job_asks(
    qtbot: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from PySide6.QtCore import QPoint

    answers = [False, True]
    asked: list[str] = []

    def confirm(_parent: Any, title: str, *_a: Any) -> bool:
        asked.append(title)
        return answers.pop(0)

    monkeypatch.setattr("wan_desktop.ui.widgets.confirm", confirm)
    with mock_studio(tmp_path, step_s=0.05) as studio:
        window = make_window(qtbot, studio)
        window.resize(1024, 700)
        queue = window.pages["queue"]
        assert isinstance(queue, QueuePanel)
        window.show_page("queue")
        done = [studio.submit(wan_spec(prompt=f"done {i}").params).id for i in range(5)]
        wait_until(qtbot, lambda: all(studio.jobs[i].state is JobState.completed for i in done))
        studio.engine.pause()
        wait_until(qtbot, lambda: set(done) <= set(queue.history.cards))
        area = queue.findChild(QScrollArea)
        assert area is not None
        bar = area.verticalScrollBar()
        bar.setValue(bar.maximum())
        qtbot.wait(50)

        def under(button: QWidget) -> bool:
            found = window.childAt(button.mapTo(window, QPoint(4, 4)))
            return found is button or (found is not None and button.isAncestorOf(found))

        # A card down the page, whose Retry shows.
        card = next(c for i in done[:-1] if under((c := queue.history.cards[i]).retry_btn))
        at = card.retry_btn.mapTo(window, QPoint(4, 4))
        card.retry_btn.click()  # the retried job waits above the history: the card stays put
        wait_until(qtbot, lambda: len(queue.upcoming.cards) == 1)
        qtbot.wait(50)
        assert card.retry_btn.mapTo(window, QPoint(4, 4)) == at
        assert under(card.retry_btn), "the pointer is still over the same Retry"

        # Cancelling the running job asks first; "no" keeps it running.
        studio.engine.resume()
        (new_id,) = queue.upcoming.cards or queue.running.cards
        wait_until(qtbot, lambda: new_id in queue.running.cards)
        wait_until(qtbot, lambda: studio.jobs[new_id].state.active)
        running = queue.running.cards[new_id]
        running.cancel_btn.click()
        assert asked == ["Stop this job?"] and studio.jobs[new_id].state.active
        running.cancel_btn.click()
        wait_until(qtbot, lambda: studio.jobs[new_id].state is JobState.cancelled)
        # A waiting job is cancelled without a question.
        studio.engine.pause()
        waiting = studio.submit(wan_spec(prompt="waiting").params).id
        wait_until(qtbot, lambda: waiting in queue.upcoming.cards)
        queue.upcoming.cards[waiting].cancel_btn.click()
        wait_until(qtbot, lambda: studio.jobs[waiting].state is JobState.cancelled)
        assert len(asked) == 2


def test_timeline_labels_are_shortened_not_cut_when_the_card_is_narrow(qtbot: Any) -> None:
    from PySide6.QtGui import QFontMetrics

    from wan_desktop.ui.jobview import Timeline

    timeline = Timeline()
    qtbot.addWidget(timeline)
    metrics = QFontMetrics(timeline.label_font())
    widest = max(metrics.horizontalAdvance(name) for name in timeline.phases)
    n = len(timeline.phases)
    timeline.resize(int(n * (widest - 8) + Timeline.GAP * (n - 1)), 34)  # narrower than a label
    shown = timeline.labels()
    assert any(text.endswith("…") for text in shown), shown
    assert all(metrics.horizontalAdvance(t) <= timeline.segment_width() for t in shown), shown
    timeline.resize(4 * widest * n, 34)
    assert timeline.labels() == list(timeline.phases), "wide enough: the full names"
    assert not timeline.grab().isNull()
