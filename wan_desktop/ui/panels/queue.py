"""Queue: what runs now, what runs next (drag to reorder), and what already ran."""

from __future__ import annotations

import logging

from PySide6.QtCore import QEvent, QModelIndex, QPoint, QSize, Qt, QTimer, Signal, Slot
from PySide6.QtGui import QImage, QShowEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from wan_desktop.engine import EngineError, Job, JobState

from ..jobview import JobCard
from ..state import Notice, Studio
from ..widgets import EmptyState, PageHeader, button, label, page_layout

log = logging.getLogger("wan_desktop.ui")

ID_ROLE = Qt.ItemDataRole.UserRole
# Completed jobs are the gallery's videos: clearing the history never removes them.
CLEARABLE = (JobState.failed, JobState.cancelled, JobState.interrupted)
MAX_CARDS = 100  # per list; older history stays in the engine and the gallery


class JobList(QListWidget):
    """A list of job cards; ``reorderable`` lets the user drag queued jobs into a new order."""

    acting = Signal(str)  # a card's command is about to run: the id of its job

    def __init__(self, studio: Studio, *, reorderable: bool) -> None:
        super().__init__()
        self.studio = studio
        self.cards: dict[str, JobCard] = {}
        self.reorderable = reorderable
        self.setSpacing(5)
        self.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        if reorderable:
            self.setDragDropMode(QAbstractItemView.DragDropMode.InternalMove)
            self.setDefaultDropAction(Qt.DropAction.MoveAction)
            self.model().rowsMoved.connect(self._on_rows_moved)

    def set_jobs(self, jobs: list[Job]) -> None:
        """Show these jobs in this order, touching only the cards that changed."""
        jobs = jobs[:MAX_CARDS]
        ids = [j.id for j in jobs]
        current = self.ids()
        wanted, present = set(ids), set(current)
        if [i for i in current if i in wanted] != [i for i in ids if i in present]:
            self.clear()  # the order of existing jobs changed: rebuild (a reorder; rare)
            self.cards.clear()
            current = []
        for row in reversed(range(self.count())):
            item = self.item(row)
            if item.data(ID_ROLE) not in wanted:
                self.takeItem(row)
                card = self.cards.pop(item.data(ID_ROLE), None)
                if card is not None:
                    card.deleteLater()
        for index, job in enumerate(jobs):
            if job.id in self.cards:
                if self.cards[job.id].job != job:
                    self.update_job(job)
                continue
            item = QListWidgetItem()
            item.setData(ID_ROLE, job.id)
            card = JobCard(job, draggable=self.reorderable)
            self._wire(card)
            card.set_job(job, self._preview(job.id))
            item.setSizeHint(card.sizeHint())
            self.insertItem(index, item)
            self.setItemWidget(item, card)
            self.cards[job.id] = card
        self._fit_height()

    def update_job(self, job: Job) -> None:
        card = self.cards.get(job.id)
        if card is None:
            return
        card.set_job(job, self._preview(job.id))
        # A part shown or hidden (the timeline when the job starts) changes the card's height:
        # lay it out now, and give its row that height, so nothing is drawn over.
        layout = card.layout()
        if layout is not None:
            layout.activate()
        hint = card.sizeHint()
        for i in range(self.count()):
            item = self.item(i)
            if item.data(ID_ROLE) == job.id and item.sizeHint() != hint:
                item.setSizeHint(hint)
                self._fit_height()

    def ids(self) -> list[str]:
        return [self.item(i).data(ID_ROLE) for i in range(self.count())]

    def _preview(self, job_id: str) -> QImage | None:
        entry = self.studio.previews.get(job_id)
        return entry[1] if entry else None

    def _wire(self, card: JobCard) -> None:
        card.cancel_requested.connect(self._cancel)
        card.retry_requested.connect(self._retry)
        card.delete_requested.connect(self._delete)
        card.open_requested.connect(self._open)

    def _fit_height(self) -> None:
        total = sum(
            self.item(i).sizeHint().height() + 2 * self.spacing() for i in range(self.count())
        )
        self.setFixedHeight(max(0, total + 4))

    @Slot(QModelIndex, int, int, QModelIndex, int)
    def _on_rows_moved(self, *_args: object) -> None:
        order = self.ids()
        # The moved row's widget may not follow the drop: rebuild from the engine's answer.
        QTimer.singleShot(0, lambda: self._apply_order(order))

    def _apply_order(self, order: list[str]) -> None:
        try:
            self.studio.engine.reorder(order)
        except EngineError as exc:
            self.studio.post(Notice("error", "Could not reorder", str(exc)))
            self.studio.reload_jobs()

    def _cancel(self, job_id: str) -> None:
        self._command("cancel", job_id)

    def _retry(self, job_id: str) -> None:
        self._command("retry", job_id)

    def _delete(self, job_id: str) -> None:
        self._command("delete", job_id)

    def _open(self, job_id: str) -> None:
        self.studio.navigate.emit(f"gallery:{job_id}")

    def _command(self, name: str, job_id: str) -> None:
        self.acting.emit(job_id)
        self.studio.job_command(name, job_id)


def section(text: str, role: str) -> QLabel:
    lab = label(text, role)
    lab.setContentsMargins(6, 0, 0, 0)  # line up with the cards, which the list insets
    return lab


class QueuePanel(QWidget):
    def __init__(self, studio: Studio) -> None:
        super().__init__()
        self.studio = studio
        outer = page_layout(self)
        self.header = PageHeader("Queue", "")
        self.pause_btn = button("Pause queue", "pause")
        self.pause_btn.clicked.connect(self._toggle_pause)
        self.clear_btn = button("Clear failed", "delete", variant="ghost")
        self.clear_btn.setToolTip(
            "Remove failed, cancelled and interrupted jobs; finished videos stay in the gallery"
        )
        self.clear_btn.clicked.connect(self._clear)
        self.header.action_row.addWidget(self.clear_btn)
        self.header.action_row.addWidget(self.pause_btn)
        outer.addWidget(self.header)

        from ..widgets import scroll_page

        body = QWidget()
        col = QVBoxLayout(body)
        col.setContentsMargins(0, 0, 8, 0)
        col.setSpacing(10)
        self.running_title = section("RUNNING", "section")
        col.addWidget(self.running_title)
        self.running = JobList(studio, reorderable=False)
        col.addWidget(self.running)
        row = QHBoxLayout()
        self.next_title = section("UP NEXT", "section")
        row.addWidget(self.next_title)
        row.addStretch(1)
        self.drag_hint = label("drag to reorder", "faint")
        row.addWidget(self.drag_hint)
        col.addLayout(row)
        self.upcoming = JobList(studio, reorderable=True)
        col.addWidget(self.upcoming)
        self.history_title = section("HISTORY", "section")
        col.addWidget(self.history_title)
        self.history = JobList(studio, reorderable=False)
        col.addWidget(self.history)
        self.empty = EmptyState(
            "queue",
            "Nothing queued",
            "Jobs you start from Generate line up here. They survive restarts: a job that was "
            "running when the app closed comes back as interrupted, ready to retry.",
        )
        go = button("Go to Generate", "generate", variant="primary")
        go.clicked.connect(lambda: studio.navigate.emit("generate"))
        self.empty.add_action(go)
        col.addWidget(self.empty)
        col.addStretch(1)
        self.scroll_area: QScrollArea = scroll_page(body)
        outer.addWidget(self.scroll_area, 1)
        # The card the user just acted on stays where it was on the screen (retrying a job adds
        # one above it; the pointer must not end up over the new card's buttons).
        self._anchor: tuple[str, int] | None = None
        for lst in (self.running, self.upcoming, self.history):
            lst.acting.connect(self._hold)

        self._stale = True
        studio.jobs_changed.connect(self.refresh)
        studio.job_updated.connect(self._on_job)
        studio.preview_changed.connect(self._on_preview)
        studio.paused_changed.connect(lambda _p: self._update_header())
        self.refresh()

    @Slot()
    def refresh(self) -> None:
        if not self.isVisible():
            self._stale = True  # nobody sees it: catch up when it is shown
            return
        self._stale = False
        s = self.studio
        active, queued, done = s.active(), s.queued(), s.finished()
        self.running.set_jobs(active)
        self.upcoming.set_jobs(queued)
        self.history.set_jobs(done)
        for w, show in (
            (self.running_title, bool(active)),
            (self.running, bool(active)),
            (self.next_title, bool(queued)),
            (self.drag_hint, len(queued) > 1),
            (self.upcoming, bool(queued)),
            (self.history_title, bool(done)),
            (self.history, bool(done)),
        ):
            w.setVisible(show)
        self.empty.setVisible(not (active or queued or done))
        self._update_header()
        self._keep_anchor()

    def _card_y(self, job_id: str) -> int | None:
        for lst in (self.history, self.upcoming, self.running):
            card = lst.cards.get(job_id)
            if card is not None and lst.isVisible():
                return card.mapTo(self.scroll_area.viewport(), QPoint(0, 0)).y()
        return None

    @Slot(str)
    def _hold(self, job_id: str) -> None:
        y = self._card_y(job_id)
        self._anchor = None if y is None else (job_id, y)

    def _keep_anchor(self) -> None:
        if self._anchor is None:
            return
        job_id, y = self._anchor
        self._anchor = None
        self._scroll_to(job_id, y)
        # The scroll area sizes its content on a later turn of the loop: once more then.
        QTimer.singleShot(0, lambda: self._scroll_to(job_id, y))

    def _scroll_to(self, job_id: str, y: int) -> None:
        """Scroll so that the card of ``job_id`` is at ``y`` in the viewport again."""
        QApplication.sendPostedEvents(None, QEvent.Type.LayoutRequest.value)
        now = self._card_y(job_id)
        if now is not None and now != y:
            bar = self.scroll_area.verticalScrollBar()
            bar.setValue(bar.value() + now - y)

    def _update_header(self) -> None:
        s = self.studio
        n_q, n_a = len(s.queued()), len(s.active())
        state = "paused: queued jobs wait until you resume" if s.paused else "running"
        self.header.subtitle.setText(f"{n_a} running  ·  {n_q} waiting  ·  queue {state}")
        self.pause_btn.setText("Resume queue" if s.paused else "Pause queue")
        from .. import icons

        self.pause_btn.setIcon(icons.icon("play" if s.paused else "pause"))
        self.clear_btn.setEnabled(any(j.state in CLEARABLE for j in s.finished()))

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        if self._stale:
            self.refresh()

    @Slot(object)
    def _on_job(self, job: Job) -> None:
        if self._stale or not self.isVisible():
            self._stale = True
            return
        for lst in (self.running, self.upcoming, self.history):
            lst.update_job(job)

    @Slot(str)
    def _on_preview(self, job_id: str) -> None:
        job = self.studio.jobs.get(job_id)
        if job is not None:
            self.running.update_job(job)

    def _toggle_pause(self) -> None:
        if self.studio.paused:
            self.studio.engine.resume()
        else:
            self.studio.engine.pause()

    def _clear(self) -> None:
        self.studio.engine.clear_finished(CLEARABLE)

    def minimumSizeHint(self) -> QSize:
        return QSize(480, 300)
