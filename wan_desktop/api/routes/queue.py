"""``/queue``: list with counts, cancel, delete, clear, reorder, poll."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from wan_desktop.engine import JobState, JobStateError

from ..context import ApiContext, Ctx
from ..errors import detail_list
from ..mapping import CONTRACT_STATUSES, STATES_OF, now_iso

router = APIRouter(tags=["queue"])
STATUS_LIST = ", ".join(CONTRACT_STATUSES)


@router.get("/queue", summary="Tasks, newest first, with counts", response_class=Response)
def list_queue(
    ctx: Ctx,
    limit: int | None = Query(None, ge=1, le=10_000),
    status_filter: str | None = Query(None, description=f"one of {', '.join(CONTRACT_STATUSES)}"),
) -> Response:
    states = None
    if status_filter:
        if status_filter not in STATES_OF:
            raise HTTPException(
                422,
                detail=detail_list(
                    {"status_filter": f"{status_filter!r} is not one of {STATUS_LIST}"},
                    "query",
                ),
            )
        states = STATES_OF[status_filter]
    # Serialised here from cached per-task JSON: FastAPI's encoder would walk 1000 dicts.
    tasks = ctx.queue.tasks_json(states=states, limit=limit)
    counts = json.dumps(ctx.queue.counts())
    return Response('{"tasks":' + tasks + "," + counts[1:], media_type="application/json")


@router.get("/queue/poll", summary="Active tasks, for clients that poll")
def poll(ctx: Ctx, active_only: bool = True) -> dict[str, Any]:
    states = STATES_OF["pending"] | STATES_OF["processing"] if active_only else None
    tasks = ctx.queue.tasks(states=states, limit=None if active_only else 100)
    counts = ctx.queue.counts()
    active = [
        {
            "id": t["id"],
            "status": t["status"],
            "progress": t["progress"],
            "model_type": t["model_type"],
            "prompt": t["prompt"][:100],
            "created_at": t["created_at"],
            "started_at": t.get("started_at"),
            "completed_at": t.get("completed_at"),
            "error_message": t.get("error_message"),
        }
        for t in tasks
    ]
    return {
        "timestamp": now_iso(),
        "pending_count": counts["pending_tasks"],
        "processing_count": counts["processing_tasks"],
        "active_tasks": active,
        "has_active_tasks": bool(counts["pending_tasks"] or counts["processing_tasks"]),
    }


@router.get("/queue/{task_id}", summary="One task")
def get_task(task_id: str, ctx: Ctx) -> dict[str, Any]:
    job = ctx.engine.get(task_id)
    task = ctx.mapper.task(job)
    task["message"] = ctx.mapper.message(job)
    if job.failure is not None:
        task["failure"] = {k: v for k, v in job.failure.to_dict().items() if k != "detail"}
    task["warnings"] = list(job.warnings)
    task["estimate"] = dict(job.estimate)
    return task


@router.post("/queue/{task_id}/cancel", summary="Cancel a pending or running task")
def cancel(task_id: str, ctx: Ctx) -> dict[str, Any]:
    job = ctx.engine.cancel(task_id)
    return {
        "message": "Task cancelled successfully",
        "task_id": task_id,
        # A running job stops at its next step; the status says where it is now.
        "status": "cancelled" if job.state is JobState.cancelled else "cancelling",
    }


@router.delete("/queue/{task_id}", summary="Delete a finished task (cancel it first)")
def delete(
    task_id: str,
    ctx: Ctx,
    delete_output: bool = Query(False, description="also delete its video"),
) -> dict[str, Any]:
    ctx.engine.delete(task_id, delete_outputs=delete_output)
    return {"message": f"Task {task_id} deleted successfully", "task_id": task_id}


@router.post("/queue/clear", summary="Remove completed tasks from the list (videos stay)")
def clear(
    ctx: Ctx,
    include_failed: bool = Query(False, description="also clear failed and cancelled tasks"),
) -> dict[str, Any]:
    states = [JobState.completed]
    if include_failed:
        states += [JobState.failed, JobState.cancelled, JobState.interrupted]
    n = ctx.engine.clear_finished(states)
    what = "finished" if include_failed else "completed"
    return {"message": f"Cleared {n} {what} tasks", "cleared_count": n}


ReorderBody = Annotated[
    Any,
    Body(
        examples=[{"task_ids": ["<id>", "<id>"]}],
        description='{"task_ids": [...]}: these pending tasks in this order; others keep theirs',
    ),
]


async def _reorder(ctx: ApiContext, body: Any) -> dict[str, Any]:
    ids = body.get("task_ids") if isinstance(body, dict) else None
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
        raise HTTPException(
            422, detail=detail_list({"task_ids": "give a non-empty list of pending task ids"})
        )
    if len(set(ids)) != len(ids):
        raise HTTPException(422, detail=detail_list({"task_ids": "a task id appears twice"}))
    try:
        queued = await run_in_threadpool(ctx.engine.reorder, ids)
    except JobStateError as exc:
        raise HTTPException(409, detail=str(exc)) from None
    order = [j.id for j in queued]
    return {
        "message": "Queue reordered",
        "task_ids": order,
        "tasks": [ctx.mapper.task(j) for j in queued],
    }


@router.post("/queue/reorder", summary="Put pending tasks in a new order")
async def reorder(body: ReorderBody, ctx: Ctx) -> dict[str, Any]:
    return await _reorder(ctx, body)


@router.put("/queue/reorder", summary="Put pending tasks in a new order (same as POST)")
async def reorder_put(body: ReorderBody, ctx: Ctx) -> dict[str, Any]:
    return await _reorder(ctx, body)
