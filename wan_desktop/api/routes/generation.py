"""``POST /generation/submit`` (JSON, or multipart with images) and ``GET …/models/detect``."""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from wan_desktop.engine import JobKind, JobSpec, Priority
from wan_desktop.engine.params import (
    CONTRACT_RESOLUTIONS,
    MAX_GPUS,
    PROMPT_MAX,
    SEED_MAX,
    STEPS_MAX,
)

from ..context import ApiContext, Ctx
from ..errors import detail_list
from ..mapping import STATUS
from ..ratelimit import client_key, refuse_if_limited
from ..uploads import MULTIPART_SLACK, read_form, save_image

router = APIRouter(tags=["generation"])

MODEL_TYPES = ("T2V-A14B", "I2V-A14B", "TI2V-5B")
# The contract asks an image of both (TI2V-5B could run text-only, but not through this route).
IMAGE_REQUIRED = ("I2V-A14B", "TI2V-5B")
DEFAULT_RESOLUTION = "1280x720"
DEFAULT_STEPS = 50
ALIASES = {"modelType": "model_type", "loraPath": "lora_path", "loraStrength": "lora_strength"}
_TRANSFORM = re.compile(
    r"\b(transform|transforms|transforming|morph|morphs|morphing|evolve|evolves|evolving|"
    r"animate|animates|animating|from this image|based on|starting from|turn this|"
    r"bring this|make this)\b",
    re.IGNORECASE,
)

_FIELDS = {
    "model_type": {"type": "string", "enum": list(MODEL_TYPES)},
    "prompt": {"type": "string", "minLength": 1, "maxLength": PROMPT_MAX},
    "resolution": {"type": "string", "enum": list(CONTRACT_RESOLUTIONS)},
    "steps": {"type": "integer", "minimum": 1, "maximum": STEPS_MAX},
    "lora_path": {"type": "string"},
    "lora_strength": {"type": "number", "minimum": 0, "maximum": 2},
    "negative_prompt": {"type": "string"},
    "seed": {"type": "integer", "minimum": 0, "maximum": SEED_MAX},
    "num_frames": {"type": "integer"},
    "fps": {"type": "integer"},
    "guidance_scale": {"type": "number"},
    "priority": {"type": "string", "enum": ["low", "normal", "high"]},
    "gpus": {"type": "integer", "minimum": 1, "maximum": MAX_GPUS},  # a pool splits one job
}
_OPENAPI = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["model_type", "prompt"],
                    "properties": _FIELDS,
                }
            },
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["model_type", "prompt"],
                    "properties": {
                        **_FIELDS,
                        "image": {"type": "string", "format": "binary"},
                        "end_image": {"type": "string", "format": "binary"},
                    },
                }
            },
        },
    }
}


class _Fields:
    """Reads and checks the request's fields, collecting every error before answering."""

    def __init__(self, raw: dict[str, Any]) -> None:
        self.raw = {ALIASES.get(k, k): v for k, v in raw.items()}
        self.errors: dict[str, str] = {}

    def text(self, name: str) -> str | None:
        v = self.raw.get(name)
        if v is None:
            return None
        if not isinstance(v, str):
            self.errors[name] = "must be text"
            return None
        return v

    def integer(self, name: str, lo: int, hi: int) -> int | None:
        v = self.raw.get(name)
        if v is None or v == "":
            return None
        try:
            if isinstance(v, bool) or (isinstance(v, float) and not v.is_integer()):
                raise ValueError
            n = int(v)
        except (TypeError, ValueError):
            self.errors[name] = f"must be a whole number {lo}–{hi}"
            return None
        if not lo <= n <= hi:
            self.errors[name] = f"is {n}; use {lo}–{hi}"
            return None
        return n

    def number(self, name: str, lo: float, hi: float) -> float | None:
        v = self.raw.get(name)
        if v is None or v == "":
            return None
        try:
            if isinstance(v, bool):
                raise ValueError
            f = float(v)
        except (TypeError, ValueError):
            self.errors[name] = f"must be a number {lo}–{hi}"
            return None
        if not lo <= f <= hi:  # NaN fails this too
            self.errors[name] = f"is {v}; use {lo}–{hi}"
            return None
        return f


def _parse(f: _Fields) -> dict[str, Any]:
    """The contract's fields to engine parameters (images and LoRA resolved by the caller)."""
    model_type = f.text("model_type")
    if model_type is None:
        f.errors["model_type"] = f"required: one of {', '.join(MODEL_TYPES)}"
    elif model_type not in MODEL_TYPES:
        f.errors["model_type"] = (
            f"{model_type!r} is not one of {', '.join(MODEL_TYPES)} (exact case)"
        )
    prompt = (f.text("prompt") or "").strip()
    if "prompt" not in f.errors:
        if not prompt:
            f.errors["prompt"] = f"required: describe the video (1–{PROMPT_MAX} characters)"
        elif len(prompt) > PROMPT_MAX:
            f.errors["prompt"] = f"is {len(prompt)} characters; shorten it to {PROMPT_MAX}"
    resolution = f.text("resolution") or DEFAULT_RESOLUTION
    if "resolution" not in f.errors and resolution not in CONTRACT_RESOLUTIONS:
        f.errors["resolution"] = f"{resolution!r} is not one of {', '.join(CONTRACT_RESOLUTIONS)}"
    steps = f.integer("steps", 1, STEPS_MAX)
    strength = f.number("lora_strength", 0.0, 2.0)
    priority = f.text("priority")
    if priority is not None and priority not in ("low", "normal", "high"):
        f.errors["priority"] = f"{priority!r} is not one of low, normal, high"
    negative = f.text("negative_prompt")
    if negative is not None and len(negative) > 2000:
        f.errors["negative_prompt"] = "shorten it to 2000 characters"
    params: dict[str, Any] = {
        "model": model_type,
        "prompt": prompt,
        "resolution": resolution,
        "steps": DEFAULT_STEPS if steps is None else steps,
        "seed": f.integer("seed", 0, SEED_MAX),
        "frames": f.integer("num_frames", 1, 241),
        "fps": f.integer("fps", 1, 60),
        "guidance_scale": f.number("guidance_scale", 0.0, 30.0),
        "negative_prompt": negative,
        "lora_strength": 1.0 if strength is None else strength,  # an explicit 0 stays 0
        "priority": priority or "normal",
        "gpus": f.integer("gpus", 1, MAX_GPUS),
    }
    return params


@router.post(
    "/generation/submit",
    openapi_extra=_OPENAPI,
    summary="Queue a Wan generation (JSON, or multipart/form-data with image / end_image)",
)
async def submit(request: Request, ctx: Ctx) -> dict[str, Any]:
    content_type = request.headers.get("content-type", "")
    files: dict[str, Any] = {}
    if content_type.startswith("multipart/form-data"):
        limit = 2 * ctx.settings.max_image_bytes + MULTIPART_SLACK
        form = await read_form(request, max_body=limit, field="image")
        raw: dict[str, Any] = {}
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                files[key] = value
            else:
                raw[key] = value
    elif content_type.startswith("application/json") or not content_type:
        try:
            raw = await request.json()
        except ValueError:
            raise HTTPException(
                422, detail=detail_list({"body": "the body is not valid JSON"})
            ) from None
        if not isinstance(raw, dict):
            raise HTTPException(422, detail=detail_list({"body": "send a JSON object of fields"}))
    else:
        raise HTTPException(
            415, detail="send application/json, or multipart/form-data when there is an image"
        )
    fields = _Fields(raw)
    params = _parse(fields)
    spec = ctx.engine.models.manifest
    model_type = params["model"]
    if model_type in MODEL_TYPES:
        model = spec.get(model_type)
        if model_type in IMAGE_REQUIRED and "image" not in files:
            fields.errors["image"] = (
                f"{model_type} needs an image: send multipart/form-data with an image file"
            )
        if "image" in files and not model.accepts_image:
            fields.errors["image"] = f"{model_type} takes no image; use I2V-A14B or TI2V-5B"
        if "end_image" in files and not model.supports_end_image:
            fields.errors["end_image"] = f"{model_type} takes no end image; use I2V-A14B"
    lora_ref = fields.text("lora_path") or ""
    lora_file = None
    if lora_ref.strip():
        try:
            lora_file = ctx.loras.resolve(lora_ref)
        except Exception as exc:  # InvalidInputError naming lora_path
            fields.errors.update(getattr(exc, "errors", {"lora_path": str(exc)}))
    if fields.errors:
        raise HTTPException(422, detail=detail_list(fields.errors))
    refuse_if_limited(ctx.limiter, request)
    for name in ("image", "end_image"):
        if name in files:
            path = await run_in_threadpool(
                save_image,
                files[name],
                ctx.engine.settings.uploads_dir,
                field=name,
                max_bytes=ctx.settings.max_image_bytes,
            )
            params[name] = str(path)
    strength = params.pop("lora_strength")
    priority = Priority.parse(params.pop("priority"))
    if lora_file is not None:
        params["loras"] = [{"path": str(lora_file), "strength": strength}]
    engine_params = {k: v for k, v in params.items() if v is not None}
    job = await run_in_threadpool(
        ctx.engine.submit,
        JobSpec(
            kind=JobKind.wan, params=engine_params, priority=priority, client=client_key(request)
        ),
    )
    return submit_answer(ctx, job, lora_ref.strip() or None, strength)


def submit_answer(
    ctx: ApiContext, job: Any, lora_ref: str | None, strength: float
) -> dict[str, Any]:
    p = job.params
    t = ctx.mapper.task(job)
    if job.mock:
        message = f"Generation task queued in MOCK mode: no model runs [{job.label}]"
    elif job.label:
        message = f"Generation task queued [{job.label}]"
    else:
        message = "Generation task queued"
    strategy = job.estimate.get("strategy")
    return {
        "task_id": job.id,
        "status": STATUS[job.state],
        "message": message,
        "real_ai_enabled": not job.mock,
        "hardware_optimized": bool(strategy) and strategy != "mock",
        "estimated_vram_gb": job.estimate.get("vram_gb"),
        "estimated_time_minutes": job.estimate.get("minutes"),
        "mock": job.mock,
        "development": job.development,
        "model_label": job.label,
        "parameters": {
            "model_type": t["model_type"],
            "prompt": job.prompt,
            "resolution": t["resolution"],
            "steps": p.get("steps"),
            "image_path": t.get("image_path"),
            "end_image_path": t.get("end_image_path"),
            "lora_path": lora_ref,
            "lora_strength": strength,
            "negative_prompt": p.get("negative_prompt"),
            "seed": p.get("seed"),
            "num_frames": p.get("frames"),
            "fps": p.get("fps"),
            "guidance_scale": p.get("guidance_scale"),
            "output_resolution": f"{p.get('width')}x{p.get('height')}",
            "priority": job.priority.name,
        },
    }


@router.get("/generation/models/detect", summary="Which model fits a prompt and images")
def detect(
    ctx: Ctx,
    prompt: str = Query("", max_length=2000),
    has_image: bool = False,
    has_end_image: bool = False,
) -> dict[str, Any]:
    explanation: list[str] = []
    if has_end_image:
        # The contract's rule; but TI2V-5B's pipeline ignores an end image, so say which model
        # does use it and offer it first.
        chosen, confidence = "TI2V-5B", 0.6
        explanation.append("a start and an end image: the rule picks TI2V-5B")
        explanation.append(
            "only I2V-A14B uses the end image (first-last-frame video); TI2V-5B refuses it, "
            "so choose I2V-A14B to keep it"
        )
        if not has_image:
            explanation.append("an end image needs a start image too: add one")
            confidence = 0.5
    elif has_image:
        if _TRANSFORM.search(prompt):
            chosen, confidence = "TI2V-5B", 0.85
            explanation.append("the prompt asks to transform or animate the image: TI2V-5B")
        else:
            chosen, confidence = "I2V-A14B", 0.9
            explanation.append("an image to bring to life: I2V-A14B")
    else:
        chosen, confidence = "T2V-A14B", 0.95
        explanation.append("text only: T2V-A14B")
    spec = ctx.engine.models.manifest.get(chosen)
    d = spec.defaults
    # The VRAM planner's answer for the model's default job on this machine (cached).
    est = ctx.estimates.for_model(chosen, image=has_image)
    requirements = {
        "requires_image": spec.requires_image,
        "supports_end_image": spec.supports_end_image,
        "estimated_vram_gb": est.vram_gb,
        "estimated_time_per_frame": est.seconds_per_frame,  # seconds per output frame
        "max_resolution": d.max_resolution,
        "recommended_steps": d.steps,
        **est.to_dict(),
    }
    others = [m for m in MODEL_TYPES if m != chosen]
    if has_end_image:
        others.sort(key=lambda m: m != "I2V-A14B")
    alternatives = [{"model_type": m, "reason": _why(m)} for m in others]
    return {
        "detected_model_type": chosen,
        "confidence": confidence,
        "explanation": explanation,
        "requirements": requirements,
        "alternatives": alternatives,
    }


def _why(model_type: str) -> str:
    return {
        "T2V-A14B": "text to video, no image",
        "I2V-A14B": "animates a given image (optionally towards an end image)",
        "TI2V-5B": "text and/or image, 720p 24 fps, fits 24 GB with offloading",
    }[model_type]
