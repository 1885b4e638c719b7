"""The real Wan2.2 pipeline: T2V-A14B, I2V-A14B (optionally first–last frame) and TI2V-5B.

One code path for the tiny development variants and the real weights: the model folder from the
orchestrator is loaded with diffusers (``WanPipeline`` or ``WanImageToVideoPipeline``, whatever
its ``model_index.json`` names; TI2V-5B given an image runs the image pipeline over the same
components), placed by the VRAM planner's strategy, and called with the job's parameters. Steps,
experts, ETA, previews and cancellation come from ``callback_on_step_end`` and a forward pre-hook
(``wan_generate.py``). The loaded model stays warm for the next job of the same model.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wan_desktop.models.errors import CancelledError
from wan_desktop.models.manifest import ModelSpec, VariantSpec

from .. import libraries
from ..errors import JobFailedError
from ..estimate import estimate_plan
from ..events import ModelLoaded, ModelUnloaded
from ..failures import OOM_SUGGESTIONS, is_out_of_memory
from ..jobs import FailureCategory, JobKind, JobOutput, JobState
from ..lora import LoraSet, LoraState
from ..measurements import record_job
from ..outputs import expected_video_bytes
from ..params import CACHE_OFF, PRESET_NONE, LoraSpec, WanParams, validate_wan_params
from ..planner import STRATEGIES, JobShape, MemoryPlan
from . import context_parallel
from .base import JobDescription, LoadedModel, Pipeline, PipelineHost
from .common import save_video
from .wan_generate import FileHashes, WarmModel, generate, sidecar

if TYPE_CHECKING:
    from ..context import JobContext


class WanPipeline(Pipeline):
    kind = JobKind.wan
    mock = False

    def __init__(self, host: PipelineHost) -> None:
        self.host = host
        self._loaded: WarmModel | None = None
        self._leaving: LoadedModel | None = None  # the model ``unload`` is freeing
        self._lock = threading.RLock()
        self._hashes = FileHashes()

    # ------------------------------------------------------------------------ submit time

    def validate(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        manifest = self.host.models.manifest
        return validate_wan_params(raw, manifest, dev_mode=self.host.settings.dev_mode).to_dict()

    def describe(self, params: Mapping[str, Any]) -> JobDescription:
        p = WanParams.from_dict(params)
        spec, var = self.host.models.resolve(p.model, p.variant)
        shape = _shape(p)
        mp = estimate_plan(
            self.host.models, self.host.hardware, self.host.settings.data_dir, spec, var, shape
        )
        warnings: tuple[str, ...] = ()
        if not mp.fits:
            # Queued anyway (the estimate may be pessimistic), but never silently.
            warnings = (
                f"{spec.model_type} will likely not run on this machine: {mp.notes[-1]}. "
                "Development mode (wan --dev, WAN_DEV_MODE=1) runs tiny versions of the "
                "models here",
            )
        return JobDescription(
            model_id=spec.id,
            variant=var.name,
            development=var.development,
            label=var.label,
            estimate=mp.estimate(),
            warnings=warnings,
        )

    # ---------------------------------------------------------------------------- warm model

    def loaded(self) -> LoadedModel | None:
        current = self._loaded
        # A model being unloaded still counts until its memory is freed and its lease released:
        # whoever sees nothing loaded may delete its files at once.
        return current.info() if current is not None else self._leaving

    def lora_state(self) -> LoraState | None:
        current = self._loaded
        return current.loras.state() if current is not None else None

    def diffusers_pipeline(self) -> Any:
        """The loaded diffusers pipeline (for inspection and extensions), or None."""
        current = self._loaded
        return current.pipe if current is not None else None

    def unload(self, reason: str = "requested") -> None:
        with self._lock:
            if self._loaded is None:
                return
            lease = self._loaded.lease
            self._leaving = self._loaded.info()
            self._loaded = None  # the last reference: the weights go with it
        try:
            from .wan_load import free_memory

            free_memory()
            lease.close()
        finally:
            self._leaving = None

    def _unload_for(self, reason: str) -> None:
        """Unload on our own account (the engine announces its idle and requested unloads)."""
        info = self.loaded()
        if info is None:
            return
        self.unload(reason)
        self.host.publish(
            ModelUnloaded(model_id=info.model_id, variant=info.variant, reason=reason)
        )

    def output_bytes(self, params: Mapping[str, Any]) -> int:
        p = WanParams.from_dict(params)
        return expected_video_bytes(p.width, p.height, p.frames)

    # ----------------------------------------------------------------------------------- run

    def run(self, ctx: JobContext) -> JobOutput:

        p = WanParams.from_dict(ctx.params)
        models = self.host.models
        spec, var = models.resolve(p.model, p.variant)
        label = f"{spec.title}, {var.name} variant" + (f" ({var.label})" if var.development else "")
        ctx.stage("initializing", 0.01, label)
        pack = models.manifest.lora_pack(spec.id, p.preset) if p.preset != PRESET_NONE else None
        # In use from before the download to the saved video: GC leaves the model alone.
        with models.use(spec.id, var.name), contextlib.ExitStack() as leases:
            if pack is not None:
                leases.enter_context(models.use(pack.id))
            try:
                return self._run(ctx, p, spec, var)
            finally:
                if p.gpus > 1:  # a model split across GPUs is not kept for the next job
                    self._unload_for("a multi-GPU job ended")

    def _run(self, ctx: JobContext, p: WanParams, spec: ModelSpec, var: VariantSpec) -> JobOutput:
        from . import wan_load

        models = self.host.models
        # Before anything imports diffusers (a development variant's build, the load): waits for
        # the app's ahead-of-time import instead of racing it.
        libraries.load()
        if not models.status(spec.id, var.name).complete:
            ctx.stage("downloading_model", 0.02, f"{spec.title} ({var.name}) is not on disk yet")
        folder = ctx.ensure_model(spec.id, var.name)
        p = self._with_preset(ctx, p, spec)
        profile = self.host.hardware
        try:
            device = wan_load.resolve_device(profile.device)
        except RuntimeError as exc:
            raise JobFailedError(
                FailureCategory.cuda_error,
                str(exc),
                ("run on the CPU: WAN_DEVICE=cpu", "install a torch build for this GPU"),
            ) from exc
        if p.gpus > 1:
            context_parallel.check(p, spec, folder)  # before anything loads
        shape = _shape(p)
        data_dir = self.host.settings.data_dir
        mp = estimate_plan(
            self.host.models, profile, data_dir, spec, var, shape, keep=self._strategy_of(folder)
        )
        self._record_plan(ctx, mp)

        timings: dict[str, float] = {}
        for attempt in (1, 2):
            oom: str | None = None
            try:
                model = self._ensure_loaded(ctx, spec, var, folder, mp, device, timings)
                if p.gpus > 1:
                    ctx.log("info", context_parallel.enable(model.pipe, p.gpus))
                frames, details = generate(self.host, ctx, model, p, spec, timings, self._hashes)
                break
            except CancelledError:
                self._after_failure(keep_model=True)
                raise
            except JobFailedError as exc:
                self._after_failure(exc.failure.category is FailureCategory.invalid_input)
                raise
            except Exception as exc:
                if not is_out_of_memory(exc) or attempt == 2 or mp.next_strategy() is None:
                    self._after_failure(keep_model=False)
                    if is_out_of_memory(exc):
                        raise _oom_failure(exc, mp, p, spec) from exc
                    raise
                oom = f"{type(exc).__name__}: {exc}"
            # Out of the except block: the error's traceback, which holds the frames (and their
            # tensors and the pipeline) of the failed call, is gone, so freeing frees.
            self._after_failure(keep_model=False)
            previous = mp
            mp = estimate_plan(
                self.host.models, profile, data_dir, spec, var, shape, after=previous.strategy
            )
            ctx.log("warning", f"out of memory with {previous.strategy}: {oom}")
            ctx.warn(
                f"ran out of memory with {previous.strategy}; retrying once with "
                f"{mp.strategy} ({mp.description}: slower, needs less memory)",
                code="out_of_memory_retry",
            )
            self._record_plan(ctx, mp)
            ctx.timer.times.clear()

        if p.cache == CACHE_OFF and not timings.get("compile"):
            # The planner learns the plain speed: a cached job skips calls, a compiling one
            # spends its first steps compiling.
            record_job(data_dir, spec.id, var.name, mp, shape, profile, details)
        ctx.set_state(JobState.encoding)
        ctx.stage("saving", 0.95, "writing the MP4, thumbnail and sidecar")
        return save_video(
            ctx, frames, p.fps, sidecar(self.host, p, spec, var, model, details, timings)
        )

    def _with_preset(self, ctx: JobContext, p: WanParams, spec: ModelSpec) -> WanParams:
        """The job's parameters with its preset's LoRAs added (fetched first if needed): each
        file on its own expert at the pack's strength. Steps and guidance were set at submit."""
        if p.preset == PRESET_NONE:
            return p
        pack = self.host.models.manifest.lora_pack(spec.id, p.preset)
        if pack is None:  # the manifest changed since the job was queued
            raise JobFailedError(
                FailureCategory.invalid_input,
                f"{spec.model_type} has no {p.preset} preset in this models.toml",
                (f"run the job with preset {PRESET_NONE}",),
            )
        if not self.host.models.status(pack.id).complete:
            ctx.stage("downloading_model", 0.03, f"{pack.title} is not on disk yet")
        folder = ctx.ensure_model(pack.id, None)
        added = []
        for expert, lora in pack.experts.items():
            found = sorted(folder.rglob(lora.file))
            if len(found) != 1:
                raise JobFailedError(
                    FailureCategory.model_unavailable,
                    f"{pack.title}: {len(found)} files named {lora.file} in {folder}",
                    (f"verify it: wan models verify {pack.id}",),
                )
            high = expert == "transformer"
            added.append(
                LoraSpec(
                    str(found[0]),
                    strength=lora.strength if high else 0.0,
                    strength_2=0.0 if high else lora.strength,
                )
            )
        ctx.log("info", f"preset {p.preset}: {pack.title}, {p.steps} steps")
        return replace(p, loras=(*added, *p.loras))

    def _record_plan(self, ctx: JobContext, mp: MemoryPlan) -> None:
        ctx.update(memory_plan=mp.to_dict(), estimate={**dict(ctx.job.estimate), **mp.estimate()})
        ctx.log("info", f"memory plan: {mp.summary}")
        for note in mp.notes:
            if not any(note in w for w in ctx.job.warnings):  # said at submit already
                ctx.warn(note, code="memory_plan")

    def _strategy_of(self, folder: Path) -> str | None:
        """The memory strategy of the loaded model if it is this folder's."""
        current = self._loaded
        return current.plan.strategy if current is not None and current.folder == folder else None

    def _after_failure(self, keep_model: bool) -> None:
        from .wan_load import free_memory

        pipe = self.diffusers_pipeline()
        if pipe is not None:
            try:
                pipe.maybe_free_model_hooks()  # offloaded models back to the CPU
            except Exception:
                keep_model = False
            del pipe  # no reference of ours may outlive the unload
        if not keep_model:
            self._unload_for("failed job: memory freed")
        free_memory()

    # ----------------------------------------------------------------------------- loading

    def _ensure_loaded(
        self,
        ctx: JobContext,
        spec: ModelSpec,
        var: VariantSpec,
        folder: Path,
        mp: MemoryPlan,
        device: Any,
        timings: dict[str, float],
    ) -> WarmModel:
        from . import wan_load
        from .preview import LatentPreview

        ctx.set_state(JobState.loading)
        key = (spec.id, var.name, str(folder), mp.strategy, mp.compute_dtype, str(device))
        with self._lock:
            current = self._loaded
            if current is not None and current.key == key:
                ctx.stage("loading_model", 0.05, f"already loaded ({mp.summary})")
                current.last_used = time.time()
                current.plan = mp
                if mp.vae_tiling:
                    current.pipe.vae.enable_tiling()
                else:
                    current.pipe.vae.disable_tiling()
                timings["load"] = 0.0
                return current
            other = None if current is None else current.folder
            del current  # the old model must be freed before the new one loads
        if other is not None:
            why = (
                "another model needs the room"
                if other != folder
                else f"memory strategy changes to {mp.strategy}"
            )
            self._unload_for(why)
        ctx.stage("loading_model", 0.05, mp.summary)
        t0 = time.monotonic()
        pipe = wan_load.load_pipeline(
            folder, mp.compute_dtype, device=wan_load.weights_device(mp, device)
        )
        preview = None
        if self.host.settings.preview_every > 0:
            preview = LatentPreview.fit(pipe.vae, int(pipe.vae_scale_factor_spatial))
        wan_load.apply_strategy(pipe, mp, device)
        backend = self._accelerate(pipe, device)
        strategy = STRATEGIES[mp.strategy]
        loras = LoraSet(
            pipe,
            [name for name, _ in wan_load.experts(pipe)],
            fp8_compute=wan_load.torch_dtype(mp.compute_dtype) if strategy.fp8 else None,
        )
        wan_load.settle_heap()
        load_s = time.monotonic() - t0
        loaded = WarmModel(key, spec.id, var.name, folder, mp, pipe, device, loras, load_s)
        loaded.lease.enter_context(self.host.models.use(spec.id, var.name))
        loaded.preview = preview
        loaded.attention_backend = backend
        loaded.compiled = self.host.settings.compile_blocks
        with self._lock:
            self._loaded = loaded
        timings["load"] = round(load_s, 3)
        self.host.publish(
            ModelLoaded(model_id=spec.id, variant=var.name, strategy=mp.strategy, seconds=load_s)
        )
        ctx.log(
            "info",
            f"loaded {spec.id} ({var.name}) in {load_s:.1f} s: {mp.strategy}, "
            f"attention {backend}" + (", regional compile" if loaded.compiled else ""),
        )
        return loaded

    def _accelerate(self, pipe: Any, device: Any) -> str:
        """The settings' attention backend and regional compile on every transformer; the
        backend's name."""
        from . import accelerate, wan_load

        settings = self.host.settings
        experts = wan_load.experts(pipe)
        backend = accelerate.attention_backend(settings.attention_backend, device)
        try:
            accelerate.set_attention_backend(experts, backend)
        except (RuntimeError, ValueError) as exc:
            raise JobFailedError(
                FailureCategory.invalid_input,
                f"attention backend {backend} cannot run here: {exc}",
                (
                    "set WAN_ATTENTION_BACKEND=auto (the fastest one installed)",
                    "or install the package the backend needs",
                ),
            ) from exc
        if settings.compile_blocks:
            accelerate.compile_blocks(experts)
        return backend


# ------------------------------------------------------------------------------------ helpers


def _shape(p: WanParams) -> JobShape:
    return JobShape(
        width=p.width,
        height=p.height,
        frames=p.frames,
        steps=p.steps,
        guidance=p.guidance_scale > 1.0,
        image=p.image is not None,
        gpus=p.gpus,
    )


def _oom_failure(
    exc: BaseException, mp: MemoryPlan, p: WanParams, spec: ModelSpec
) -> JobFailedError:
    where = "GPU" if STRATEGIES[mp.strategy].gpu else "computer"
    tips: list[str] = []
    if p.width * p.height > 848 * 480:
        tips.append(f"use 854x480 instead of {p.width}x{p.height}")
    if p.frames > 49:
        tips.append(f"use 49 frames instead of {p.frames}")
    lighter = [v.name for v in spec.variants.values() if v.dtype in ("float8_e4m3fn", "int8")]
    if lighter:
        tips.append(f"use the {lighter[0]} variant of {spec.model_type}")
    return JobFailedError(
        FailureCategory.out_of_memory,
        f"the {where} ran out of memory, also with the {mp.strategy} strategy "
        f"(estimated {mp.vram_gb if STRATEGIES[mp.strategy].gpu else mp.ram_gb:.1f} GiB)",
        (*tips, *OOM_SUGGESTIONS),
        detail=f"{type(exc).__name__}: {exc}",
    )
