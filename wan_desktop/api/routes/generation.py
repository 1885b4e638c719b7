"""``POST /generation/submit`` (JSON, or multipart with images) and ``GET …/models/detect``."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from wan_desktop.engine import InvalidInputError, JobKind, JobSpec, Priority
from wan_desktop.engine.params import (
    CHOICES,
    CONTRACT_RESOLUTIONS,
    LIMITS,
    PROMPT_MAX,
    TEXT_MAX,
)

from ..context import ApiContext, Ctx
from ..errors import detail_list, excerpt
from ..mapping import STATUS
from ..ratelimit import client_key, refuse_if_limited
from ..uploads import MULTIPART_SLACK, read_form, save_image

router = APIRouter(tags=["generation"])

MODEL_TYPES = ("T2V-A14B", "I2V-A14B", "TI2V-5B")
# The contract asks an image of both (TI2V-5B could run text-only, but not through this route);
# detect's requirements.requires_image says the same.
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

# The contract's names for the engine's parameters; the limits are the engine's (params.LIMITS).
ENGINE_NAMES = {"num_frames": "frames"}


def _range(field: str, kind: str) -> dict[str, Any]:
    lo, hi = LIMITS[ENGINE_NAMES.get(field, field)]
    if kind == "integer":
        return {"type": kind, "minimum": int(lo), "maximum": int(hi)}
    return {"type": kind, "minimum": lo, "maximum": hi}


_FIELDS: dict[str, dict[str, Any]] = {
    "model_type": {"type": "string", "enum": list(MODEL_TYPES)},
    "prompt": {"type": "string", "minLength": 1, "maxLength": PROMPT_MAX},
    "resolution": {"type": "string", "enum": list(CONTRACT_RESOLUTIONS)},
    "steps": _range("steps", "integer"),
    "lora_path": {"type": "string"},
    "lora_strength": _range("lora_strength", "number"),
    "negative_prompt": {"type": "string", "maxLength": TEXT_MAX["negative_prompt"]},
    "seed": _range("seed", "integer"),
    "num_frames": _range("num_frames", "integer"),
    "fps": _range("fps", "integer"),
    "guidance_scale": _range("guidance_scale", "number"),
    "priority": {"type": "string", "enum": ["low", "normal", "high"]},
    "gpus": _range("gpus", "integer"),  # a pool splits one job
    # Named choices, as the engine declares them (params.CHOICES): the engine checks the value.
    **{name: {"type": "string", "enum": list(values)} for name, values in CHOICES.items()},
}
# Every field submit takes (images as file parts); anything else is refused, not ignored.
KNOWN_FIELDS = (*_FIELDS, "image", "end_image")
MAX_UNKNOWN_REPORTED = 10
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
        unknown = [k for k in self.raw if k not in KNOWN_FIELDS]
        for name in unknown[:MAX_UNKNOWN_REPORTED]:
            self.errors[excerpt(name)] = (
                f"unknown field; send only {', '.join(KNOWN_FIELDS)} (camelCase aliases: "
                f"{', '.join(ALIASES)})"
            )
        if len(unknown) > MAX_UNKNOWN_REPORTED:
            self.errors["body"] = f"{len(unknown)} unknown fields; remove them"

    def text(self, name: str) -> str | None:
        v = self.raw.get(name)
        if v is None:
            return None
        if not isinstance(v, str):
            self.errors[name] = "must be text"
            return None
        return v

    def choice(self, name: str) -> str | None:
        v = self.text(name)
        if v is not None and v.strip().lower() not in CHOICES[name]:
            self.errors[name] = f"{v!r} is not one of {', '.join(CHOICES[name])}"
            return None
        return v

    def integer(self, name: str) -> int | None:
        lo, hi = (int(b) for b in LIMITS[ENGINE_NAMES.get(name, name)])
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

    def number(self, name: str) -> float | None:
        lo, hi = LIMITS[ENGINE_NAMES.get(name, name)]
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
    steps = f.integer("steps")
    strength = f.number("lora_strength")
    priority = f.text("priority")
    if priority is not None and priority not in ("low", "normal", "high"):
        f.errors["priority"] = f"{priority!r} is not one of low, normal, high"
    negative = f.text("negative_prompt")
    if negative is not None and len(negative.strip()) > TEXT_MAX["negative_prompt"]:
        f.errors["negative_prompt"] = f"shorten it to {TEXT_MAX['negative_prompt']} characters"
    params: dict[str, Any] = {
        "model": model_type,
        "prompt": prompt,
        "resolution": resolution,
        "steps": DEFAULT_STEPS if steps is None else steps,
        "seed": f.integer("seed"),
        "frames": f.integer("num_frames"),
        "fps": f.integer("fps"),
        "guidance_scale": f.number("guidance_scale"),
        "negative_prompt": negative,
        "lora_strength": 1.0 if strength is None else strength,  # an explicit 0 stays 0
        "priority": priority or "normal",
        "gpus": f.integer("gpus"),
        **{name: f.choice(name) for name in CHOICES},
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
    # An empty text part where a file goes (a form's empty file input) means no file.
    for name in ("image", "end_image"):
        if raw.get(name) == "" and name not in files:
            del raw[name]
    fields = _Fields({**raw, **dict.fromkeys(files, "")})
    for name in files:
        fields.raw.pop(name)
    params = _parse(fields)
    spec = ctx.engine.models.manifest
    model_type = params["model"]
    warnings: list[str] = []
    if model_type in MODEL_TYPES:
        model = spec.get(model_type)
        if model_type in IMAGE_REQUIRED and "image" not in files:
            fields.errors["image"] = (
                f"{model_type} needs an image: send multipart/form-data with an image file"
            )
        if "image" in files and not model.accepts_image:
            fields.errors["image"] = f"{model_type} takes no image; use I2V-A14B or TI2V-5B"
        if "end_image" in files and not model.supports_end_image:
            if model.accepts_image:
                # The original backend took an end image for every image model: accept it, say
                # it is not used, and do not keep the file.
                files.pop("end_image")
                warnings.append(end_image_unused(model_type))
            else:
                fields.errors["end_image"] = f"{model_type} takes no end image; use I2V-A14B"
    lora_ref = fields.text("lora_path") or ""
    lora_file = None
    if lora_ref.strip():
        try:
            lora_file = ctx.loras.resolve(lora_ref)
        except InvalidInputError as exc:  # naming lora_path
            fields.errors.update(exc.errors)
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
    try:
        job = await run_in_threadpool(
            ctx.engine.submit,
            JobSpec(
                kind=JobKind.wan,
                params=engine_params,
                priority=priority,
                client=client_key(request),
                warnings=tuple(warnings),
            ),
        )
    except Exception:
        # Refused (an image too small for the engine…): the uploads it would have used go.
        for name in ("image", "end_image"):
            if name in params:
                Path(params[name]).unlink(missing_ok=True)
        raise
    return submit_answer(ctx, job, lora_ref.strip() or None, strength)


def end_image_unused(model_type: str) -> str:
    return (
        f"the end image is not used: {model_type} makes a video from the start image only; "
        "choose I2V-A14B for a first-last-frame video"
    )


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
    if job.warnings:
        message += "; warning: " + "; ".join(job.warnings)
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
        "warnings": list(job.warnings),
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
        chosen, confidence = "I2V-A14B", 0.9
        explanation.append(
            "a start and an end image: I2V-A14B, the only model that uses an end image "
            "(first-last-frame video)"
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
        # What submit enforces for this model (the two must never disagree).
        "requires_image": chosen in IMAGE_REQUIRED,
        "supports_end_image": spec.supports_end_image,
        "estimated_vram_gb": est.vram_gb,
        "estimated_time_per_frame": est.seconds_per_frame,  # seconds per output frame
        "max_resolution": d.max_resolution,
        "recommended_steps": d.steps,
        **est.to_dict(),
    }
    others = [m for m in MODEL_TYPES if m != chosen]
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
