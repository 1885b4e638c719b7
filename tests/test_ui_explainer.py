"""The Explainer page: a real 3-scene, lowest-quality explainer made from the page, followed
through its stages in the Queue, and its video, subtitles and thumbnail shown afterwards."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.ui_helpers import make_window, mock_studio, wait_until
from wan_desktop.engine import Job, JobKind, JobState
from wan_desktop.explainer.pipeline import OFFLINE_LABEL
from wan_desktop.ui.jobview import EXPLAINER_PHASES, phase_of
from wan_desktop.ui.panels.explainer import ExplainerPanel
from wan_desktop.ui.panels.gallery import GalleryPanel
from wan_desktop.ui.panels.queue import QueuePanel

CONTRACT_STAGES = [
    "initializing",
    "planning",
    "scenario_creation",
    "code_generation",
    "rendering",
    "combining",
    "storage",
]
CONTEXT = (
    "Photosynthesis turns light into chemical energy. Plants take in carbon dioxide and water. "
    "The key relation is 6CO2 + 6H2O = C6H12O6 + 6O2."
)


@pytest.mark.slow
def test_an_explainer_from_its_page_runs_in_the_queue_and_ends_with_video_and_subtitles(
    qtbot: Any, tmp_path: Path
) -> None:
    extra = {"explainer": {"max_concurrent_renders": 2}}
    with mock_studio(tmp_path, extra=extra) as studio:
        window = make_window(qtbot, studio)
        window.show_page("explain")
        page = window.pages["explain"]
        queue = window.pages["queue"]
        assert isinstance(page, ExplainerPanel) and isinstance(queue, QueuePanel)
        # With no language model configured, the offline planner is the default, and says so.
        assert page.writer_badge.text() == "OFFLINE TEMPLATE PLANNER"
        assert page.writer.currentText().startswith("Offline template planner (default")
        assert not page.writer.isEnabled() and "LLM_BASE_URL" in page.writer_note.text()
        assert page.llm_values["LLM_BASE_URL"].text() == ""

        # Bad input is named next to its field, and nothing is queued.
        page.topic.setText("   ")
        page.context.setPlainText(CONTEXT)
        assert page.submit() is None and page.topic_field.error.isVisible()
        assert not studio.jobs
        assert page.context_count.text() == f"{len(CONTEXT)} / 2000"

        page.topic.setText("Photosynthesis")
        page.quality.setCurrentIndex(page.quality.findData("low"))
        page.scenes.setValue(3)
        stages: list[str] = []
        phases: list[int] = []
        shown: list[tuple[int, int]] = []  # (the card's phase, the job's) while it has a card

        def follow(j: Job) -> None:
            if j.kind is JobKind.explainer and j.stage and (not stages or stages[-1] != j.stage):
                stages.append(j.stage)
                phases.append(phase_of(j))
                # The Queue rebuilds its lists once per loop turn: the card may come a turn late.
                card = queue.running.cards.get(j.id)
                if card is not None:
                    shown.append((card.timeline.phase, phase_of(j)))

        studio.job_updated.connect(follow)
        job = page.submit()
        assert job is not None and not page.topic_field.error.isVisible()
        assert job.kind is JobKind.explainer and job.label == OFFLINE_LABEL
        assert job.params["quality"] == "low" and job.params["scene_count"] == 3
        window.show_page("queue")
        wait_until(qtbot, lambda: job.id in queue.running.cards, timeout=60)
        card = queue.running.cards[job.id]
        assert card.timeline.phases == EXPLAINER_PHASES
        assert card.label_badge.text() == "OFFLINE PLANNER"
        wait_until(qtbot, lambda: studio.jobs[job.id].finished, timeout=240)
        done = studio.jobs[job.id]
        assert done.state is JobState.completed, done.failure

        # The Queue followed the contract's stages in order, its timeline one phase at a time.
        assert stages == [*CONTRACT_STAGES, "completed"]
        assert phases == [0, 0, 1, 2, 3, 4, 5, len(EXPLAINER_PHASES)], phases
        assert shown and all(card == job for card, job in shown), shown
        wait_until(qtbot, lambda: job.id in queue.history.cards)
        assert any(n.title == "Explainer ready" for n in window.toasts.history)

        # The result: a video, its subtitles and a thumbnail, shown on the page.
        out = done.output
        assert out is not None and out.subtitles and out.thumbnail
        for path in (out.video, out.subtitles, out.thumbnail):
            assert Path(path).is_file() and Path(path).stat().st_size > 0
        window.show_page("explain")
        latest = page.latest
        assert latest.job_id == job.id and latest.player is not None
        wait_until(qtbot, lambda: "-->" in latest.subtitles.toPlainText())
        assert latest.player.isVisibleTo(page) and latest.gallery_btn.isVisibleTo(page)

        # The Gallery lists it with the videos, filters by kind, and re-fills the page.
        window.show_page(f"gallery:{job.id}")
        gallery = window.pages["gallery"]
        assert isinstance(gallery, GalleryPanel)
        assert "OFFLINE PLANNER" in gallery.grid.item(0).text()
        assert "Explainer (Manim)" in gallery.params.text()
        wait_until(qtbot, lambda: gallery.subtitles.text().startswith("Subtitles: "))
        gallery.kind_filter.setCurrentIndex(gallery.kind_filter.findData(str(JobKind.wan)))
        assert gallery.grid.count() == 0 and gallery.empty.isVisible()
        gallery.kind_filter.setCurrentIndex(gallery.kind_filter.findData(str(JobKind.explainer)))
        assert gallery.grid.count() == 1
        page.topic.setText("something else")
        gallery.reuse_btn.click()
        assert window.current_page() == "explain" and page.topic.text() == "Photosynthesis"
        assert page.scenes.value() == 3 and page.quality.currentData() == "low"


def test_the_explainer_form_opens_with_the_last_choices_after_a_restart(
    qtbot: Any, tmp_path: Path
) -> None:
    from tests.engine_helpers import mock_engine
    from tests.ui_helpers import studio_for
    from wan_desktop.ui.config import SettingsStore

    with mock_studio(tmp_path) as studio:
        studio.engine.pause()  # the job waits: only the form's memory is tested
        window = make_window(qtbot, studio)
        page = window.pages["explain"]
        assert isinstance(page, ExplainerPanel)
        page.topic.setText("Photosynthesis")
        page.context.setPlainText(CONTEXT)
        page.quality.setCurrentIndex(page.quality.findData("low"))
        page.scenes.setValue(3)
        assert page.submit() is not None
        window.close()
    saved = SettingsStore(tmp_path / "config").load()
    with studio_for(mock_engine(tmp_path), tmp_path / "config", saved) as studio:
        window = make_window(qtbot, studio)
        page = window.pages["explain"]
        assert isinstance(page, ExplainerPanel)
        assert page.topic.text() == "Photosynthesis"
        assert page.context.toPlainText() == CONTEXT
        assert page.quality.currentData() == "low" and page.scenes.value() == 3
        assert window.current_page() == "generate", "restoring did not switch pages"
        for job in studio.queued():
            studio.engine.cancel(job.id)


@pytest.mark.slow
def test_the_explainer_player_shows_its_length_and_subtitles_and_the_card_its_real_scene_count(
    qtbot: Any, tmp_path: Path
) -> None:
    """The planner decides the scene count: the card says the count the stages render (it said
    "4 scenes" while "rendering 3 scenes"). The finished video's length shows before Play, as
    on the card; the current cue is drawn under the picture while it plays and where a seek
    lands."""
    from wan_desktop.explainer.media import cue_at
    from wan_desktop.ui import format as fmt

    with mock_studio(tmp_path, extra={"explainer": {"max_concurrent_renders": 2}}) as studio:
        window = make_window(qtbot, studio)
        window.show_page("explain")
        page = window.pages["explain"]
        assert isinstance(page, ExplainerPanel)
        page.topic.setText("Photosynthesis")
        page.context.setPlainText(CONTEXT)
        page.quality.setCurrentIndex(page.quality.findData("low"))
        assert page.scenes.text() == "planner decides"
        said: list[tuple[str, str]] = []  # (the card's summary, the stage's message)

        def follow(j: Job) -> None:
            card = page.latest.card
            if j.kind is JobKind.explainer and j.stage and card is not None:
                said.append((card.meta.full_text(), j.stage_message or ""))

        studio.job_updated.connect(follow)
        job = page.submit()
        assert job is not None and job.params.get("scene_count") is None
        assert "3 scenes" in fmt.summary(job), fmt.summary(job)
        wait_until(qtbot, lambda: studio.jobs[job.id].finished, timeout=240)
        done = studio.jobs[job.id]
        assert done.state is JobState.completed, done.failure
        rendering = [(card, msg) for card, msg in said if msg.startswith("rendering ")]
        assert rendering and all(msg.startswith("rendering 3 scenes") for _, msg in rendering)
        assert all("3 scenes" in card for card, _ in said), said

        out = done.output
        assert out is not None and out.subtitles
        latest = page.latest
        wait_until(qtbot, lambda: latest.player is not None and latest.player.isVisible())
        player = latest.player
        assert player is not None and latest.card is not None
        # The length as soon as the video is loaded, before Play; the card says the same.
        length = fmt.clock(out.duration_s)
        wait_until(qtbot, lambda: player.time.text().endswith(f" / {length}"), timeout=60)
        assert player.time.text() == f"{fmt.clock(0, out.duration_s)} / {length}"
        assert f"{length} video" in latest.card.status.full_text()
        assert player.player.playbackState() != player.player.PlaybackState.PlayingState

        # The cues come from the job's subtitle file; a seek shows the cue where it lands.
        wait_until(qtbot, lambda: len(player.cues) >= 3)
        cues = player.cues
        assert "-->" in latest.subtitles.toPlainText()
        second = cues[1]
        player.player.setPosition(round((second.start_s + second.end_s) / 2 * 1000))
        wait_until(qtbot, lambda: player.view.caption == second.text)
        # It is drawn: the picture differs from the same frame without it.
        with_cue = player.view.grab().toImage()
        player.view.set_caption("")
        assert player.view.grab().toImage() != with_cue
        player.view.set_caption(second.text)

        # Playing, the cue follows the position.
        player.toggle()

        def moved_on() -> bool:
            cue = cue_at(cues, player.player.position() / 1000)
            return (
                cue is not None
                and cue.start_s >= second.end_s
                and player.view.caption == (cue.text)
            )

        wait_until(qtbot, moved_on, timeout=60)
        assert player.player.playbackState() == player.player.PlaybackState.PlayingState
        player.toggle()
        player.player.setPosition(round(cues[0].start_s * 1000 + 100))
        wait_until(qtbot, lambda: player.view.caption == cues[0].text)

        # The Gallery's player shows the same cues.
        window.show_page(f"gallery:{job.id}")
        gallery = window.pages["gallery"]
        assert isinstance(gallery, GalleryPanel)
        wait_until(qtbot, lambda: gallery.player is not None and gallery.player.cues == cues)
        assert gallery.subtitles.text() == "Subtitles: " + "  ·  ".join(
            c.text for c in cues[:4]
        ) + ("  …" if len(cues) > 4 else "")
        gallery_player = gallery.player
        assert gallery_player is not None
        gallery_player.player.setPosition(round(cues[0].start_s * 1000 + 100))
        wait_until(qtbot, lambda: gallery_player.view.caption == cues[0].text)
