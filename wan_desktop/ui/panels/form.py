"""What the Generate and Explainer forms share: queue the job, or show each error at its field."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from PySide6.QtWidgets import QLabel

from wan_desktop.engine import InvalidInputError, Job, JobKind

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

    def params(self) -> dict[str, Any]:
        raise NotImplementedError

    def fields(self) -> dict[str, Field]:
        raise NotImplementedError

    def show_queued(self, job: Job) -> None:
        raise NotImplementedError

    def submit(self) -> Job | None:
        self.show_errors({})
        try:
            job = self.studio.submit(self.params(), self.KIND)
        except InvalidInputError as exc:
            self.show_errors(exc.errors)
            return None
        except Exception as exc:  # the engine could not take it (no pipeline, misconfigured)
            self.show_errors({"": str(exc)})
            return None
        self.estimate.setText(
            f"Queued  ·  {estimate_text(job.estimate) or 'no estimate'}"
            + (f"  ·  {job.label}" if job.label else "")
        )
        self.show_queued(job)
        self.studio.post(Notice("info", "Queued", fmt.summary(job), job_id=job.id))
        return job

    def show_errors(self, errors: Mapping[str, str]) -> None:
        general = route_errors(self.fields(), errors, base=self.ERRORS_BY_BASE)
        self.general_error.setText("\n".join(general))
        self.general_error.setVisible(bool(general))
        if errors:
            self.estimate.setText(self.FIX_HINT)
