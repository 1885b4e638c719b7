"""Error codes of explainer jobs (``JobFailure.code``) and the one place that builds failures."""

from __future__ import annotations

import enum

from wan_desktop.engine.errors import JobFailedError
from wan_desktop.engine.jobs import FailureCategory


class ExplainerErrorCode(enum.StrEnum):
    llm_unavailable = "LLM_UNAVAILABLE"  # the chat endpoint could not be used
    plan_invalid = "PLAN_INVALID"  # the model's outline or scene plan was unusable
    code_invalid = "CODE_INVALID"  # the model's answer held no usable code
    render_failed = "RENDER_FAILED"  # a scene failed every try
    render_timeout = "RENDER_TIMEOUT"
    sandbox_blocked = "SANDBOX_BLOCKED"  # the code kept trying something forbidden
    sandbox_unavailable = "SANDBOX_UNAVAILABLE"
    combine_failed = "COMBINE_FAILED"
    storage_failed = "STORAGE_FAILED"


_CATEGORY = {
    ExplainerErrorCode.llm_unavailable: FailureCategory.model_unavailable,
    ExplainerErrorCode.storage_failed: FailureCategory.storage_failed,
}


def failure(
    code: ExplainerErrorCode,
    message: str,
    suggestions: tuple[str, ...] = (),
    *,
    detail: str | None = None,
) -> JobFailedError:
    return JobFailedError(
        _CATEGORY.get(code, FailureCategory.render_failed),
        message,
        suggestions,
        code=code.value,
        detail=detail,
    )
