"""``/videos``: explainer videos — generate, status, links, streaming and downloads (HTTP Range),
thumbnail, subtitles, metadata.

The ``/videos/jobs/{id}/…`` routes read any job of the queue (a Wan job's video streams the same
way); ``POST /videos/generate`` queues an explainer job. Files are served from the outputs folder;
files that live only in S3 (storage mode ``s3_only``) are answered with a 307 redirect to a
presigned URL.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from wan_desktop.engine import InvalidInputError, Job, JobKind, JobNotFoundError, JobSpec, JobState
from wan_desktop.engine import Priority as EnginePriority
from wan_desktop.engine.outputs import JOB_ID_RE
from wan_desktop.explainer.params import CONTEXT_MAX, SCENES_RANGE, TOPIC_MAX

from .. import job_status
from ..context import ApiContext, Ctx
from ..errors import json_safe
from ..files import send_file
from ..ratelimit import client_key, refuse_if_limited

router = APIRouter(tags=["explainer videos"])

Quality = Literal["low", "medium", "high", "ultra"]
Priority = Literal["low", "normal", "high", "urgent"]
StorageMode = Literal["local_only", "s3_only", "local_and_s3"]


class Configuration(BaseModel):
    """What to explain and how (contract fields first, then the engine's extras)."""

    model_config = ConfigDict(extra="forbid")

    topic: str = Field(min_length=1, max_length=TOPIC_MAX, description="what the video explains")
    context: str = Field(
        min_length=1, max_length=CONTEXT_MAX, description="facts, a formula, code, sentences"
    )
    quality: Quality | None = Field(None, description="default: DEFAULT_QUALITY (medium)")
    use_rag: bool | None = Field(None, description="Manim notes in the model's prompts")
    model: str | None = Field(
        None,
        max_length=200,
        description="null: the configured chat model, else the offline planner; 'template': "
        "the offline planner; a name: that model on LLM_BASE_URL",
    )
    enable_subtitles: bool = True
    enable_thumbnails: bool = True
    output_format: Literal["mp4"] = "mp4"
    # Additions the engine understands.
    burn_subtitles: bool = Field(False, description="draw the subtitles into the picture too")
    storage_mode: StorageMode | None = Field(None, description="default: STORAGE_MODE")
    scene_count: int | None = Field(
        None, ge=SCENES_RANGE[0], le=SCENES_RANGE[1], description="3–7; null: the planner picks"
    )


class GenerateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    configuration: Configuration
    priority: Priority = "normal"


def find_job(ctx: ApiContext, job_id: str) -> Job:
    # Only a job id can name a job's files: nothing else ever becomes a path.
    if not JOB_ID_RE.match(job_id):
        raise HTTPException(404, detail=f"no job with id {job_id!r}")
    try:
        return ctx.engine.get(job_id)
    except JobNotFoundError:
        raise HTTPException(404, detail=f"no job with id {job_id!r}") from None


def _finished(ctx: ApiContext, job_id: str) -> Job:
    """The job, if it completed with a video; 409 saying where it is while it is not done."""
    job = find_job(ctx, job_id)
    if job.state is not JobState.completed:
        st = job_status.status(job)
        if job.state.finished:
            reason = st.get("error", {}).get("error_message") or "it was cancelled"
            message = f"job {job.id} has no video: it {st['status']} ({reason})"
        else:
            message = f"job {job.id} is not finished yet; poll its status"
        raise HTTPException(
            409,
            detail={
                "message": message,
                "status": st["status"],
                "progress": st["progress"]["percentage"],
                "current_stage": st["progress"]["current_stage"],
            },
        )
    if job.output is None:
        raise HTTPException(404, detail=f"the video of job {job.id} was deleted")
    return job


def _serve(ctx: ApiContext, job: Job, what: str, *, inline: bool = True) -> Response:
    """A local file (with Range), or a redirect to the S3 copy when only that exists."""
    out = job.output
    assert out is not None
    location = getattr(out, what)
    remote = out.urls.get(what)
    if location and not location.startswith("s3://") and Path(location).is_file():
        suffix = Path(location).suffix
        return send_file(location, filename=f"{job.id}{suffix}", inline=inline)
    if location and location.startswith("s3://"):
        remote = location
    if remote:
        return RedirectResponse(ctx.remote.link(remote), status_code=307)
    if location:
        raise HTTPException(404, detail=f"the {what} of job {job.id} is gone from the disk")
    made_with = {"thumbnail": "enable_thumbnails", "subtitles": "enable_subtitles"}
    hint = f" (made only with {made_with[what]}: true)" if job.kind is JobKind.explainer else ""
    raise HTTPException(404, detail=f"job {job.id} has no {what}{hint}")


# ------------------------------------------------------------------------------------ routes


@router.post(
    "/videos/generate",
    status_code=201,
    summary="Queue an explainer video (topic and context → planned Manim scenes → MP4)",
)
async def generate(body: GenerateRequest, request: Request, ctx: Ctx) -> dict[str, Any]:
    params = body.configuration.model_dump(exclude_none=True)
    try:
        # Checked before the rate limit, so a bad request does not spend the client's budget.
        await run_in_threadpool(ctx.engine.pipeline(JobKind.explainer).validate, params)
        refuse_if_limited(ctx.limiter, request)
        job = await run_in_threadpool(
            ctx.engine.submit,
            JobSpec(
                kind=JobKind.explainer,
                params=params,
                priority=EnginePriority[body.priority],
                client=client_key(request),
            ),
        )
    except InvalidInputError as exc:
        raise HTTPException(
            422,
            detail=[
                {
                    "loc": ["body", "configuration", name],
                    "msg": f"{name}: {msg}",
                    "type": "value_error",
                }
                for name, msg in exc.errors.items()
            ],
        ) from None
    st = job_status.status(job)
    return {
        "job_id": job.id,
        "status": st["status"],
        "priority": job.priority.name,
        "progress": st["progress"],
        "created_at": st["created_at"],
        "estimated_completion": st["progress"]["estimated_completion"],
        # Additions.
        "kind": str(job.kind),
        "label": job.label,
        "estimate": dict(job.estimate),
        "status_url": job_status.video_path(job.id, "status"),
    }


@router.get("/videos/jobs/{job_id}/status", summary="Where a job stands: stage, progress, error")
def status(job_id: str, ctx: Ctx) -> dict[str, Any]:
    return job_status.status(find_job(ctx, job_id))


@router.get(
    "/videos/jobs/{job_id}/video-url",
    summary="Links to the finished video (409 while it is not finished)",
)
def video_url(job_id: str, request: Request, ctx: Ctx) -> dict[str, Any]:
    job = _finished(ctx, job_id)
    base = str(request.base_url).rstrip("/")
    links = {k: (base + v if v else None) for k, v in job_status.links(job).items()}
    out = job.output
    assert out is not None
    remote = {
        name: link
        for name, uri in out.urls.items()
        if name in ("video", "thumbnail", "subtitles") and (link := ctx.remote.try_link(uri))
    }
    return {
        "job_id": job.id,
        "status": job_status.STATUS[job.state],
        "video_url": links["video_url"],
        "download_url": links["download_url"],
        "thumbnail_url": links["thumbnail_url"],
        "metadata": job_status.metadata(job),
        # Additions: subtitles, and presigned links to the S3 copies (valid for an hour).
        "subtitles_url": links["subtitles_url"],
        "remote_urls": remote,
    }


@router.get(
    "/videos/jobs/{job_id}/stream",
    summary="The MP4 to play inline (HTTP Range: 206 / 416; 307 to S3 in s3_only mode)",
    response_class=FileResponse,
)
def stream(job_id: str, ctx: Ctx) -> Response:
    return _serve(ctx, _finished(ctx, job_id), "video", inline=True)


@router.get(
    "/videos/jobs/{job_id}/download",
    summary="The MP4 as an attachment (HTTP Range; 307 to S3 in s3_only mode)",
    response_class=FileResponse,
)
def download(job_id: str, ctx: Ctx) -> Response:
    return _serve(ctx, _finished(ctx, job_id), "video", inline=False)


# HEAD too: a player asks for the size and Range support before it streams. Kept out of the
# schema, which has one operation per path and method name.
for _route, _endpoint in (("stream", stream), ("download", download)):
    router.add_api_route(
        f"/videos/jobs/{{job_id}}/{_route}", _endpoint, methods=["HEAD"], include_in_schema=False
    )


@router.get(
    "/videos/jobs/{job_id}/thumbnail",
    summary="A JPEG frame of the video",
    response_class=FileResponse,
)
def thumbnail(job_id: str, ctx: Ctx) -> Response:
    return _serve(ctx, _finished(ctx, job_id), "thumbnail")


@router.get(
    "/videos/jobs/{job_id}/subtitles",
    summary="The narration as SRT subtitles",
    response_class=FileResponse,
)
def subtitles(job_id: str, ctx: Ctx) -> Response:
    return _serve(ctx, _finished(ctx, job_id), "subtitles")


@router.get(
    "/videos/jobs/{job_id}/metadata",
    summary="The video's facts, and how it was made (outline, scenes, tries, timings)",
)
def metadata(job_id: str, ctx: Ctx) -> JSONResponse:
    job = _finished(ctx, job_id)
    out = job.output
    assert out is not None
    details: Any = None
    details_url = None
    sidecar = out.sidecar or ""
    if sidecar.startswith("s3://"):
        details_url = ctx.remote.link(sidecar)
    elif sidecar and Path(sidecar).is_file():
        try:
            details = json.loads(Path(sidecar).read_text("utf-8"))
        except (OSError, ValueError):
            details = None  # said below: the record is unreadable, the rest still answers
    answer = {
        "job_id": job.id,
        "kind": str(job.kind),
        "status": job_status.STATUS[job.state],
        "title": job.prompt,
        "metadata": job_status.metadata(job),
        "parameters": public_params(job),
        "details": details,
        "details_url": details_url,
        "details_note": None
        if details is not None or details_url
        else "the job's record (sidecar JSON) is missing or unreadable",
        "warnings": list(job.warnings),
        "label": job.label,
    }
    return JSONResponse(json_safe(answer))


def public_params(job: Job) -> dict[str, Any]:
    """The job's parameters without local file paths (images and LoRAs show their names)."""
    out: dict[str, Any] = {}
    for key, value in job.params.items():
        if key in ("image", "end_image") and isinstance(value, str):
            out[key] = Path(value).name
        elif key == "loras" and isinstance(value, list | tuple):
            out[key] = [
                {**x, "path": Path(str(x.get("path", ""))).name} if isinstance(x, dict) else x
                for x in value
            ]
        else:
            out[key] = value
    return out
