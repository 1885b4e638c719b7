"""The Generate panel's right-hand column: the latest Wan job's picture, progress and result,
and the most recent videos."""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt, Slot
from PySide6.QtGui import QIcon, QResizeEvent
from PySide6.QtWidgets import QHBoxLayout, QToolButton, QVBoxLayout, QWidget

from wan_desktop.engine import Job, JobKind

from .. import format as fmt
from ..jobview import JobCard
from ..pictures import Picture, job_image, poster
from ..state import Studio
from ..widgets import Card, EmptyState, clear_layout, label


class RecentStrip(QWidget):
    """The recent videos' thumbnails in a row: as many as fit (at least one), so that the
    column can be narrow without cutting them off."""

    def __init__(self) -> None:
        super().__init__()
        self.row = QHBoxLayout(self)
        self.row.setContentsMargins(0, 0, 0, 0)
        self.row.setSpacing(8)

    def buttons(self) -> list[QToolButton]:
        items = (self.row.itemAt(i) for i in range(self.row.count()))
        return [
            w for item in items if item is not None and isinstance(w := item.widget(), QToolButton)
        ]

    def minimumSizeHint(self) -> QSize:
        first = self.buttons()[:1]
        width = first[0].sizeHint().width() if first else 0
        return QSize(width, super().minimumSizeHint().height())

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self.fit()

    def fit(self) -> None:
        used = 0
        for i, b in enumerate(self.buttons()):
            used += b.sizeHint().width() + (self.row.spacing() if i else 0)
            b.setVisible(i == 0 or used <= self.width())


class NowPanel(Card):
    """The right-hand column: the latest job's picture, progress and result."""

    def __init__(self, studio: Studio) -> None:
        super().__init__("Latest", margins=16)
        self.studio = studio
        self.job_id: str | None = None
        self.picture = Picture(aspect=16 / 9)
        self.body.addWidget(self.picture)
        self.card_holder = QVBoxLayout()
        self.body.addLayout(self.card_holder)
        self.card: JobCard | None = None
        self.empty = EmptyState(
            "film",
            "Your video appears here",
            "Queue a job and watch its steps, preview frames and result in this space.",
        )
        self.body.addWidget(self.empty)
        self.body.addStretch(1)
        self.recent_title = label("RECENT", "section")
        self.recent_title.setVisible(False)  # until there is a finished video to show
        self.body.addWidget(self.recent_title)
        self.strip = RecentStrip()
        self.recent = self.strip.row
        self.body.addWidget(self.strip)
        self._recent_ids: list[str] = []
        studio.job_updated.connect(self._on_job)
        studio.preview_changed.connect(self._on_preview)
        studio.jobs_changed.connect(self._pick_latest)
        self._pick_latest()

    def _update_recent(self, shown: str | None) -> None:
        done = [j for j in self.studio.outputs(JobKind.wan) if j.id != shown][:3]
        ids = [j.id for j in done]
        if ids == self._recent_ids:
            return
        self._recent_ids = ids
        clear_layout(self.recent)
        for job in done:
            b = QToolButton()
            b.setIcon(QIcon(poster(job, None, 120, 68)))
            b.setIconSize(QSize(120, 68))
            b.setToolTip(f"{job.prompt}\n{fmt.summary(job)}")
            b.setCursor(Qt.CursorShape.PointingHandCursor)
            b.clicked.connect(
                lambda _c=False, jid=job.id: self.studio.navigate.emit(f"gallery:{jid}")
            )
            self.recent.addWidget(b)
        self.recent.addStretch(1)
        self.strip.fit()
        self.recent_title.setVisible(bool(done))

    @Slot()
    def _pick_latest(self) -> None:
        s = self.studio

        def wan(jobs: list[Job]) -> list[Job]:
            return [j for j in jobs if j.kind is JobKind.wan]

        candidates = wan(s.active()) or wan(s.queued())[:1] or wan(s.finished())[:1]
        job = candidates[0] if candidates else None
        self._update_recent(job.id if job else None)
        if job is None:
            self.job_id = None
            self.recent_title.setVisible(False)
            self.picture.setVisible(False)
            if self.card is not None:
                self.card.setVisible(False)
            self.empty.setVisible(True)
            return
        self.show_job(job)

    def show_job(self, job: Job) -> None:
        self.job_id = job.id
        self.empty.setVisible(False)
        self.picture.setVisible(True)
        if self.card is None:
            self.card = JobCard(job, picture=False)
            self.card.setObjectName("Plain")
            self.card.cancel_requested.connect(self._cancel)
            self.card.retry_requested.connect(self._retry)
            self.card.delete_requested.connect(self._delete)
            self.card.open_requested.connect(
                lambda jid: self.studio.navigate.emit(f"gallery:{jid}")
            )
            self.card_holder.addWidget(self.card)
        self.card.setVisible(True)
        self._render(job)

    def _cancel(self, job_id: str) -> None:
        self.studio.engine.cancel(job_id)

    def _retry(self, job_id: str) -> None:
        self.studio.engine.retry(job_id)
        self.studio.reload_jobs()

    def _delete(self, job_id: str) -> None:
        self.studio.engine.delete(job_id)

    def _render(self, job: Job) -> None:
        entry = self.studio.previews.get(job.id)
        preview = entry[1] if entry else None
        self.picture.set_image(job_image(job, preview))
        if self.card is not None:
            self.card.set_job(job, preview)

    @Slot(object)
    def _on_job(self, job: Job) -> None:
        if job.id == self.job_id:
            self._render(job)

    @Slot(str)
    def _on_preview(self, job_id: str) -> None:
        job = self.studio.jobs.get(job_id)
        if job is not None and job_id == self.job_id:
            self._render(job)
