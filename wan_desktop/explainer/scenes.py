"""One scene from code to video: check, render in the sandbox, and on failure fix and try again.

A model's code that fails goes back to the model with the error (and, with retrieval on, notes
on the API); each try renders in its own folder. The offline writer's code is not rewritten: a
failure that may pass (timeout, crash under load) is tried again after a backoff.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wan_desktop.models.cancel import CancelToken
from wan_desktop.models.retry import Backoff

from .answers import AnswerError
from .codecheck import check_scene_code
from .errors import ExplainerErrorCode, failure
from .params import ExplainerParams
from .plan import SceneCode, ScenePlan, Writer
from .sandbox import RenderOutcome, SceneSandbox

TRANSIENT = frozenset({"timeout", "crash"})  # worth a second try of the same code


@dataclass(frozen=True)
class RenderedScene:
    plan: ScenePlan
    code: SceneCode
    video: Path
    duration_s: float
    tries: int
    render_s: float  # wall time of all tries
    history: tuple[dict[str, Any], ...] = field(default_factory=tuple)

    def summary(self) -> dict[str, Any]:
        return {
            "index": self.plan.index,
            "title": self.plan.title,
            "kind": str(self.plan.kind),
            "class_name": self.code.class_name,
            "author": self.code.author,
            "tries": self.tries,
            "render_s": round(self.render_s, 3),
            "duration_s": self.duration_s,
            "history": list(self.history),
        }


class SceneRenderer:
    def __init__(
        self,
        *,
        writer: Writer,
        sandbox: SceneSandbox,
        params: ExplainerParams,
        workdir: Path,
        max_tries: int,
        notes: Callable[[ScenePlan, str | None], str],
        log: Callable[[str, str], None],
        cancel: CancelToken,
        backoff_s: float,
        latex: bool,
    ) -> None:
        self.writer = writer
        self.sandbox = sandbox
        self.params = params
        self.workdir = workdir
        self.max_tries = max_tries
        self.notes = notes
        self.log = log
        self.cancel = cancel
        self.backoff_s = backoff_s
        self.latex = latex

    def render(self, plan: ScenePlan, code: SceneCode) -> RenderedScene:
        history: list[dict[str, Any]] = []
        current = code
        seconds = 0.0
        backoff = Backoff(tries=self.max_tries, base_s=self.backoff_s)
        last: RenderOutcome | None = None
        error = kind = ""
        for attempt in range(1, self.max_tries + 1):
            check = check_scene_code(current.code, current.class_name, latex=self.latex)
            if check.ok and check.class_name:
                last = self.sandbox.render(
                    current.code,
                    check.class_name,
                    self.workdir / f"scene_{plan.index:02d}" / f"try_{attempt}",
                    quality=self.params.preset.manim_quality,
                    cancel=self.cancel,
                )
                seconds += last.seconds
                if last.kind == "cancelled":
                    self.cancel.raise_if_cancelled()
                if last.ok and last.video is not None:
                    history.append({"try": attempt, "result": "ok", "seconds": last.seconds})
                    if attempt > 1:
                        self.log("info", f"scene {plan.index}: rendered on try {attempt}")
                    return RenderedScene(
                        plan,
                        current,
                        last.video,
                        float(last.duration_s or 0.0),
                        attempt,
                        seconds,
                        tuple(history),
                    )
                error, kind = last.feedback, last.kind
            else:
                error, kind = check.message, "rejected"
            history.append(
                {"try": attempt, "result": kind, "error": error[:2000], "author": current.author}
            )
            self.log(
                "warning",
                f"scene {plan.index} try {attempt}/{self.max_tries} failed ({kind}): "
                f"{error.splitlines()[0] if error else kind}",
            )
            if attempt == self.max_tries:
                break
            fixed = self._fix(plan, current, error)
            if fixed is None:
                if kind not in TRANSIENT:
                    break
                self.cancel.sleep(backoff.delay(attempt))
            else:
                current = fixed
        raise self._final_failure(plan, kind, error, len(history), last)

    def _fix(self, plan: ScenePlan, code: SceneCode, error: str) -> SceneCode | None:
        notes = self.notes(plan, error)
        try:
            fixed = self.writer.fix_code(self.params, plan, code, error, notes)
        except AnswerError as exc:
            raise failure(
                ExplainerErrorCode.code_invalid,
                f"the language model gave no usable fix for scene {plan.index}: {exc}",
                ("retry the job", "use a stronger SCENE_MODEL"),
            ) from exc
        if fixed is not None:
            self.log("info", f"scene {plan.index}: {fixed.author} sent fix {fixed.attempt - 1}")
        return fixed

    def _final_failure(
        self, plan: ScenePlan, kind: str, error: str, tries: int, last: RenderOutcome | None
    ) -> Exception:
        code = {
            "timeout": ExplainerErrorCode.render_timeout,
            "blocked": ExplainerErrorCode.sandbox_blocked,
        }.get(kind, ExplainerErrorCode.render_failed)
        first = error.splitlines()[0] if error else kind
        suggestions: tuple[str, ...] = (
            ("retry the job", "lower the quality", "raise RENDER_TIMEOUT_S or RENDER_MEMORY_MB")
            if self.writer.offline
            else (
                "retry the job: the model may do better",
                "use a stronger SCENE_MODEL, or turn on retrieval (use_rag)",
                "use model 'template' for the offline planner",
            )
        )
        detail = error + (
            f"\n\nrender log (end):\n{last.log_tail}" if last and last.log_tail else ""
        )
        return failure(
            code,
            f"scene {plan.index} ({plan.title}) failed {tries} "
            f"{'try' if tries == 1 else 'tries'}; last error: {first}",
            suggestions,
            detail=detail,
        )
