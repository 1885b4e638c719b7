"""``/lora``: list, upload (streamed, checked as a LoRA), status, preview, memory impact, delete."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from wan_desktop.engine import JobNotFoundError
from wan_desktop.engine.lora_library import NAME_MAX, LoraFile, LoraLibrary
from wan_desktop.models.settings import format_size

from ..context import ApiContext, Ctx
from ..errors import detail_list
from ..mapping import iso
from ..prompt import EnhanceOptions
from ..uploads import MULTIPART_SLACK, file_size, read_form

router = APIRouter(tags=["lora"])


def _in_use(ctx: ApiContext) -> set[str]:
    """LoRA files named by the running job (they must not be deleted under it)."""
    running = ctx.engine.running_job_id
    if running is None:
        return set()
    try:
        job = ctx.engine.get(running)
    except JobNotFoundError:  # it finished and was deleted meanwhile
        return set()
    return {str(x.get("path")) for x in job.params.get("loras") or ()}


@dataclass(frozen=True)
class _Usage:
    """Where each LoRA file stands in the loaded Wan model, and in the running job."""

    loaded: dict[str, tuple[str, ...]]  # file -> experts holding its adapter
    applied: dict[str, dict[str, float]]  # file -> strength per expert, switched on now
    in_use: set[str]

    @classmethod
    def read(cls, ctx: ApiContext) -> _Usage:
        state = ctx.engine.lora_state()
        return cls(
            loaded=dict(state.loaded),
            applied={a.path: dict(a.strengths) for a in state.applied},
            in_use=_in_use(ctx),
        )


def _entry(f: LoraFile, usage: _Usage) -> dict[str, Any]:
    path = str(f.path.resolve())
    strengths = usage.applied.get(path)
    return {
        "name": f.name,
        "filename": f.filename,
        "path": f.ref,
        "size_mb": round(f.size_mb, 3),
        "modified_time": iso(f.modified),
        # From the loaded Wan model itself: its adapter is in memory / switched on now.
        "is_loaded": path in usage.loaded,
        "is_applied": strengths is not None,
        # The strength on the (first, high-noise) transformer; per expert below.
        # A number always (the frontend formats it): 0.0 when not applied.
        "current_strength": next(iter(strengths.values()), 0.0) if strengths else 0.0,
        "current_strengths": strengths,
        "in_use": path in usage.in_use,  # named by the running job
    }


def _list(ctx: ApiContext) -> dict[str, Any]:
    files = ctx.loras.list()
    usage = _Usage.read(ctx)
    items = [_entry(f, usage) for f in files]
    return {
        "loras": items,
        "total_count": len(items),
        "total_size_mb": round(sum(f.size_mb for f in files), 3),
        "loras_dir": "loras/",
    }


@router.get("/lora/list", summary="LoRA files in the LoRA folder")
def list_loras(ctx: Ctx) -> dict[str, Any]:
    return _list(ctx)


@router.get("/lora", summary="Same as /lora/list")
def list_loras_alias(ctx: Ctx) -> dict[str, Any]:
    return _list(ctx)


@router.post(
    "/lora/upload",
    summary="Upload a LoRA (multipart 'file', optional 'name'); checked before it is kept",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["file"],
                        "properties": {
                            "file": {"type": "string", "format": "binary"},
                            "name": {"type": "string", "maxLength": NAME_MAX},
                        },
                    }
                }
            },
        }
    },
)
async def upload(request: Request, ctx: Ctx) -> dict[str, Any]:
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise HTTPException(
            422, detail=detail_list({"file": "send multipart/form-data with a 'file' part"})
        )
    limit = ctx.settings.max_lora_bytes
    form = await read_form(request, max_body=limit + MULTIPART_SLACK, field="file")
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise HTTPException(422, detail=detail_list({"file": "required: the LoRA file"}))
    name = form.get("name")
    if name is not None and not isinstance(name, str):
        raise HTTPException(422, detail=detail_list({"name": "must be text"}))
    if name and len(name) > NAME_MAX:
        raise HTTPException(
            422, detail=detail_list({"name": f"is {len(name)} characters; use {NAME_MAX} or fewer"})
        )
    filename = upload.filename or ""
    ext = LoraLibrary.check_extension(filename)
    stem = LoraLibrary.sanitize(name or filename.rsplit(".", 1)[0])
    size = file_size(upload)
    if size == 0:
        raise HTTPException(422, detail=detail_list({"file": "the file is empty"}))
    if size > limit:
        raise HTTPException(
            422, detail=detail_list({"file": f"the file is over {format_size(limit)}"})
        )

    def install() -> Any:
        with ctx.loras.incoming(ext) as tmp:
            upload.file.seek(0)
            with tmp.open("wb") as out:
                shutil.copyfileobj(upload.file, out, 1024 * 1024)
            return ctx.loras.install(tmp, f"{stem}{ext}")

    info = await run_in_threadpool(install)
    f = info.file
    return {
        "success": True,
        "message": f"LoRA {f.filename} uploaded (rank {info.rank}, {len(info.modules)} modules)",
        "lora_name": f.name,
        "file_path": f.ref,
        "size_mb": round(f.size_mb, 3),
        "rank": info.rank,
        "format": info.format,
    }


@router.get("/lora/{name}/status", summary="A LoRA's file facts and whether it is in use")
def status(name: str, ctx: Ctx) -> dict[str, Any]:
    info = ctx.loras.inspect(name)
    entry = _entry(info.file, _Usage.read(ctx))
    return {
        **entry,
        "exists": True,
        "format": info.format,
        "rank": info.rank,
        "alpha": info.alpha,
        "tensors": info.tensors,
        "parameters": info.params,
        "target_modules": list(info.modules),
        "dtypes": list(info.dtypes),
    }


@router.post(
    "/lora/{name}/preview",
    summary="How a prompt reads with this LoRA (JSON {prompt} or form base_prompt)",
)
async def preview(name: str, request: Request, ctx: Ctx) -> dict[str, Any]:
    f = ctx.loras.get(name)
    content_type = request.headers.get("content-type", "")
    prompt: Any = None
    if content_type.startswith("application/json"):
        try:
            body = await request.json()
        except ValueError:
            raise HTTPException(
                422, detail=detail_list({"body": "the body is not valid JSON"})
            ) from None
        prompt = body.get("prompt") if isinstance(body, dict) else None
    elif content_type.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
        form = await read_form(request, max_body=64 * 1024, field="base_prompt")
        prompt = form.get("base_prompt") or form.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise HTTPException(
            422,
            detail=detail_list({"prompt": "give a prompt (JSON 'prompt' or form 'base_prompt')"}),
        )
    trigger = f.name.replace("_", " ").replace("-", " ")
    base = prompt.strip()
    with_lora = base if trigger.lower() in base.lower() else f"{base}, in the style of {trigger}"
    enhanced = ctx.enhancer.enhance(with_lora, EnhanceOptions(apply_vace=False)).enhanced
    return {
        "lora_name": f.name,
        "base_prompt": base,
        "enhanced_prompt": enhanced[:500],
        "style_indicators": [trigger],
        "preview_note": "a text preview: the LoRA changes the video, not the prompt; its name is "
        "added as a style cue",
    }


# Share of the free GPU memory (or, with no GPU, the adapter's size) that marks each level.
IMPACT_SHARE = {"low": 0.02, "medium": 0.10}
IMPACT_MB_NO_GPU = {"low": 256.0, "medium": 1024.0}


def impact_level(memory_mb: float, available_mb: float) -> str:
    """low / medium / high: against the free VRAM on a GPU, by size alone without one."""
    if available_mb > 0:
        share = memory_mb / available_mb
        levels = IMPACT_SHARE
    else:
        share, levels = memory_mb, IMPACT_MB_NO_GPU
    return next((name for name, limit in levels.items() if share <= limit), "high")


@router.get("/lora/{name}/memory-impact", summary="Memory the LoRA adds when applied")
def memory_impact(name: str, ctx: Ctx) -> dict[str, Any]:
    info = ctx.loras.inspect(name)
    impact = info.memory_impact()
    # The larger case: an A14B model holds the adapter on both experts.
    memory_mb = float(impact["two_expert_mb"])
    sample = ctx.stats.latest or ctx.stats.sample()
    available_mb = round(max(0.0, sample.vram_free_mb), 1) if sample.vram_total_mb else 0.0
    level = impact_level(memory_mb, available_mb)
    can_load = available_mb == 0.0 or memory_mb <= available_mb
    if not can_load:
        recommendation = (
            f"needs {memory_mb:.0f} MB but {available_mb:.0f} MB of GPU memory is free: "
            "unload the model or free GPU memory first"
        )
    elif level == "low":
        recommendation = "small: apply freely"
    elif level == "medium":
        recommendation = "moderate: fine on most cards; on cards under 24 GB expect more offloading"
    else:
        recommendation = "large: on cards under 24 GB expect more offloading"
    if not available_mb:
        recommendation += " (no GPU: the adapter lives in system memory)"
    return {
        "lora_name": info.file.name,
        **impact,
        "file_size_mb": round(info.file.size_mb, 3),
        "estimated_memory_mb": round(memory_mb, 2),
        "vram_available_mb": available_mb,
        "memory_impact": level,
        "can_load": can_load,
        "recommendation": recommendation,
    }


@router.delete("/lora/{name}", summary="Delete a LoRA file")
def delete(name: str, ctx: Ctx) -> dict[str, Any]:
    if str(ctx.loras.get(name).path.resolve()) in _in_use(ctx):
        raise HTTPException(
            409, detail=f"LoRA {name} is used by the running task; wait or cancel it"
        )
    f = ctx.loras.delete(name)
    return {"success": True, "message": f"LoRA {f.filename} deleted", "lora_name": f.name}
