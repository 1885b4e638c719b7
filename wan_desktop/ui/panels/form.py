"""What the Generate and Explainer forms share: queue the job, or show each error at its field."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from typing import Any

from PySide6.QtCore import QEventLoop
from PySide6.QtWidgets import QAbstractButton, QLabel

from wan_desktop.engine import InvalidInputError, Job, JobKind, JobState

from .. import format as fmt
from ..fit import estimate_text
from ..state import Notice, Studio
from ..widgets import Field, route_errors


class JobForm:
    """Mixed into a form panel, which provides the widgets and the three methods below."""

    KIND: JobKind
    FIX_HINT: str  # shown in the estimate line while fields have errors
    ERRORS_BY_BASE = False  # "loras[1]" is shown at the "loras" field

    studio: Studio
    estimate: QLabel
    general_error: QLabel
    caption_job: str | None = None  # the job the line under the submit button follows
    sending: Future[Job] | None = None  # the job on its way to the engine
    _caption_follows = False
    _button_was: tuple[bool, str] = (True, "")
    _answered: Callable[[], None] | None = None

    def params(self) -> dict[str, Any]:
        raise NotImplementedError

    def fields(self) -> dict[str, Field]:
        raise NotImplementedError

    def show_queued(self, job: Job) -> None:
        raise NotImplementedError

    def load_params(self, params: Mapping[str, Any], *, navigate: bool = True) -> None:
        raise NotImplementedError

    def restore_last(self) -> None:
        """Open with the form's last job's settings (from the previous session too)."""
        last = self.studio.settings.last_params.get(str(self.KIND))
        if last:
            # One written by another version may not fit this form: then it opens empty.
            with contextlib.suppress(TypeError, ValueError, KeyError):
                self.load_params(last, navigate=False)

    def submit_button(self) -> QAbstractButton:
        raise NotImplementedError

    def ready(self) -> bool:
        """Whether the form may be sent as it is (a form shows its own problems first)."""
        return True

    def send(self) -> Future[Job] | None:
        """Queue the form's job off the GUI thread (the button says "Sending…" until the engine
        took it); errors show at their fields. None when nothing was sent."""
        if self.sending is not None or not self.ready():
            return None
        self.show_errors({})
        try:
            params = self.params()
        except Exception as exc:  # a field the form could not read
            self.show_errors({"": str(exc)})
            return None
        btn = self.submit_button()
        self._button_was = (btn.isEnabled(), btn.text())
        btn.setEnabled(False)
        btn.setText("Sending…")
        future = self.studio.submit_later(
            params, self.KIND, on_done=self._queued, on_error=self._refused
        )
        if future.cancelled():  # the app is closing
            self._sent()
            return None
        self.sending = future
        return future

    def submit(self) -> Job | None:
        """``send``, then wait for the engine's answer while the event loop keeps turning (for
        scripts and tests); the queued job, or None with the errors shown."""
        future = self.send()
        if future is None:
            return None
        loop = QEventLoop()
        self._answered = loop.quit
        if self.sending is future:
            loop.exec()
        self._answered = None
        return None if future.cancelled() or future.exception() else future.result()

    def _sent(self) -> None:
        self.sending = None
        enabled, text = self._button_was
        btn = self.submit_button()
        btn.setText(text)
        btn.setEnabled(enabled)
        if self._answered is not None:
            self._answered()

    def _refused(self, exc: BaseException) -> None:
        self._sent()
        if isinstance(exc, InvalidInputError):
            self.show_errors(exc.errors)
        else:  # the engine could not take it (no pipeline, misconfigured, the link is down)
            self.show_errors({"": str(exc)})

    def _queued(self, job: Job) -> None:
        self._sent()
        if not self._caption_follows:
            self.studio.job_updated.connect(self._follow_caption)
            self._caption_follows = True
        self.caption_job = job.id
        self.estimate.setText(caption(self.studio.jobs.get(job.id, job)))
        self.studio.remember(self.KIND, job.params)
        self.show_queued(job)
        self.studio.post(Notice("info", "Queued", fmt.summary(job), job_id=job.id))

    def _follow_caption(self, job: Job) -> None:
        if job.id == self.caption_job:
            self.estimate.setText(caption(job))

    def show_errors(self, errors: Mapping[str, str]) -> None:
        general = route_errors(self.fields(), errors, base=self.ERRORS_BY_BASE)
        self.general_error.setText("\n".join(general))
        self.general_error.setVisible(bool(general))
        if errors:
            self.caption_job = None  # the hint stays until the next job
            self.estimate.setText(self.FIX_HINT)


def caption(job: Job) -> str:
    """The line under a form's submit button about the job it just queued, as the job goes."""
    text, _kind = fmt.state(job)
    if job.state is JobState.queued:
        parts = [text, estimate_text(job.estimate) or "no estimate"]
    elif job.state.active:
        step = f"step {job.step}/{job.total_steps}" if job.step and job.total_steps else ""
        parts = [text, step, f"{fmt.duration(job.eta_s)} left" if job.eta_s else ""]
    elif job.state is JobState.completed and job.started_at and job.finished_at:
        parts = [text, f"in {fmt.duration(job.finished_at - job.started_at)}"]
    elif job.failure is not None:
        message = job.failure.message
        parts = [f"{text}: {message if len(message) <= 140 else message[:139] + '…'}"]
    else:
        parts = [text]
    return "  ·  ".join(p for p in (*parts, job.label or "") if p)
