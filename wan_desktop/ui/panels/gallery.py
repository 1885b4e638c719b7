"""Gallery: every finished video, a player, its parameters, and what to do with it."""

from __future__ import annotations

import html
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QSize, Qt, QUrl, Slot
from PySide6.QtGui import QDesktopServices, QIcon, QResizeEvent, QShowEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QListView,
    QListWidget,
    QListWidgetItem,
    QVBoxLayout,
    QWidget,
)

from wan_desktop.engine import EngineError, Job, JobKind
from wan_desktop.explainer.media import Cue

from .. import format as fmt
from ..jobview import WRITER_TEXT
from ..pictures import poster, thumbnail
from .explainer_latest import load_subtitles

if TYPE_CHECKING:
    from ..player import Player
from .. import widgets
from ..state import Notice, Studio
from ..widgets import (
    Badge,
    Card,
    EmptyState,
    PageHeader,
    button,
    label,
    page_layout,
    scrolled,
)

ID_ROLE = Qt.ItemDataRole.UserRole
THUMB = QSize(192, 108)
DETAIL_MIN_WIDTH = 420


def grid_width(columns: int) -> int:
    return columns * (THUMB.width() + 18) + 24


class GalleryPanel(QWidget):
    def __init__(self, studio: Studio) -> None:
        super().__init__()
        self.studio = studio
        self.current: Job | None = None
        self.player: Player | None = None  # made on the first video (QtMultimedia is lazy)
        outer = page_layout(self)
        self.header = PageHeader("Gallery", "")
        self.kind_filter = QComboBox()
        self.kind_filter.addItem("All videos", None)
        self.kind_filter.addItem("Wan videos", str(JobKind.wan))
        self.kind_filter.addItem("Explainers", str(JobKind.explainer))
        self.kind_filter.currentIndexChanged.connect(lambda _i: self.refresh())
        self.header.action_row.addWidget(self.kind_filter)
        outer.addWidget(self.header)

        self.empty = EmptyState(
            "gallery",
            "No videos yet",
            "Finished videos collect here with everything needed to make them again.",
        )
        go = button("Generate a video", "generate", variant="primary")
        go.clicked.connect(lambda: studio.navigate.emit("generate"))
        self.empty.add_action(go)
        outer.addWidget(self.empty, 1)

        self.content = QWidget()
        row = QHBoxLayout(self.content)
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(18)
        self.grid = QListWidget()
        self.grid.setObjectName("Gallery")
        self.grid.setViewMode(QListView.ViewMode.IconMode)
        self.grid.setIconSize(THUMB)
        self.grid.setGridSize(QSize(THUMB.width() + 18, THUMB.height() + 44))
        self.grid.setResizeMode(QListView.ResizeMode.Adjust)
        self.grid.setMovement(QListView.Movement.Static)
        self.grid.setWordWrap(True)
        self.grid.setUniformItemSizes(True)
        self.grid.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        # Two columns where the page is wide enough, else one (see resizeEvent); the player
        # takes the rest of the width.
        self.grid.setFixedWidth(grid_width(2))
        self.grid.currentItemChanged.connect(self._on_current)
        row.addWidget(self.grid)

        self.detail = Card(margins=16)
        self.player_box = QVBoxLayout()
        self.detail.body.addLayout(self.player_box, 1)
        badges = QHBoxLayout()
        self.label_badge = Badge("", "dev")
        badges.addWidget(self.label_badge)
        badges.addStretch(1)
        self.detail.body.addLayout(badges)
        self.prompt = label("", wrap=True, selectable=True)
        self.detail.body.addWidget(self.prompt)
        self.subtitles = QLabel()
        self.subtitles.setWordWrap(True)
        self.subtitles.setProperty("role", "faint")
        self.detail.body.addWidget(self.subtitles)
        self.params = QLabel()
        self.params.setTextFormat(Qt.TextFormat.RichText)
        self.params.setWordWrap(True)
        self.params.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.detail.body.addWidget(self.params)
        actions = QHBoxLayout()
        actions.setSpacing(6)
        self.reuse_btn = button("Use these settings", "retry", variant="primary")
        self.reuse_btn.clicked.connect(self._reuse)
        self.folder_btn = button("Open folder", "folder")
        self.folder_btn.clicked.connect(self._open_folder)
        self.delete_btn = button("Delete", "delete", variant="danger")
        self.delete_btn.clicked.connect(self._delete)
        actions.addWidget(self.reuse_btn)
        actions.addWidget(self.folder_btn)
        actions.addStretch(1)
        actions.addWidget(self.delete_btn)
        self.detail.body.addLayout(actions)
        # The details scroll when the window is too low for the player, the parameters and the
        # buttons together: nothing is squashed or drawn over.
        self.detail_scroll = scrolled(self.detail)
        row.addWidget(self.detail_scroll, 1)
        outer.addWidget(self.content, 1)

        self._stale = True
        studio.jobs_changed.connect(self.refresh)
        self.refresh()

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        detail = max(DETAIL_MIN_WIDTH, self.detail.minimumSizeHint().width())
        columns = 2 if self.width() >= grid_width(2) + 18 + detail + 40 else 1
        self.grid.setFixedWidth(grid_width(columns))

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        if self._stale:
            self.refresh()

    @Slot()
    def refresh(self) -> None:
        if not self.isVisible():
            self._stale = True  # refreshed when shown
            return
        self._stale = False
        kind = self.kind_filter.currentData()
        jobs = self.studio.outputs(JobKind(kind) if kind else None)
        ids = [j.id for j in jobs]
        current_ids = [self.grid.item(i).data(ID_ROLE) for i in range(self.grid.count())]
        total = sum(j.output.size_bytes or 0 for j in jobs if j.output)
        count = f"{len(jobs)} video" + ("" if len(jobs) == 1 else "s")
        self.header.subtitle.setText(f"{count}  ·  {fmt.size(total)} on disk")
        self.empty.setVisible(not jobs)
        self.content.setVisible(bool(jobs))
        self.kind_filter.setVisible(bool(jobs) or kind is not None)
        if ids == current_ids:
            return
        keep = self.current.id if self.current else None
        wanted = set(ids)
        self.grid.blockSignals(True)
        for row in reversed(range(self.grid.count())):
            if self.grid.item(row).data(ID_ROLE) not in wanted:
                self.grid.takeItem(row)
        # Newest first; existing items keep their icons (no re-reading of thumbnails).
        present = {self.grid.item(i).data(ID_ROLE) for i in range(self.grid.count())}
        for index, job in enumerate(jobs):
            if job.id not in present:
                self.grid.insertItem(index, self._item(job))
        self.grid.blockSignals(False)
        target = keep if keep in ids else (ids[0] if ids else None)
        if target != keep or self.current is None:
            self.select(target)

    @staticmethod
    def _item(job: Job) -> QListWidgetItem:
        item = QListWidgetItem(QIcon(poster(job, None, THUMB.width(), THUMB.height())), "")
        badge = fmt.label_badge(job) or ("EXPLAINER" if job.kind is JobKind.explainer else None)
        caption = f"{badge} · {job.prompt}" if badge else job.prompt
        item.setText(caption if len(caption) < 52 else caption[:50] + "…")
        item.setToolTip(f"{job.prompt}\n{fmt.summary(job)}\n{job.label or ''}".strip())
        item.setData(ID_ROLE, job.id)
        return item

    def select(self, job_id: str | None) -> None:
        for i in range(self.grid.count()):
            item = self.grid.item(i)
            if item.data(ID_ROLE) == job_id:
                self.grid.setCurrentItem(item)
                return
        self.show_job(None)

    @Slot(object, object)
    def _on_current(self, item: QListWidgetItem | None, _prev: object) -> None:
        job = self.studio.jobs.get(item.data(ID_ROLE)) if item is not None else None
        self.show_job(job)

    def ensure_player(self) -> Player:
        if self.player is None:
            from ..player import Player

            self.player = Player()
            self.player.setMinimumHeight(240)  # the video and its controls, never squashed
            self.player_box.addWidget(self.player)
        return self.player

    def show_job(self, job: Job | None, *, fetch: bool = True) -> None:
        self.current = job
        self.detail.setVisible(job is not None)
        if job is None or job.output is None:
            if self.player is not None:
                self.player.clear()
            return
        out = job.output
        if fetch and not Path(out.video).is_file():
            # Not on this computer yet (a server's video): the engine brings it, then it plays.
            self.ensure_player().clear()
            self.studio.background.run(
                self.studio.engine.fetch_output,
                job,
                on_done=self._fetched,
                on_error=lambda exc: self.studio.post(
                    Notice("error", "Could not get the video", str(exc))
                ),
            )
        else:
            self.ensure_player().load(out.video, thumbnail(out.thumbnail))
        self.label_badge.set(job.label if fmt.label_badge(job) and job.label else "", "dev")
        self.prompt.setText(job.prompt)
        self.subtitles.setVisible(False)
        rows = explainer_rows(job) if job.kind is JobKind.explainer else wan_rows(job)
        if job.kind is JobKind.explainer and out.subtitles:
            job_id = job.id

            def read(got: tuple[str, list[Cue]]) -> None:
                self._subtitles(job_id, got[1])

            self.studio.background.run(load_subtitles, out.subtitles, on_done=read)
        self.params.setText(
            "<table cellspacing='0' cellpadding='3'>"
            + "".join(
                f"<tr><td style='color:#98a0b3; padding-right:14px'>{k}</td>"
                f"<td>{html.escape(v)}</td></tr>"
                for k, v in rows
            )
            + "</table>"
        )

    def _fetched(self, job: Job) -> None:
        self.studio.jobs[job.id] = job
        if self.current is not None and self.current.id == job.id:
            self.show_job(job, fetch=False)

    def _subtitles(self, job_id: str, cues: list[Cue]) -> None:
        if self.current is None or self.current.id != job_id:
            return  # another video is shown now
        if self.player is not None:
            self.player.set_cues(cues)  # drawn under the picture as it plays
        if cues:
            texts = [c.text for c in cues]
            shown = "  ·  ".join(texts[:4]) + ("  …" if len(texts) > 4 else "")
            self.subtitles.setText(f"Subtitles: {shown}")
            self.subtitles.setVisible(True)

    def open_target(self, job_id: str) -> None:
        """Show this job's video (navigation to ``gallery:<job id>``)."""
        self._stale = True
        self.refresh()
        self.select(job_id)

    def _reuse(self) -> None:
        job = self.current
        if job is None:
            return
        if job.kind is JobKind.explainer:
            self.studio.explain_settings.emit(dict(job.params))
        else:
            self.studio.use_settings.emit(dict(job.params))

    def _open_folder(self) -> None:
        out = self.current.output if self.current is not None else None
        if out is not None and not out.video.startswith("s3://"):
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(Path(out.video).parent)))

    def _delete(self) -> None:
        job = self.current
        if job is None:
            return
        if not widgets.confirm(
            self,
            "Delete video",
            "Delete this video, its thumbnail and its settings file?",
            "Delete",
        ):
            return
        if self.player is not None:
            self.player.clear()
        try:
            freed = self.studio.engine.delete_output(job.id)
        except EngineError as exc:
            self.studio.post(Notice("error", "Could not delete", str(exc)))
            return
        self.studio.jobs[job.id] = self.studio.engine.get(job.id)
        self.studio.post(Notice("info", "Video deleted", f"{fmt.size(freed)} freed"))
        self.refresh()

    def shutdown(self) -> None:
        if self.player is not None:
            self.player.shutdown()


def wan_rows(job: Job) -> list[tuple[str, str]]:
    out, p = job.output, job.params
    assert out is not None
    rows = [
        ("Model", f"{fmt.model_type(job)}" + (f" ({job.variant})" if job.variant else "")),
        ("Size", f"{out.width}×{out.height}, {out.frames} frames at {out.fps:g} fps"),
        ("Length", f"{fmt.clock(out.duration_s)}  ·  {fmt.size(out.size_bytes)}"),
        ("Steps", str(p.get("steps"))),
        ("Seed", str(p.get("seed"))),
        (
            "Guidance",
            f"{p.get('guidance_scale')}"
            + (f" / {p['guidance_scale_2']}" if p.get("guidance_scale_2") is not None else ""),
        ),
        ("Negative", str(p.get("negative_prompt") or "—")),
        ("Made", fmt.ago(job.finished_at)),
    ]
    if p.get("image"):
        rows.append(("Image", Path(str(p["image"])).name))
    if p.get("loras"):
        rows.append(("LoRA", ", ".join(lora_text(lo) for lo in p["loras"])))
    return rows


def lora_text(lo: Mapping[str, Any]) -> str:
    second = lo.get("strength_2")
    strengths = f"{lo['strength']}" + (f" / {second}" if second is not None else "")
    return f"{Path(str(lo['path'])).stem} {strengths}"


def explainer_rows(job: Job) -> list[tuple[str, str]]:
    out, p = job.output, job.params
    assert out is not None
    context = str(p.get("context") or "")
    rows = [
        ("Kind", "Explainer (Manim)"),
        ("Context", context if len(context) <= 160 else context[:159] + "…"),
        ("Size", f"{out.width}×{out.height} at {out.fps:g} fps, {p.get('quality')} quality"),
        ("Length", f"{fmt.clock(out.duration_s)}  ·  {fmt.size(out.size_bytes)}"),
        ("Scenes", str(p.get("scene_count") or "planner's choice")),
        ("Writer", writer_text(job)),
        ("Subtitles", Path(out.subtitles).name if out.subtitles else "none"),
        ("Storage", str(p.get("storage_mode") or "local_only").replace("_", " ")),
        ("Made", fmt.ago(job.finished_at)),
    ]
    rows += [(f"S3 {k}", v) for k, v in sorted(out.urls.items())]
    return rows


def writer_text(job: Job) -> str:
    writer = str((job.estimate or {}).get("writer") or "")
    return WRITER_TEXT.get(writer, writer) or job.label or "—"
