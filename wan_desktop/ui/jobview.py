"""One job on screen: its picture, prompt, badges, step timeline, failure advice and actions."""

from __future__ import annotations

from PySide6.QtCore import QRectF, QSize, Qt, Signal
from PySide6.QtGui import QFont, QFontMetrics, QImage, QPainter, QPaintEvent
from PySide6.QtWidgets import QHBoxLayout, QLabel, QSizePolicy, QVBoxLayout, QWidget

from wan_desktop.engine import Job, JobKind, JobState

from . import format as fmt
from . import icons, theme, widgets
from .pictures import Picture, job_image
from .widgets import Badge, Card, ElidedLabel, label, set_prop, tool

PHASES = ("Download", "Load", "Steps", "Encode")
# Explainer jobs: the contract's stages, two of them shown as one.
EXPLAINER_PHASES = ("Plan", "Scenes", "Code", "Render", "Combine", "Store")
EXPLAINER_STAGE_PHASE = {
    "initializing": 0,
    "planning": 0,
    "scenario_creation": 1,
    "code_generation": 2,
    "rendering": 3,
    "combining": 4,
    "storage": 5,
}
WRITER_TEXT = {"template": "offline template planner"}  # the explainer's writer names
STAGE_PHASE = {
    "initializing": 0,
    "downloading_model": 0,
    "loading_model": 1,
    "preparing_inputs": 1,
    "applying_lora": 1,
    "generating": 2,
    "post_processing": 3,
    "saving": 3,
}
STATE_PHASE = {
    JobState.preparing: 0,
    JobState.loading: 1,
    JobState.running: 2,
    JobState.encoding: 3,
}


def phases_of(job: Job) -> tuple[str, ...]:
    return EXPLAINER_PHASES if job.kind is JobKind.explainer else PHASES


def phase_of(job: Job) -> int:
    """Which of the job's phases it is in (-1 before, len(phases) after)."""
    if job.state is JobState.queued:
        return -1
    if job.state is JobState.completed or job.stage == "completed":
        return len(phases_of(job))
    stages = EXPLAINER_STAGE_PHASE if job.kind is JobKind.explainer else STAGE_PHASE
    if job.stage in stages:
        return stages[job.stage]
    if job.kind is JobKind.explainer:
        return 0
    return STATE_PHASE.get(job.state, -1)


class Timeline(QWidget):
    """A segment per phase (Wan: download, load, steps, encode; explainer: plan … store); the
    current one fills with its progress."""

    def __init__(self) -> None:
        super().__init__()
        self.phases: tuple[str, ...] = PHASES
        self.phase = -1
        self.fraction = 0.0
        self.failed = False
        self.setMinimumHeight(34)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)

    def set_job(self, job: Job) -> None:
        self.phases = phases_of(job)
        self.phase = phase_of(job)
        self.failed = job.state in (JobState.failed, JobState.cancelled, JobState.interrupted)
        explainer = job.kind is JobKind.explainer
        if self.failed:
            stages = EXPLAINER_STAGE_PHASE if explainer else STAGE_PHASE
            self.phase = stages.get(job.stage or "", self.phase)
        if explainer and job.total_steps:
            # Scenes (or renders) done within the current stage; the studio resets them per stage.
            self.fraction = (job.step or 0) / job.total_steps
        elif not explainer and self.phase == 2 and job.total_steps:
            self.fraction = (job.step or 0) / job.total_steps
        elif not explainer and self.phase == 3:
            self.fraction = 0.5
        else:
            self.fraction = 0.0
        self.update()

    def sizeHint(self) -> QSize:
        return QSize(320, 34)

    GAP = 6.0

    def label_font(self) -> QFont:
        font = QFont(self.font())
        font.setPointSizeF(8)
        return font

    def segment_width(self) -> float:
        n = len(self.phases)
        return (self.width() - self.GAP * (n - 1)) / n

    def labels(self) -> list[str]:
        """The phase names as drawn: shortened with "…" where a segment is too narrow (a small
        window), never cut."""
        metrics = QFontMetrics(self.label_font())
        width = int(self.segment_width())
        return [metrics.elidedText(n, Qt.TextElideMode.ElideRight, width) for n in self.phases]

    def paintEvent(self, _event: QPaintEvent) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        gap, bar_h = self.GAP, 6.0
        seg_w = self.segment_width()
        p.setFont(self.label_font())
        for i, name in enumerate(self.labels()):
            x = i * (seg_w + gap)
            rect = QRectF(x, 2, seg_w, bar_h)
            p.setPen(Qt.PenStyle.NoPen)
            p.setBrush(theme.color("border"))
            p.drawRoundedRect(rect, 3, 3)
            if i < self.phase:
                fill, frac = theme.color("accent"), 1.0
            elif i == self.phase:
                fill = theme.color("danger") if self.failed else theme.color("accent")
                frac = 1.0 if self.failed else max(0.08, self.fraction)
            else:
                fill, frac = None, 0.0
            if fill is not None:
                p.setBrush(fill)
                p.drawRoundedRect(QRectF(x, 2, seg_w * frac, bar_h), 3, 3)
            current = i == self.phase
            pen = theme.color("text") if current else theme.color("faint")
            if i < self.phase:
                pen = theme.color("muted")
            p.setPen(pen)
            p.drawText(
                QRectF(x, bar_h + 6, seg_w, 18),
                int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter),
                name,
            )
        p.end()


class JobCard(Card):
    cancel_requested = Signal(str)
    retry_requested = Signal(str)
    delete_requested = Signal(str)
    open_requested = Signal(str)

    THUMB = QSize(144, 81)

    def __init__(
        self, job: Job, *, draggable: bool = False, compact: bool = False, picture: bool = True
    ) -> None:
        super().__init__(margins=14, spacing=10)
        self.job = job
        self.compact = compact
        row = QHBoxLayout()
        row.setSpacing(14)
        self.body.addLayout(row)
        if draggable:
            grip = QLabel()
            grip.setPixmap(icons.pixmap("grip", 16, theme.P.faint))
            grip.setToolTip("Drag to change the order")
            grip.setCursor(Qt.CursorShape.OpenHandCursor)
            row.addWidget(grip)
        self.picture = Picture(self.THUMB)
        self.has_picture = picture
        self.picture.setVisible(picture)
        row.addWidget(self.picture, 0, Qt.AlignmentFlag.AlignTop)

        text = QVBoxLayout()
        text.setSpacing(5)
        top = QHBoxLayout()
        top.setSpacing(6)
        self.state_badge = Badge()
        self.label_badge = Badge("", "dev")
        top.addWidget(self.state_badge)
        top.addWidget(self.label_badge)
        top.addStretch(1)
        self.when = label("", "faint")
        top.addWidget(self.when)
        text.addLayout(top)
        self.prompt = ElidedLabel("")
        font = self.prompt.font()
        font.setWeight(QFont.Weight.DemiBold)
        self.prompt.setFont(font)
        text.addWidget(self.prompt)
        self.meta = ElidedLabel("", "muted")
        text.addWidget(self.meta)
        self.timeline = Timeline()
        text.addWidget(self.timeline)
        self.status = ElidedLabel("", "faint")  # one line; a narrow card ends it in …
        text.addWidget(self.status)
        row.addLayout(text, 1)

        actions = QVBoxLayout()
        actions.setSpacing(2)
        self.cancel_btn = tool("cancel", "Cancel this job")
        self.retry_btn = tool("retry", "Run again with the same settings and seed")
        self.open_btn = tool("play", "Show in the gallery")
        self.delete_btn = tool("delete", "Remove from the history")
        for b in (self.open_btn, self.cancel_btn, self.retry_btn, self.delete_btn):
            actions.addWidget(b)
        actions.addStretch(1)
        row.addLayout(actions)
        self.cancel_btn.clicked.connect(self._ask_cancel)
        self.retry_btn.clicked.connect(lambda: self.retry_requested.emit(self.job.id))
        self.delete_btn.clicked.connect(lambda: self.delete_requested.emit(self.job.id))
        self.open_btn.clicked.connect(lambda: self.open_requested.emit(self.job.id))

        self.failure = label("", wrap=True, selectable=True)
        self.failure.setTextFormat(Qt.TextFormat.RichText)
        self.body.addWidget(self.failure)
        self.set_job(job)

    def _ask_cancel(self) -> None:
        """A running job loses its work when cancelled: that asks first (a waiting one not)."""
        if self.job.state.active and not widgets.confirm(
            self,
            "Stop this job?",
            "It is running: stopping it loses the work done so far. Jobs waiting after it are "
            "not affected, and it can be retried from the history.",
            "Stop the job",
        ):
            return
        self.cancel_requested.emit(self.job.id)

    def set_job(self, job: Job, preview: QImage | None = None) -> None:
        self.job = job
        text, kind = fmt.state(job)
        self.state_badge.set(text, kind)
        badge = fmt.label_badge(job)
        self.label_badge.set(badge or "", "dev")
        self.label_badge.setToolTip(job.label or "")
        self.when.setText(fmt.ago(job.finished_at or job.started_at or job.created_at))
        self.prompt.set_full_text(job.prompt)
        self.meta.set_full_text(fmt.summary(job))
        active = job.state.active
        self.timeline.setVisible(active or job.state in (JobState.failed,))
        self.timeline.set_job(job)
        self.status.set_full_text(self._status_text(job))
        self.status.setVisible(bool(self.status.full_text()))
        self.cancel_btn.setVisible(active or job.state is JobState.queued)
        self.retry_btn.setVisible(job.finished)
        self.delete_btn.setVisible(job.finished)
        self.open_btn.setVisible(job.state is JobState.completed and job.output is not None)
        set_prop(self, "state", str(job.state))
        if job.state is JobState.failed and job.failure is not None:
            tips = "".join(f"<li>{s}</li>" for s in job.failure.suggestions)
            self.failure.setText(
                f"<span style='color:{theme.P.danger}'>{job.failure.message}</span>"
                + (
                    f"<ul style='margin:4px 0 0 -18px; color:{theme.P.muted}'>{tips}</ul>"
                    if tips
                    else ""
                )
            )
            self.failure.setVisible(True)
        else:
            self.failure.setVisible(False)
        if self.has_picture:
            self.picture.set_image(job_image(job, preview))

    @staticmethod
    def _status_text(job: Job) -> str:
        explainer = job.kind is JobKind.explainer
        if job.state is JobState.queued:
            est = job.estimate or {}
            bits = []
            if est.get("minutes") is not None:
                bits.append(f"about {fmt.duration(float(est['minutes']) * 60)}")
            if explainer and est.get("writer"):
                bits.append(f"writer: {WRITER_TEXT.get(est['writer'], est['writer'])}")
            elif est.get("strategy"):
                bits.append(f"strategy: {est['strategy']}")
            return "Waiting" + (f"  ·  {'  ·  '.join(bits)}" if bits else "")
        if job.state.active:
            parts = []
            if explainer:
                parts.append(job.stage_message or (job.stage or "").replace("_", " "))
                if job.total_steps:
                    parts.append(f"{job.step or 0}/{job.total_steps} done")
            elif job.state is JobState.running and job.total_steps:
                parts.append(f"step {job.step or 0}/{job.total_steps}")
            else:
                parts.append(job.stage_message or (job.stage or "").replace("_", " "))
            if job.eta_s is not None:
                parts.append(f"ETA {fmt.duration(job.eta_s)}")
            parts.append(f"{job.progress * 100:.0f}%")
            return "  ·  ".join(p for p in parts if p)
        if job.state is JobState.completed and job.output is not None:
            o = job.output
            took = (job.finished_at or 0) - (job.started_at or 0)
            return (
                f"{o.width}×{o.height}  ·  {fmt.clock(o.duration_s)} video  ·  "
                f"{fmt.size(o.size_bytes)}  ·  took {fmt.duration(took)}"
            )
        if job.state is JobState.completed:
            return "Output deleted"
        if job.state in (JobState.cancelled, JobState.interrupted):
            return job.stage_message or ""
        return ""
