"""A warm Wan model and one generation on it: inputs, prompt embeddings (cached), LoRAs, the
step callback (progress, experts, previews, cancellation), and the sidecar that records the run.
"""

from __future__ import annotations

import contextlib
import hashlib
import statistics
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wan_desktop.models.manifest import ModelSpec, VariantSpec

from ..errors import JobFailedError
from ..jobs import FailureCategory, JobState
from ..lora import LoraSet
from ..params import CACHE_OFF, WanParams
from ..planner import MemoryPlan
from .base import LoadedModel, PipelineHost

if TYPE_CHECKING:
    from ..context import JobContext

HIGH_NOISE, LOW_NOISE = "high_noise", "low_noise"
PROMPT_CACHE = 16


@dataclass
class WarmModel:
    """A loaded model, kept for the next job of the same model."""

    key: tuple[str, ...]
    model_id: str
    variant: str
    folder: Path
    plan: MemoryPlan
    pipe: Any
    device: Any
    loras: LoraSet
    load_s: float
    loaded_at: float = field(default_factory=time.time)
    last_used: float = field(default_factory=time.time)
    preview: Any = None  # LatentPreview, fitted at load when previews are on
    attention_backend: str = "native"  # diffusers' backend set on every transformer at load
    compiled: bool = False  # regional compilation on (compiles in the first calls)
    compile_s: float | None = None  # compile seconds of its jobs so far (None: no job yet)
    image_pipe: Any = None  # the image-to-video view of a text-to-video folder (TI2V-5B)
    # The orchestrator's in-use lease: garbage collection never removes a loaded model.
    lease: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    # Text embeddings of recent prompts (on the CPU): trying seeds or LoRAs on one prompt skips
    # the text encoder, which under model offload also saves moving 11 GB to the GPU.
    prompts: OrderedDict[tuple[str, str, bool], tuple[Any, Any]] = field(
        default_factory=OrderedDict
    )

    def info(self) -> LoadedModel:
        return LoadedModel(
            self.model_id, self.variant, self.plan.strategy, self.loaded_at, self.last_used
        )


class FileHashes:
    """sha256 of input files (LoRA, image) for the sidecar, remembered per file version."""

    def __init__(self) -> None:
        self._hashes: dict[tuple[str, int, int], str | None] = {}

    def __call__(self, path: str) -> str | None:
        try:
            st = Path(path).stat()
        except OSError:
            return None
        key = (path, st.st_size, st.st_mtime_ns)
        if key not in self._hashes:
            if len(self._hashes) > 256:
                self._hashes.clear()
            self._hashes[key] = _sha256(path)
        return self._hashes[key]


def generate(
    host: PipelineHost,
    ctx: JobContext,
    model: WarmModel,
    p: WanParams,
    spec: ModelSpec,
    timings: dict[str, float],
    hashes: FileHashes,
) -> tuple[Any, dict[str, Any]]:
    import torch

    from . import accelerate, wan_load

    ctx.stage("preparing_inputs", 0.07)
    images = {
        k: _open_image(v, k) for k, v in (("image", p.image), ("last_image", p.end_image)) if v
    }
    pipe = model.pipe
    if images and not _is_image_pipeline(pipe):
        if model.image_pipe is None:
            model.image_pipe = wan_load.image_pipeline(pipe)
        pipe = model.image_pipe
    scheduler = pipe.scheduler
    pipe.scheduler = type(scheduler).from_config(scheduler.config, flow_shift=p.flow_shift)
    guided = p.guidance_scale > 1.0
    t0 = time.monotonic()
    embeds, cached = _prompt_embeds(model, pipe, p, guided, spec.memory.text_len)
    timings["prompt"] = round(time.monotonic() - t0, 3)
    device = pipe._execution_device

    if p.loras:
        ctx.stage("applying_lora", 0.08, f"{len(p.loras)} LoRA(s)")
    applied, skipped = model.loras.apply(p.loras)
    for s in skipped:
        ctx.warn(
            f"LoRA {Path(s.path).name} was skipped: {s.reason}",
            code="lora_skipped",
            suggestions=(
                f"use a LoRA made for {spec.title}",
                "check the file in the LoRA folder (a failed download can leave a stub)",
            ),
        )
        ctx.log("warning", f"LoRA {s.path}: {s.detail}")

    n = p.steps
    schedule: list[str | None] = []
    hooks = []
    started = False

    def before_forward(module: Any, args: Any) -> None:
        nonlocal started
        if not started:
            started = True
            ctx.timer.start()  # step 1's time then excludes the prompt encoding
        ctx.check_cancelled()  # cancel within half a step, between the two CFG passes

    def on_step(pipeline: Any, i: int, t: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        if not schedule:
            schedule.extend(expert_schedule(pipeline, n))
        done = i + 1
        remaining = Counter(schedule[done:])
        ctx.step(done, n, expert=schedule[i], remaining=dict(remaining))
        every = host.settings.preview_every
        if model.preview is not None and every > 0 and done % every == 0 and done < n:
            ctx.preview(done, model.preview(kwargs["latents"]))
        if done == n:
            ctx.set_state(JobState.encoding)
            ctx.stage("post_processing", 0.90, "decoding the video")
        return kwargs

    for _, module in wan_load.experts(pipe):
        hooks.append(module.register_forward_pre_hook(before_forward))
    kwargs: dict[str, Any] = dict(
        prompt_embeds=embeds[0].to(device),
        negative_prompt_embeds=embeds[1].to(device) if guided else None,
        height=p.height,
        width=p.width,
        num_frames=p.frames,
        num_inference_steps=n,
        guidance_scale=p.guidance_scale,
        # A CPU generator draws the same noise on every machine: a seed reproduces anywhere.
        generator=torch.Generator(device="cpu").manual_seed(p.seed),
        output_type="np",
        callback_on_step_end=on_step,
        callback_on_step_end_tensor_inputs=["latents"],
        **images,
    )
    if pipe.config.boundary_ratio is not None:
        kwargs["guidance_scale_2"] = p.guidance_scale_2
    ctx.set_state(JobState.running)
    compiling = model.compiled and model.compile_s is None
    ctx.stage(
        "generating",
        0.10,
        f"{n} steps" + ("; the first calls compile the transformer blocks" if compiling else ""),
    )
    peak = wan_load.PeakMemory(model.device)
    compiled_before = accelerate.compile_seconds()
    t0 = time.monotonic()
    try:
        with (
            wan_load.quiet_diffusers(),
            accelerate.step_cache(wan_load.experts(pipe), p.cache) as cache,
        ):
            out = pipe(**kwargs)
    finally:
        for h in hooks:
            h.remove()
    timings["generate"] = round(time.monotonic() - t0, 3)
    compile_report: dict[str, Any] = {"regional": model.compiled}
    if model.compiled:
        # Paid by the first job after a load, and again by a job that changes what the blocks
        # run (a step cache's hooks): torch keeps each compiled version while the model is warm.
        spent = round(max(0.0, accelerate.compile_seconds() - compiled_before), 3)
        compile_report["compile_s"] = spent
        model.compile_s = (model.compile_s or 0.0) + spent
        if spent > 0:
            timings["compile"] = spent
            ctx.log("info", f"compiled the transformer blocks in {spent:.1f} s")
    cache_report = cache.report()
    if p.cache != CACHE_OFF:
        ctx.log(
            "info",
            f"step cache {p.cache}: skipped {cache.skipped} of "
            f"{cache_report['transformer_calls']} transformer calls",
        )
    pipe.maybe_free_model_hooks()
    model.last_used = time.time()
    steps = {
        str(expert): round(statistics.median(times), 4)
        for expert, times in ctx.timer.times.items()
        if times
    }
    details = {
        "pipeline": type(pipe).__name__,
        "scheduler": {"class": type(pipe.scheduler).__name__, **dict(pipe.scheduler.config)},
        "experts": dict(Counter(str(e) for e in schedule)),
        "boundary_ratio": pipe.config.boundary_ratio,
        "expand_timesteps": bool(getattr(pipe.config, "expand_timesteps", False)),
        "generator": "cpu",
        "device": str(model.device),
        "prompt_embeddings": "cached" if cached else "encoded",
        "median_step_s": steps,
        "accelerators": {
            "attention_backend": model.attention_backend,
            "cache": cache_report,
            "compile": compile_report,
        },
        "peak": peak.report(),
        "loras": [
            *(
                {"path": a.path, "sha256": hashes(a.path), "strengths": a.strengths}
                for a in applied
            ),
            *({"path": s.path, "skipped": s.reason, "error": s.detail} for s in skipped),
        ],
        "inputs": {
            name: {"path": path, "sha256": hashes(path)}
            for name, path in (("image", p.image), ("end_image", p.end_image))
            if path
        },
    }
    return out.frames[0], details


def sidecar(
    host: PipelineHost,
    p: WanParams,
    spec: ModelSpec,
    var: VariantSpec,
    model: WarmModel,
    details: dict[str, Any],
    timings: dict[str, float],
) -> dict[str, Any]:
    marker = host.models.completion(model.model_id, model.variant)
    return {
        "seed": p.seed,
        "model": {
            "title": spec.title,
            "dtype": var.dtype,
            "compute_dtype": model.plan.compute_dtype,
            "label": var.label,
            "source": marker.source if marker else None,
            "completed_at": marker.completed_at if marker else None,
            "files": [f.to_dict() for f in marker.files] if marker else [],
        },
        "timings_s": {**timings, "warm": timings.get("load") == 0.0},
        "memory": {
            "strategy": model.plan.strategy,
            "vae_tiling": model.plan.vae_tiling,
            "plan": model.plan.to_dict(),
            **details.pop("peak"),
        },
        "generation": details,
    }


def _prompt_embeds(
    model: WarmModel, pipe: Any, p: WanParams, guided: bool, text_len: int
) -> tuple[tuple[Any, Any], bool]:
    """(prompt, negative) embeddings exactly as the pipeline would encode them; cached."""
    import torch

    key = (p.prompt, p.negative_prompt, guided)
    if key in model.prompts:
        model.prompts.move_to_end(key)
        return model.prompts[key], True
    with torch.no_grad():
        positive, negative = pipe.encode_prompt(
            prompt=p.prompt,
            negative_prompt=p.negative_prompt or None,
            do_classifier_free_guidance=guided,
            num_videos_per_prompt=1,
            max_sequence_length=text_len,
            device=pipe._execution_device,
        )
    embeds = (positive.cpu(), negative.cpu() if negative is not None else None)
    model.prompts[key] = embeds
    while len(model.prompts) > PROMPT_CACHE:
        model.prompts.popitem(last=False)
    return embeds, False


def expert_schedule(pipe: Any, n: int) -> list[str | None]:
    """Which expert runs each step: the high-noise one while t >= boundary_ratio x T (diffusers'
    rule), so the split depends on the scheduler's flow_shift. None for one-transformer models."""
    boundary = pipe.config.boundary_ratio
    if boundary is None:
        return [None] * n
    limit = boundary * pipe.scheduler.config.num_train_timesteps
    return [HIGH_NOISE if float(t) >= limit else LOW_NOISE for t in pipe.scheduler.timesteps[:n]]


def _is_image_pipeline(pipe: Any) -> bool:
    return type(pipe).__name__ == "WanImageToVideoPipeline"


def _open_image(path: str, field_name: str) -> Any:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except (OSError, UnidentifiedImageError) as exc:
        raise JobFailedError(
            FailureCategory.invalid_input,
            f"the {field_name.replace('_', ' ')} {Path(path).name} could not be read: {exc}",
            ("use a JPEG, PNG or WebP image",),
        ) from exc


def _sha256(path: str) -> str | None:
    h = hashlib.sha256()
    try:
        with Path(path).open("rb") as fh:
            while chunk := fh.read(1 << 20):
                h.update(chunk)
    except OSError:
        return None
    return h.hexdigest()
