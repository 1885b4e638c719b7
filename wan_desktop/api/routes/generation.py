"""``POST /generation/submit`` (JSON, or multipart with images) and ``GET …/models/detect``."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from wan_desktop.engine import InvalidInputError, JobKind, JobSpec, Priority

from ..context import ApiContext, Ctx
from ..errors import detail_list, invalid
from ..mapping import STATUS
from ..ratelimit import client_key, refuse_if_limited
from ..submit_request import (
    ENGINE_FIELDS,
    ENGINE_NAMES,
    FILES,
    MODEL_TYPES,
    openapi_body,
    read_submit,
)
from ..uploads import MULTIPART_SLACK, read_form, save_image

router = APIRouter(tags=["generation"])

# The contract asks an image of both (TI2V-5B could run text-only, but not through this route);
# detect's requirements.requires_image says the same.
IMAGE_REQUIRED = ("I2V-A14B", "TI2V-5B")
_TRANSFORM = re.compile(
    r"\b(transform|transforms|transforming|morph|morphs|morphing|evolve|evolves|evolving|"
    r"animate|animates|animating|from this image|based on|starting from|turn this|"
    r"bring this|make this)\b",
    re.IGNORECASE,
)


async def _fields(request: Request, ctx: ApiContext) -> dict[str, Any]:
    """The request's fields, from a JSON object or a multipart form (file parts as files)."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        limit = 2 * ctx.settings.max_image_bytes + MULTIPART_SLACK
        form = await read_form(request, max_body=limit, field="image")
        items = form.multi_items()
        texts = {k: v for k, v in items if not isinstance(v, UploadFile)}
        return {**texts, **{k: v for k, v in items if isinstance(v, UploadFile)}}
    if content_type.startswith("application/json") or not content_type:
        try:
            raw = await request.json()
        except ValueError:
            raise invalid("body", "the body is not valid JSON") from None
        if not isinstance(raw, dict):
            raise invalid("body", "send a JSON object of fields")
        return raw
    raise HTTPException(
        415, detail="send application/json, or multipart/form-data when there is an image"
    )


@router.post(
    "/generation/submit",
    openapi_extra=openapi_body(),
    summary="Queue a Wan generation (JSON, or multipart/form-data with image / end_image)",
)
async def submit(request: Request, ctx: Ctx) -> dict[str, Any]:
    values, errors = read_submit(await _fields(request, ctx))
    files = {n: f for n in FILES if isinstance(f := values.get(n), UploadFile)}
    model_type = values.get("model_type")
    warnings: list[str] = []
    if model_type in MODEL_TYPES:
        model = ctx.engine.models.manifest.get(model_type)
        if model_type in IMAGE_REQUIRED and "image" not in files:
            errors.setdefault(  # an image sent as text is already named, in its own words
                "image",
                f"{model_type} needs an image: send multipart/form-data with an image file",
            )
        if "image" in files and not model.accepts_image:
            errors["image"] = f"{model_type} takes no image; use I2V-A14B or TI2V-5B"
        if "end_image" in files and not model.supports_end_image:
            if model.accepts_image:
                # The original backend took an end image for every image model: accept it, say
                # it is not used, and do not keep the file.
                files.pop("end_image")
                warnings.append(end_image_unused(model_type))
            else:
                errors["end_image"] = f"{model_type} takes no end image; use I2V-A14B"
    lora_ref = values.get("lora_path")
    lora_ref = lora_ref.strip() if isinstance(lora_ref, str) else ""
    lora_file = None
    if lora_ref:
        try:
            lora_file = ctx.loras.resolve(lora_ref)
        except InvalidInputError as exc:  # naming lora_path
            errors.update(exc.errors)
    if errors:
        raise HTTPException(422, detail=detail_list(errors))
    refuse_if_limited(ctx.limiter, request)
    params: dict[str, Any] = {
        ENGINE_NAMES.get(k, k): values[k] for k in ENGINE_FIELDS if values[k] is not None
    }
    for name, upload in files.items():
        path = await run_in_threadpool(
            save_image,
            upload,
            ctx.engine.settings.uploads_dir,
            field=name,
            max_bytes=ctx.settings.max_image_bytes,
        )
        params[name] = str(path)
    strength = values["lora_strength"]
    if lora_file is not None:
        params["loras"] = [{"path": str(lora_file), "strength": strength}]
    try:
        job = await run_in_threadpool(
            ctx.engine.submit,
            JobSpec(
                kind=JobKind.wan,
                params=params,
                priority=Priority.parse(values["priority"]),
                client=client_key(request),
                warnings=tuple(warnings),
            ),
        )
    except Exception:
        # Refused (an image too small for the engine…): the uploads it would have used go.
        for name in FILES:
            if name in params:
                Path(params[name]).unlink(missing_ok=True)
        raise
    return submit_answer(ctx, job, lora_ref or None, strength)


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
