"""The Explainer page's latest video: the job's card while it runs, then its video, thumbnail and
subtitles (read off the GUI thread; the player shows the current cue under the picture), with the
commands to open it elsewhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QUrl, Slot
from PySide6.QtGui import QDesktopServices, QFont
from PySide6.QtWidgets import QHBoxLayout, QPlainTextEdit, QVBoxLayout

from wan_desktop.engine import Job, JobKind, JobState
from wan_desktop.explainer.media import Cue, parse_subtitles

from ..jobview import JobCard
from ..pictures import Picture, job_image, thumbnail
from ..state import Studio
from ..widgets import Card, EmptyState, button, label

if TYPE_CHECKING:
    from ..player import Player

SUBTITLE_PREVIEW_BYTES = 64 * 1024
SUBTITLE_CUES_BYTES = 4 * 1024 * 1024  # hours of cues; a bigger file is not subtitles


def read_subtitles(path: str | None, limit: int = SUBTITLE_PREVIEW_BYTES) -> str:
    """The start of an SRT file, for the preview (blocking: a small file read)."""
    if not path or path.startswith("s3://"):
        return ""
    try:
        with Path(path).open("r", encoding="utf-8", errors="replace") as fh:
            return fh.read(limit)
    except OSError as exc:
        return f"(cannot read {Path(path).name}: {exc.strerror or exc})"


def load_subtitles(path: str | None) -> tuple[str, list[Cue]]:
    """The preview text and every cue of an SRT or WebVTT file (blocking: a small file read)."""
    text = read_subtitles(path, SUBTITLE_CUES_BYTES)
    return text[:SUBTITLE_PREVIEW_BYTES], parse_subtitles(text)


class LatestExplainer(Card):
    """The page's right-hand column: the latest explainer job, then its video and subtitles."""

    def __init__(self, studio: Studio) -> None:
        super().__init__("Latest explainer", margins=16)
        self.studio = studio
        self.job_id: str | None = None
        self.player: Player | None = None
        self.player_box = QVBoxLayout()
        self.body.addLayout(self.player_box)
        self.picture = Picture(aspect=16 / 9)
        self.body.addWidget(self.picture)
        self.card_holder = QVBoxLayout()
        self.body.addLayout(self.card_holder)
        self.card: JobCard | None = None  # made for the first explainer job
        self.subtitles_title = label("SUBTITLES", "section")
        self.body.addWidget(self.subtitles_title)
        self.subtitles = QPlainTextEdit()
        self.subtitles.setReadOnly(True)
        self.subtitles.setFixedHeight(118)
        mono = QFont("DejaVu Sans Mono")
        mono.setPointSizeF(8.5)
        self.subtitles.setFont(mono)
        self.body.addWidget(self.subtitles)
        actions = QHBoxLayout()
        actions.setSpacing(6)
        self.folder_btn = button("Open folder", "folder", variant="ghost")
        self.folder_btn.clicked.connect(self._open_folder)
        self.gallery_btn = button("Show in gallery", "gallery", variant="ghost")
        self.gallery_btn.clicked.connect(self._show_in_gallery)
        actions.addWidget(self.folder_btn)
        actions.addWidget(self.gallery_btn)
        actions.addStretch(1)
        self.body.addLayout(actions)
        self.empty = EmptyState(
            "explain",
            "Your explainer appears here",
            "Write a topic and some context, then follow the planning, the code, the renders "
            "and the final video with its subtitles here and in the Queue.",
        )
        self.body.addWidget(self.empty)
        self.body.addStretch(1)
        self._subtitles_for: str | None = None
        studio.job_updated.connect(self._on_job)
        studio.jobs_changed.connect(self.pick_latest)
        self.pick_latest()

    @Slot()
    def pick_latest(self) -> None:
        s = self.studio

        def explainers(jobs: list[Job]) -> list[Job]:
            return [j for j in jobs if j.kind is JobKind.explainer]

        found = explainers(s.active()) or explainers(s.queued())[:1] or explainers(s.finished())
        self.show_job(found[0] if found else None)

    def show_job(self, job: Job | None) -> None:
        self.job_id = job.id if job else None
        self.empty.setVisible(job is None)
        if self.card is not None:
            self.card.setVisible(job is not None)
        if job is None:
            self.picture.setVisible(False)
            self._show_result(None)
            return
        self._card(job).set_job(job)
        done = job.state is JobState.completed and job.output is not None
        self.picture.setVisible(not done)
        if not done:
            self.picture.set_image(job_image(job, None))
        self._show_result(job if done else None)

    def _card(self, job: Job) -> JobCard:
        if self.card is None:
            self.card = JobCard(job, picture=False)
            self.card.setObjectName("Plain")
            self.card.cancel_requested.connect(lambda jid: self._command("cancel", jid))
            self.card.retry_requested.connect(lambda jid: self._command("retry", jid))
            self.card.delete_requested.connect(lambda jid: self._command("delete", jid))
            self.card.open_requested.connect(
                lambda jid: self.studio.navigate.emit(f"gallery:{jid}")
            )
            self.card_holder.addWidget(self.card)
        return self.card

    def _show_result(self, job: Job | None) -> None:
        out = job.output if job is not None else None
        for w in (self.subtitles_title, self.subtitles, self.folder_btn, self.gallery_btn):
            w.setVisible(out is not None)
        if self.player is not None:
            self.player.setVisible(out is not None)
        if job is None or out is None:
            if self.player is not None:
                self.player.clear()
            self._subtitles_for = None
            return
        if self.player is None:
            from ..player import Player

            self.player = Player()
            self.player_box.addWidget(self.player)
        if self._subtitles_for != job.id:
            self._subtitles_for = job.id
            self.player.load(out.video, thumbnail(out.thumbnail))
            self.subtitles.setPlainText("")
            self.subtitles.setPlaceholderText(
                "loading…" if out.subtitles else "No subtitles were asked for."
            )
            if out.subtitles:
                job_id = job.id
                self.studio.background.run(
                    load_subtitles,
                    out.subtitles,
                    on_done=lambda got: self._subtitles_read(job_id, *got),
                )

    def _subtitles_read(self, job_id: str, text: str, cues: list[Cue]) -> None:
        if job_id != self._subtitles_for:
            return  # another job is shown now
        self.subtitles.setPlainText(text)
        if self.player is not None:
            self.player.set_cues(cues)

    @Slot(object)
    def _on_job(self, job: Job) -> None:
        if job.kind is not JobKind.explainer:
            return
        if job.id == self.job_id or job.state.active:
            self.show_job(job)

    def _command(self, name: str, job_id: str) -> None:
        self.studio.job_command(name, job_id)

    def _show_in_gallery(self) -> None:
        if self.job_id is not None:
            self.studio.navigate.emit(f"gallery:{self.job_id}")

    def _open_folder(self) -> None:
        job = self.studio.jobs.get(self.job_id or "")
        if job is not None and job.output is not None and not job.output.video.startswith("s3:"):
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(Path(job.output.video).parent)))

    def shutdown(self) -> None:
        if self.player is not None:
            self.player.shutdown()
