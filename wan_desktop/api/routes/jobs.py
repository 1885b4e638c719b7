"""``/jobs``: every job of the queue (explainer and Wan alike), paged, with cancel, delete, logs.

Statuses are the explainer API's (``queued|processing|completed|failed|cancelled``); ``kind``
tells the two kinds apart and filters them.
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Query

from wan_desktop.engine import JobKind, JobStateError
from wan_desktop.engine.job_rows import UnreadableJobError
from wan_desktop.engine.jobstore import MAX_LOG_LINES_PER_JOB

from .. import job_status
from ..context import Ctx
from ..errors import detail_list
from ..mapping import iso
from .videos import find_job, public_params

router = APIRouter(tags=["jobs"])
ITEMS_MAX = 100
CANCEL_WAIT_S = 3.0  # a running job stops at its next check; the answer waits this long for it


@router.get("/jobs", summary="Jobs of every kind, newest first, paged")
def list_jobs(
    ctx: Ctx,
    page: int = Query(1, ge=1, le=1_000_000),
    items_per_page: int = Query(20, ge=1, le=ITEMS_MAX),
    status: str | None = Query(None, description=f"one of {', '.join(job_status.STATUSES)}"),
    kind: Literal["wan", "explainer"] | None = Query(None, description="only this kind of job"),
) -> dict[str, Any]:
    states = None
    if status:
        if status not in job_status.STATES_OF:
            raise HTTPException(
                422,
                detail=detail_list(
                    {"status": f"{status!r} is not one of {', '.join(job_status.STATUSES)}"},
                    "query",
                ),
            )
        states = job_status.STATES_OF[status]
    kinds = [JobKind(kind)] if kind else None
    counts = ctx.engine.store.counts_by_state(kinds=kinds)
    total = sum(n for s, n in counts.items() if states is None or s in states)
    jobs = ctx.engine.jobs(
        states=states, kinds=kinds, limit=items_per_page, offset=(page - 1) * items_per_page
    )
    now = time.time()
    pages = max(1, math.ceil(total / items_per_page))
    return {
        "jobs": [job_status.status(j, now) for j in jobs],
        "total_count": total,
        "page": page,
        "items_per_page": items_per_page,
        "total_pages": pages,
        "has_next": page < pages,
        "has_previous": page > 1,
    }


@router.get("/jobs/{job_id}", summary="One job: status, parameters, links, estimate, warnings")
def get_job(job_id: str, ctx: Ctx) -> dict[str, Any]:
    job = find_job(ctx, job_id)
    return {
        **job_status.status(job),
        "parameters": public_params(job),
        "started_at": iso(job.started_at),
        "estimate": dict(job.estimate),
        "warnings": list(job.warnings),
        "retry_of": job.retry_of,
        "development": job.development,
        "result": {
            **job_status.links(job),
            "metadata": job_status.metadata(job),
        }
        if job.output is not None and job.finished
        else None,
    }


@router.post("/jobs/{job_id}/cancel", summary="Cancel a queued or running job (409 when finished)")
async def cancel(job_id: str, ctx: Ctx) -> dict[str, Any]:
    job = find_job(ctx, job_id)
    previous = job_status.STATUS[job.state]
    try:
        job = ctx.engine.cancel(job_id)
    except JobStateError:
        raise HTTPException(
            409,
            detail=f"job {job_id} has already finished ({job_status.STATUS[job.state]}); "
            "nothing to cancel",
        ) from None
    # A running job stops at its next check (a step, a scene, a chat call): wait briefly for it,
    # so the answer can say "cancelled" rather than "still stopping" in the common case.
    deadline = time.monotonic() + CANCEL_WAIT_S
    while not job.finished and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        job = ctx.engine.get(job_id)
    new = job_status.STATUS[job.state]
    return {
        "success": True,
        "job_id": job_id,
        "previous_status": previous,
        "new_status": new if job.finished else "cancelling",
        "message": "job cancelled"
        if job.finished
        else f"the job stops at its next check; poll {job_status.video_path(job_id, 'status')}",
    }


@router.delete("/jobs/{job_id}", summary="Delete a finished job (409 while it runs: cancel first)")
def delete_job(
    job_id: str,
    ctx: Ctx,
    delete_output: bool = Query(False, description="also delete its video and files"),
) -> dict[str, Any]:
    try:
        job = find_job(ctx, job_id)
    except UnreadableJobError:  # a damaged record: nothing to check, it can always go
        job = None
    try:
        ctx.engine.delete(job_id, delete_outputs=delete_output)
    except JobStateError:
        assert job is not None
        raise HTTPException(
            409,
            detail=f"job {job_id} is {job_status.STATUS[job.state]}: cancel it first, then delete",
        ) from None
    return {
        "success": True,
        "job_id": job_id,
        "message": f"Job {job_id} deleted" + (" with its files" if delete_output else ""),
    }


@router.get("/jobs/{job_id}/logs", summary="The job's log: every stage, model call, try, warning")
def logs(
    job_id: str,
    ctx: Ctx,
    level: Literal["debug", "info", "warning", "error"] | None = Query(
        None, description="only lines of this level"
    ),
) -> dict[str, Any]:
    job = find_job(ctx, job_id)
    lines = [
        {"timestamp": iso(line["at"]), "level": line["level"], "message": line["message"]}
        for line in ctx.engine.logs(job.id)
        if level is None or line["level"] == level
    ]
    return {
        "job_id": job.id,
        "status": job_status.STATUS[job.state],
        "logs": lines,
        "total_count": len(lines),
        "max_lines": MAX_LOG_LINES_PER_JOB,
    }
