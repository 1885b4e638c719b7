"""The explainer pipeline: topic → outline → scene plans → Manim code → sandboxed renders (with a
fix loop) → one MP4 with subtitles and a thumbnail → local and/or S3 storage.

Stages and the progress announced when each starts (CONTRACT.md): initializing 5 %, planning
15 %, scenario_creation 30 %, code_generation 50 %, rendering 80 %, combining 90 %, storage 95 %;
the engine announces completed 100 %. Within a stage, finished items move progress towards the
next stage's figure.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from wan_desktop.engine.errors import EngineError
from wan_desktop.engine.jobs import JobKind, JobOutput, JobState
from wan_desktop.engine.pipelines.base import JobDescription, Pipeline, PipelineHost
from wan_desktop.models.cancel import CancelToken
from wan_desktop.models.errors import CancelledError

from .answers import AnswerError
from .delivery import Delivery
from .errors import ExplainerErrorCode, failure
from .llm import ChatClient, ChatError
from .llm_writer import LlmWriter
from .offline import OfflineWriter
from .params import ExplainerParams, validate_explainer_params
from .plan import Outline, SceneCode, ScenePlan, Writer
from .rag import NotesIndex
from .run import Run
from .sandbox import Isolation, Limits, SceneSandbox, detect_isolation
from .sandbox_runner import latex_available
from .scenes import RenderedScene, SceneRenderer
from .settings import ExplainerSettings
from .tasks import Sink, run_tasks

if TYPE_CHECKING:
    from wan_desktop.engine.context import JobContext

T = TypeVar("T")

STAGES = {
    "initializing": 0.05,
    "planning": 0.15,
    "scenario_creation": 0.30,
    "code_generation": 0.50,
    "rendering": 0.80,
    "combining": 0.90,
    "storage": 0.95,
}
NEXT = dict(zip(STAGES, [*list(STAGES.values())[1:], 1.0], strict=True))
OFFLINE_LABEL = "offline template planner (no language model configured)"
# Seconds of rendering per second of video, by quality (2-core CPU, measured), plus start-up.
RENDER_S_PER_S = {"low": 0.6, "medium": 1.5, "high": 6.0, "ultra": 24.0}
RENDER_START_S = 4.0
LLM_CALL_S = 15.0
TYPICAL_SCENES = 4
TYPICAL_SCENE_S = 6.0


class ExplainerPipeline(Delivery, Pipeline):
    kind = JobKind.explainer
    mock = False

    def __init__(
        self, host: PipelineHost | None = None, *, settings: ExplainerSettings | None = None
    ) -> None:
        if settings is None:
            extra = host.settings.extra.get("explainer", {}) if host is not None else {}
            try:
                settings = ExplainerSettings.from_env(**dict(extra))
            except ValueError as exc:
                raise EngineError(f"explainer videos are misconfigured: {exc}") from exc
        self.settings = settings

    # ------------------------------------------------------------------------------ submit

    def validate(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        return validate_explainer_params(raw, self.settings).to_dict()

    def _uses_llm(self, p: ExplainerParams) -> bool:
        if p.offline:
            return False
        return bool(p.model) or self.settings.llm.configured

    def describe(self, params: Mapping[str, Any]) -> JobDescription:
        p = ExplainerParams.from_dict(params)
        scenes = self._planned_scenes(p)
        estimate: dict[str, Any] = {
            "vram_gb": 0.0,
            "minutes": round(self._estimate_s(p, "initializing", scenes) / 60, 2),
            "strategy": "manim (CPU)",
            "writer": self._writer_name(p),
        }
        if scenes is not None:
            estimate["scenes"] = scenes
        return JobDescription(
            model_id=None,
            label=None if self._uses_llm(p) or p.offline else OFFLINE_LABEL,
            estimate=estimate,
        )

    def _planned_scenes(self, p: ExplainerParams) -> int | None:
        """How many scenes the video will have, where that is known before planning: the count
        asked for, or the offline planner's own choice (it is deterministic and quick). A
        language model decides while planning; the job's estimate gets the count then."""
        if p.scene_count:
            return p.scene_count
        if not self._uses_llm(p):
            return len(OfflineWriter().outline(p).scenes)
        return None

    def _writer_name(self, p: ExplainerParams) -> str:
        if not self._uses_llm(p):
            return OfflineWriter.name
        return self.settings.llm.models(p.model)[1]

    def _estimate_s(self, p: ExplainerParams, from_stage: str, scenes: int | None = None) -> float:
        """Seconds left when ``from_stage`` starts (a rough model, refined by measured steps)."""
        n = scenes or p.scene_count or TYPICAL_SCENES
        s = self.settings
        llm = self._uses_llm(p)
        per_stage = {
            "initializing": 1.0,
            "planning": LLM_CALL_S if llm else 0.1,
            "scenario_creation": n * LLM_CALL_S / s.max_scene_concurrency if llm else 0.1,
            "code_generation": n * LLM_CALL_S / s.max_scene_concurrency if llm else 0.1,
            "rendering": n
            * (RENDER_START_S + TYPICAL_SCENE_S * RENDER_S_PER_S[p.quality])
            / s.max_concurrent_renders,
            "combining": 1.0 + (n * TYPICAL_SCENE_S * 0.3 if p.burn_subtitles else 0.0),
            "storage": 3.0 if p.storage.uses_s3 else 0.1,
        }
        names = list(STAGES)
        return sum(per_stage[k] for k in names[names.index(from_stage) :])

    # --------------------------------------------------------------------------------- run

    def run(self, ctx: JobContext) -> JobOutput:
        p = ExplainerParams.from_dict(ctx.params)
        ctx.set_state(JobState.running)
        run = self._start(ctx, p)
        try:
            outline = self._planning(run)
            plans = self._scenarios(run, outline)
            codes = self._code(run, plans)
            scenes = self._render(run, plans, codes)
            ctx.set_state(JobState.encoding)
            output, sidecar = self._combine(run, outline, scenes)
            output = self._store(run, output, sidecar)
        except CancelledError:
            shutil.rmtree(run.workdir, ignore_errors=True)
            ctx.check_cancelled()  # the job's cancellation, whoever noticed it first
            raise
        except ChatError as exc:
            raise failure(
                ExplainerErrorCode.llm_unavailable,
                f"the language model could not be used: {exc}",
                (
                    "check LLM_BASE_URL, LLM_API_KEY and the model names",
                    "retry the job when the server is back",
                    "use model 'template' for the offline planner",
                ),
            ) from exc
        except Exception:
            ctx.log("info", f"the scene files are kept for inspection in {run.workdir}")
            raise
        finally:
            if run.client is not None:
                run.client.close()
        if self.settings.cleanup:
            shutil.rmtree(run.workdir, ignore_errors=True)
        return output

    def _stage(self, run: Run, name: str, message: str, scenes: int | None = None) -> None:
        run.ctx.stage(name, STAGES[name], message)
        run.stage_log.append(
            {"stage": name, "progress": STAGES[name], "started_at": time.time(), "message": message}
        )
        run.ctx.timer.start()
        run.ctx.update(eta_s=self._estimate_s(run.params, name, scenes))

    def _start(self, ctx: JobContext, p: ExplainerParams) -> Run:
        sink = Sink()
        cancel = ctx.cancel_token.child()
        try:
            isolation = detect_isolation(self.settings.sandbox)
        except RuntimeError as exc:
            raise failure(
                ExplainerErrorCode.sandbox_unavailable,
                str(exc),
                ("install bubblewrap", "or set EXPLAINER_SANDBOX=auto"),
            ) from exc
        workdir = ctx.settings.data_dir / "explainer" / "work" / ctx.job_id
        shutil.rmtree(workdir, ignore_errors=True)
        workdir.mkdir(parents=True)
        latex = latex_available()
        client, writer = self._writer(p, latex, cancel, sink)
        notes = None
        if p.use_rag:
            notes = NotesIndex(ctx.settings.data_dir / "explainer" / "manim_notes.sqlite3")
        sandbox = SceneSandbox(
            isolation,
            Limits(self.settings.render_timeout_s, self.settings.render_memory_mb),
            hidden=_hidden_paths(ctx.settings.data_dir),
        )
        run = Run(ctx, p, writer, sandbox, workdir, cancel, sink, notes, client)
        self._stage(run, "initializing", _describe_setup(writer, isolation, p, latex))
        if isolation.warning:
            ctx.warn(isolation.warning, code="SANDBOX_DEGRADED")
        if notes is not None:
            count = self._call(run, notes.ensure)
            if writer.offline:
                ctx.log("info", "retrieval is on but the offline planner writes no prompts")
            else:
                ctx.log("info", f"retrieval: {count} Manim notes indexed")
        return run

    def _writer(
        self, p: ExplainerParams, latex: bool, cancel: CancelToken, sink: Sink
    ) -> tuple[ChatClient | None, Writer]:
        if not self._uses_llm(p):
            return None, OfflineWriter()
        llm = self.settings.llm
        if not llm.base_url:
            raise failure(
                ExplainerErrorCode.llm_unavailable,
                "no language model endpoint is configured (LLM_BASE_URL)",
                ("set LLM_BASE_URL and PLANNER_MODEL", "or use model 'template'"),
            )
        planner, scene, helper = llm.models(p.model)
        client = ChatClient(
            llm.base_url,
            api_key=llm.api_key,
            timeout_s=llm.timeout_s,
            backoff_s=self.settings.retry_base_s,
            cancel=cancel,
            on_event=sink,
        )
        writer = LlmWriter(
            client,
            planner_model=planner,
            scene_model=scene,
            helper_model=helper,
            latex=latex,
            log=sink,
        )
        return client, writer

    def _call(self, run: Run, fn: Callable[[], T]) -> T:
        """One piece of work off the worker thread, so cancellation stays responsive."""
        return run_tasks(
            run.ctx, [None], lambda _: fn(), workers=1, sink=run.sink, cancel=run.cancel
        )[0]

    def _progress(self, run: Run, stage: str, total: int) -> Callable[[int, Any], None]:
        lo, hi = STAGES[stage], NEXT[stage]
        done = 0

        def on_done(_: int, __: Any) -> None:
            nonlocal done
            done += 1
            run.ctx.step(done, total, expert=stage, span=(lo, hi))
            later = self._estimate_s(run.params, _after(stage), total) if hi < 1.0 else 0.0
            run.ctx.update(eta_s=(run.ctx.job.eta_s or 0.0) + later)

        return on_done

    # ------------------------------------------------------------------------------ stages

    def _each_scene(
        self,
        run: Run,
        stage: str,
        items: list[Any],
        fn: Callable[[Any], T],
        *,
        code: ExplainerErrorCode,
        what: str,
        model: str,
    ) -> list[T]:
        """``fn`` per scene on helper threads; an unusable model answer fails the job."""
        try:
            return run_tasks(
                run.ctx,
                items,
                fn,
                workers=self.settings.max_scene_concurrency,
                sink=run.sink,
                cancel=run.cancel,
                on_done=self._progress(run, stage, len(items)) if len(items) > 1 else None,
            )
        except AnswerError as exc:
            raise failure(
                code,
                f"{what}: {exc}",
                ("retry the job", f"use a stronger {model}", "or use model 'template'"),
            ) from exc

    def _planning(self, run: Run) -> Outline:
        self._stage(run, "planning", "outlining the scenes")
        (outline,) = self._each_scene(
            run,
            "planning",
            [run.params],
            run.writer.outline,
            code=ExplainerErrorCode.plan_invalid,
            what="the outline could not be made",
            model="PLANNER_MODEL",
        )
        if run.ctx.job.estimate.get("scenes") != len(outline.scenes):
            run.ctx.update(estimate={**run.ctx.job.estimate, "scenes": len(outline.scenes)})
        titles = "; ".join(f"{s.index}. {s.title}" for s in outline.scenes)
        run.ctx.log("info", f"outline: {outline.title} — {len(outline.scenes)} scenes: {titles}")
        return outline

    def _scenarios(self, run: Run, outline: Outline) -> list[ScenePlan]:
        n = len(outline.scenes)
        self._stage(run, "scenario_creation", f"planning {n} scenes", n)
        plans = self._each_scene(
            run,
            "scenario_creation",
            [s.index for s in outline.scenes],
            lambda i: run.writer.scene_plan(run.params, outline, i),
            code=ExplainerErrorCode.plan_invalid,
            what="a scene plan could not be made",
            model="PLANNER_MODEL",
        )
        for plan in plans:
            run.ctx.log(
                "info", f"scene {plan.index} ({plan.kind}, {plan.duration_s:.1f} s): {plan.title}"
            )
        return plans

    def _notes_for(self, run: Run) -> Callable[[ScenePlan, str | None], str]:
        def notes(plan: ScenePlan, error: str | None) -> str:
            if run.notes is None or run.writer.offline:
                return ""
            return run.notes.notes_text(run.writer.search_terms(plan, error))

        return notes

    def _code(self, run: Run, plans: list[ScenePlan]) -> list[SceneCode]:
        n = len(plans)
        self._stage(run, "code_generation", f"writing Manim code for {n} scenes", n)
        notes = self._notes_for(run)
        return self._each_scene(
            run,
            "code_generation",
            plans,
            lambda plan: run.writer.scene_code(run.params, plan, notes(plan, None)),
            code=ExplainerErrorCode.code_invalid,
            what="the language model gave no usable code",
            model="SCENE_MODEL",
        )

    def _render(
        self, run: Run, plans: list[ScenePlan], codes: list[SceneCode]
    ) -> list[RenderedScene]:
        n = len(plans)
        renders = self.settings.max_concurrent_renders
        self._stage(run, "rendering", f"rendering {n} scenes ({renders} at a time)", n)
        renderer = SceneRenderer(
            writer=run.writer,
            sandbox=run.sandbox,
            params=run.params,
            workdir=run.workdir,
            max_tries=self.settings.max_fix_attempts,
            notes=self._notes_for(run),
            log=run.sink,
            cancel=run.cancel,
            backoff_s=self.settings.retry_base_s,
            latex=latex_available(),
        )
        scenes = run_tasks(
            run.ctx,
            list(zip(plans, codes, strict=True)),
            lambda pc: renderer.render(*pc),
            workers=renders,
            sink=run.sink,
            cancel=run.cancel,
            on_done=self._progress(run, "rendering", n),
        )
        for s in scenes:
            run.ctx.log(
                "info",
                f"scene {s.plan.index}: {s.duration_s:.2f} s of video in {s.render_s:.1f} s "
                f"({s.tries} {'try' if s.tries == 1 else 'tries'})",
            )
        return scenes


def _after(stage: str) -> str:
    names = list(STAGES)
    return names[names.index(stage) + 1]


def _hidden_paths(data_dir: Path) -> tuple[Path, ...]:
    """What generated code must not read: the user's home and the app's data."""
    hidden = {data_dir.resolve()}
    with contextlib.suppress(RuntimeError):
        hidden.add(Path.home().resolve())
    return tuple(sorted(hidden))


def _describe_setup(writer: Writer, isolation: Isolation, p: ExplainerParams, latex: bool) -> str:
    who = "offline templates" if writer.offline else f"language model {writer.name}"
    tex = "LaTeX available" if latex else "no LaTeX (text rendered with Pango)"
    return f"{who}; {p.quality} quality; sandbox: {isolation.description}; {tex}"
