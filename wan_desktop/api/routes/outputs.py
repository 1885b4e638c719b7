"""``/outputs``: finished videos, downloads with HTTP Range, thumbnails, delete."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse

from wan_desktop.engine import Job, JobKind, JobNotFoundError, JobState
from wan_desktop.engine.outputs import JOB_ID_RE

from ..context import ApiContext, Ctx
from ..files import send_file
from ..mapping import iso
from ..settings import API_BASE

router = APIRouter(tags=["outputs"])
MB = 1024 * 1024


def _job_with_output(ctx: ApiContext, video_id: str) -> Job:
    # Only a job id can name an output: nothing else ever becomes a path.
    if not JOB_ID_RE.match(video_id):
        raise HTTPException(404, detail=f"no video with id {video_id!r}")
    try:
        job = ctx.engine.get(video_id)
    except JobNotFoundError:
        raise HTTPException(404, detail=f"no video with id {video_id!r}") from None
    if job.output is None or not Path(job.output.video).is_file():
        raise HTTPException(404, detail=f"task {video_id} has no video (it is {job.state})")
    return job


def video(ctx: ApiContext, job: Job) -> dict[str, Any]:
    out = job.output
    assert out is not None
    size = out.size_bytes if out.size_bytes is not None else Path(out.video).stat().st_size
    return {
        "id": job.id,
        "filename": f"{job.id}.mp4",
        "prompt": job.prompt,
        "model_type": ctx.mapper.model_type(job.model_id),
        "resolution": ctx.mapper.resolution(job.params),
        "file_size_mb": round(size / MB, 3),
        "created_at": iso(job.finished_at or job.created_at),
        "duration": out.duration_s,
        "thumbnail_url": f"{API_BASE}/outputs/{job.id}/thumbnail",
        "download_url": f"{API_BASE}/outputs/{job.id}/download",
        # additions
        "width": out.width,
        "height": out.height,
        "frames": out.frames,
        "fps": out.fps,
        "seed": job.params.get("seed"),
        "mock": job.mock,
        "development": job.development,
        "model_label": job.label,
    }


@router.get("/outputs", summary="Finished videos, newest first")
def list_outputs(ctx: Ctx) -> dict[str, Any]:
    jobs = ctx.engine.jobs(states=[JobState.completed], kinds=[JobKind.wan])
    videos = [
        video(ctx, j) for j in jobs if j.output is not None and Path(j.output.video).is_file()
    ]
    return {
        "videos": videos,
        "total_count": len(videos),
        "total_size_mb": round(sum(v["file_size_mb"] for v in videos), 3),
    }


@router.get("/outputs/{video_id}", summary="One video's details")
def get_output(video_id: str, ctx: Ctx) -> dict[str, Any]:
    job = _job_with_output(ctx, video_id)
    return {**video(ctx, job), "parameters": dict(job.params)}


@router.get(
    "/outputs/{video_id}/download",
    summary="The MP4 (HTTP Range supported: 206 / 416)",
    response_class=FileResponse,
)
def download(video_id: str, ctx: Ctx) -> FileResponse:
    job = _job_with_output(ctx, video_id)
    assert job.output is not None
    return send_file(job.output.video, filename=f"{job.id}.mp4", inline=False)


@router.get("/outputs/{video_id}/thumbnail", summary="A JPEG frame", response_class=FileResponse)
def thumbnail(video_id: str, ctx: Ctx) -> FileResponse:
    job = _job_with_output(ctx, video_id)
    assert job.output is not None
    thumb = job.output.thumbnail
    if not thumb or not Path(thumb).is_file():
        raise HTTPException(404, detail=f"video {video_id} has no thumbnail")
    return send_file(thumb)


@router.delete("/outputs/{video_id}", summary="Delete a video (the task stays in the history)")
def delete_output(video_id: str, ctx: Ctx) -> dict[str, Any]:
    job = _job_with_output(ctx, video_id)
    freed = ctx.engine.delete_output(job.id)
    return {"message": "Video deleted successfully", "id": job.id, "freed_mb": round(freed / MB, 3)}
