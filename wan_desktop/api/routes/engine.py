"""``/api/v1/engine``: the engine's own commands and queries, for programs (the remote engine).

Bodies and answers are the engine's types through the wire codec (``engine/wire.py``), so a
client rebuilds exactly what the local engine returns; errors are answered by ``errors.py``
(``engine_error``). The event stream is ``/api/v1/engine/events`` (``event_log.py``). The wire is
described in docs/remote-wire.md.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, HTTPException, Query, Request, Response

from wan_desktop import __version__
from wan_desktop.engine import InvalidInputError, Job, JobKind, JobSpec, JobState
from wan_desktop.engine.estimate import fit_verdict
from wan_desktop.engine.jobs import ACTIVE_STATES
from wan_desktop.engine.wire import WIRE_VERSION, from_wire, to_wire
from wan_desktop.explainer.settings import SECRET_KEPT, ExplainerSettings
from wan_desktop.models import disk

from ..blobs import FILE_PARAMS, ref_of
from ..context import ApiContext, Ctx
from ..files import send_file
from ..ratelimit import refuse_if_limited

router = APIRouter(prefix="/engine", tags=["engine (programs)"])

JsonBody = Annotated[Any, Body()]
FileName = Literal["video", "thumbnail", "subtitles", "sidecar"]
UNFINISHED = (JobState.queued, *ACTIVE_STATES)
DOWNLOAD_CHUNK = 1024 * 1024


def _decode(tp: Any, data: Any, what: str) -> Any:
    try:
        return from_wire(tp, data)
    except (ValueError, TypeError) as exc:
        raise InvalidInputError({what: str(exc)}) from None


def _field(body: Any, name: str, tp: Any, default: Any = dataclasses.MISSING) -> Any:
    if not isinstance(body, dict) or name not in body:
        if default is not dataclasses.MISSING:
            return default
        raise InvalidInputError({name: "required"})
    return _decode(tp, body[name], name)


def _inputs(ctx: ApiContext, kind: JobKind, params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` with their blob references resolved; a reference the server lacks is an
    InvalidInputError together with every other bad field the pipeline finds."""
    try:
        return ctx.blobs.resolve(params)
    except InvalidInputError as missing:
        try:
            ctx.engine.pipeline(kind).validate(params)
        except InvalidInputError as bad:
            raise InvalidInputError({**bad.errors, **missing.errors}) from None
        raise


def _jobs(jobs: list[Job]) -> list[Any]:
    return [to_wire(j) for j in jobs]


# ------------------------------------------------------------------------------------ hello


@router.get("/hello", summary="Who this server is: version, wire version, hardware, settings")
def hello(ctx: Ctx) -> dict[str, Any]:
    engine = ctx.engine
    es = engine.settings
    return {
        "server": "wan-desktop",
        "version": __version__,
        "wire": WIRE_VERSION,
        "dev_mode": es.dev_mode,
        "pool": type(engine).__name__ == "PoolEngine",
        "gpus_per_machine": engine.gpus_per_machine(),
        "hardware": to_wire(engine.hardware),
        "settings": {
            "data_dir": str(es.data_dir),
            "outputs_dir": str(es.outputs_dir),
            "loras_dir": str(es.loras_dir),
            "models_root": str(es.models.models_root),
            "memory_sample_s": es.memory_sample_s,
            "preview_every": es.preview_every,
            "idle_unload_s": es.idle_unload_s,
            "dev_mode": es.dev_mode,
            "mock": es.mock,
            "explainer": explainer_settings(es.extra),
        },
    }


def explainer_settings(extra: Mapping[str, Any]) -> dict[str, Any]:
    """The explainer settings this server's pipeline uses (its environment, not the client's),
    for the app's Explainer page: ``{"settings": …}`` with the API key only said to be set, or
    ``{"error": …}`` when they are misconfigured."""
    try:
        settings = ExplainerSettings.from_env(**dict(extra.get("explainer", {})))
    except ValueError as exc:
        return {"error": str(exc)}
    llm = settings.llm
    hidden = dataclasses.replace(llm, api_key=SECRET_KEPT if llm.api_key else None)
    return {"settings": to_wire(dataclasses.replace(settings, llm=hidden))}


# ------------------------------------------------------------------------------------- jobs


@router.get("/jobs", summary="Jobs, newest first (filter by state and kind)")
def list_jobs(
    ctx: Ctx,
    state: Annotated[list[JobState] | None, Query()] = None,
    kind: Annotated[list[JobKind] | None, Query()] = None,
    limit: Annotated[int | None, Query(ge=0)] = None,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[Any]:
    return _jobs(ctx.engine.jobs(states=state, kinds=kind, limit=limit, offset=offset))


@router.post("/jobs", status_code=201, summary="Submit a JobSpec; the queued Job")
def submit(body: JsonBody, ctx: Ctx, request: Request) -> Any:
    spec: JobSpec = _decode(JobSpec, body, "body")
    refuse_if_limited(ctx.limiter, request)
    params = _inputs(ctx, spec.kind, spec.params)
    client = spec.client or f"remote:{request.client.host if request.client else 'unknown'}"
    job = ctx.engine.submit(dataclasses.replace(spec, params=params, client=client))
    return to_wire(job)


@router.get("/jobs/{job_id}", summary="One job")
def get_job(job_id: str, ctx: Ctx) -> Any:
    return to_wire(ctx.engine.get(job_id))


@router.get("/jobs/{job_id}/logs", summary="A job's log lines")
def job_logs(job_id: str, ctx: Ctx) -> list[dict[str, Any]]:
    return ctx.engine.logs(job_id)


@router.post("/jobs/{job_id}/cancel", summary="Cancel a queued or running job")
def cancel(job_id: str, ctx: Ctx) -> Any:
    return to_wire(ctx.engine.cancel(job_id))


@router.post("/jobs/{job_id}/retry", summary="Queue a finished job again (a new job)")
def retry(job_id: str, ctx: Ctx) -> Any:
    return to_wire(ctx.engine.retry(job_id))


@router.delete("/jobs/{job_id}", status_code=204, summary="Delete a finished job")
def delete_job(job_id: str, ctx: Ctx, outputs: bool = False) -> Response:
    ctx.engine.delete(job_id, delete_outputs=outputs)
    return Response(status_code=204)


@router.delete("/jobs/{job_id}/output", summary="Delete a job's output files; the bytes freed")
def delete_output(job_id: str, ctx: Ctx) -> dict[str, int]:
    return {"freed": ctx.engine.delete_output(job_id)}


@router.get(
    "/jobs/{job_id}/files/{name}",
    summary="A finished job's file, with Range and a strong ETag (for resumed downloads)",
)
def job_file(job_id: str, name: FileName, ctx: Ctx) -> Response:
    job = ctx.engine.get(job_id)
    path = getattr(job.output, name, None) if job.output is not None else None
    if not path:
        raise HTTPException(404, detail=f"job {job_id} has no {name} file")
    from pathlib import Path

    if not Path(path).is_file():
        raise HTTPException(404, detail=f"the {name} file of job {job_id} is gone from the server")
    response = send_file(path, inline=False, filename=Path(path).name)
    response.chunk_size = DOWNLOAD_CHUNK  # fewer reads and sends per byte of a large result
    return response


# ------------------------------------------------------------------------------------ queue


@router.get("/queue", summary="Queued jobs in the order they will run")
def queue(ctx: Ctx) -> list[Any]:
    return _jobs(ctx.engine.queue())


@router.post("/queue/reorder", summary='Run these queued jobs in this order ({"job_ids": [...]})')
def reorder(body: JsonBody, ctx: Ctx) -> list[Any]:
    ids: list[str] = _field(body, "job_ids", list[str])
    return _jobs(ctx.engine.reorder(ids))


@router.post("/queue/pause", summary="Start no new job")
def pause(ctx: Ctx) -> dict[str, bool]:
    ctx.engine.pause()
    return {"paused": ctx.engine.paused}


@router.post("/queue/resume", summary="Start jobs again")
def resume(ctx: Ctx) -> dict[str, bool]:
    ctx.engine.resume()
    return {"paused": ctx.engine.paused}


@router.post("/queue/clear", summary='Remove finished jobs in these states ({"states": [...]})')
def clear(body: JsonBody, ctx: Ctx) -> dict[str, int]:
    states: list[JobState] = _field(body, "states", list[JobState], [JobState.completed])
    return {"removed": ctx.engine.clear_finished(states)}


# ------------------------------------------------------------------------------------ state


@router.get("/state", summary="Paused, running job, loaded models, recovered jobs, downloads")
def state(ctx: Ctx) -> dict[str, Any]:
    engine = ctx.engine
    return {
        "paused": engine.paused,
        "running_job_id": engine.running_job_id,
        "loaded": [to_wire(m) for m in engine.loaded_models()],
        "recovered": [j.id for j in getattr(engine, "recovered", [])],
        "downloads": [list(d) for d in engine.downloads()],
    }


@router.post("/unload", status_code=204, summary="Free the loaded models")
def unload(ctx: Ctx) -> Response:
    ctx.engine.unload()
    return Response(status_code=204)


@router.post("/dev-mode", summary='Development mode on or off ({"on": bool})')
def dev_mode(body: JsonBody, ctx: Ctx) -> dict[str, bool]:
    on: bool = _field(body, "on", bool)
    ctx.engine.set_dev_mode(on)
    return {"dev_mode": ctx.engine.settings.dev_mode}


def _kind_params(body: Any, ctx: ApiContext) -> tuple[JobKind, dict[str, Any]]:
    kind: JobKind = _field(body, "kind", JobKind)
    params: dict[str, Any] = _field(body, "params", dict[str, Any])
    return kind, _inputs(ctx, kind, params)


@router.post("/validate", status_code=204, summary="Check a job's parameters: 204 or 422")
def validate(body: JsonBody, ctx: Ctx) -> Response:
    kind, params = _kind_params(body, ctx)
    ctx.engine.pipeline(kind).validate(params)
    return Response(status_code=204)


@router.post("/estimate", summary="Whether and how a model fits the server at a job's size")
def estimate(body: JsonBody, ctx: Ctx) -> dict[str, Any]:
    kind, params = _kind_params(body, ctx)
    model = params.get("model")
    if kind is not JobKind.wan or not model:
        return {"fit": None}
    engine = ctx.engine
    verdict = fit_verdict(
        engine.models, engine.hardware, str(model), params, data_dir=engine.settings.data_dir
    )
    return {"fit": to_wire(verdict)}


# ----------------------------------------------------------------------------------- models


@router.get("/models", summary="The manifest's models and each variant's state on this server")
def models(ctx: Ctx) -> list[dict[str, Any]]:
    store = ctx.engine.models
    loaded = {(m.model_id, m.variant) for m in ctx.engine.loaded_models()}
    downloading = set(ctx.engine.downloads())
    out = []
    for spec in store.manifest:
        variants = {}
        for name, var in spec.variants.items():
            st = store.status(spec.id, name)
            in_use = bool(disk.live_leases(store.paths, store.dir_name(spec, var)))
            variants[name] = {
                "status": to_wire(st),
                "dir_name": store.dir_name(spec, var),  # names its folder in the disk use
                "pinned": store.is_pinned(spec.id, name),
                "in_use": in_use or (spec.id, name) in loaded,
                "loaded": (spec.id, name) in loaded,
                "downloading": (spec.id, name) in downloading,
            }
        out.append(
            {
                "spec": to_wire(spec),
                "variant": store.resolve(spec.id)[1].name,  # the one a job would run now
                "variants": variants,
            }
        )
    return out


@router.get("/models/lora-packs", summary="The manifest's LoRA packs (the presets they make)")
def lora_packs(ctx: Ctx) -> list[Any]:
    return [to_wire(pack) for pack in ctx.engine.models_view.manifest.loras.values()]


@router.get("/models/disk", summary="The models folder's use, free space, quota and max age")
def models_disk(ctx: Ctx) -> dict[str, Any]:
    view = ctx.engine.models_view
    return {
        "usage": to_wire(view.disk_usage()),
        "saved_quota": view.saved_quota(),
        "quota_override": view.quota_override,
        "max_age_s": view.max_age_s,
    }


@router.post("/models/gc", summary="Clean up the models folder (as wan models gc); the report")
def models_gc(ctx: Ctx, body: JsonBody = None) -> Any:
    max_size: int | None = _field(body, "max_size", int | None, None)
    dry_run: bool = _field(body, "dry_run", bool, False)
    return to_wire(ctx.engine.models_view.gc(max_size=max_size, dry_run=dry_run))


@router.put("/models/quota", summary="Save the models quota and apply it at once")
def models_quota(body: JsonBody, ctx: Ctx) -> dict[str, Any]:
    quota: int | None = _field(body, "quota_bytes", int | None)
    if quota is not None and quota < 0:
        raise InvalidInputError({"quota_bytes": "must be 0 or more bytes, or null for none"})
    view = ctx.engine.models_view
    view.set_quota(quota)
    return {"saved_quota": view.saved_quota(), "quota_bytes": view.quota_bytes}


@router.post("/models/partial/{dir_name}/discard", summary="Remove an unfinished download")
def discard_partial(dir_name: str, ctx: Ctx) -> dict[str, int]:
    try:
        return {"freed": ctx.engine.models_view.discard_partial(dir_name)}
    except ValueError as exc:
        raise InvalidInputError({"dir_name": str(exc)}) from None


def _variant(body: Any) -> str | None:
    variant: str | None = _field(body, "variant", str | None, None)
    return variant


@router.post("/models/{model_id}/ensure", summary="Download a model beside the queue")
def ensure(model_id: str, ctx: Ctx, body: JsonBody = None) -> dict[str, Any]:
    spec, var = ctx.engine.models.resolve(model_id, _variant(body))
    ctx.engine.ensure_model(spec.id, var.name)
    return {"model_id": spec.id, "variant": var.name}


@router.post("/models/{model_id}/cancel", summary="Cancel a model's download")
def cancel_download(model_id: str, ctx: Ctx, body: JsonBody = None) -> dict[str, bool]:
    return {"cancelled": ctx.engine.cancel_download(model_id, _variant(body))}


@router.post("/models/{model_id}/verify", summary="Re-hash an installed model's files")
def verify(model_id: str, ctx: Ctx, body: JsonBody = None) -> Any:
    return to_wire(ctx.engine.models.verify(model_id, _variant(body)))


@router.delete("/models/{model_id}", summary="Delete a model variant's files; the bytes freed")
def delete_model(model_id: str, ctx: Ctx, variant: str | None = None) -> dict[str, int]:
    return {"freed": ctx.engine.models.delete(model_id, variant)}


@router.post("/models/{model_id}/pin", summary='Pin or unpin a model ({"pinned": bool})')
def pin(model_id: str, body: JsonBody, ctx: Ctx) -> dict[str, bool]:
    pinned: bool = _field(body, "pinned", bool, True)
    variant = _variant(body)
    ctx.engine.models.pin(model_id, variant, pinned=pinned)
    return {"pinned": ctx.engine.models.is_pinned(model_id, variant)}


# ------------------------------------------------------------------------------------ blobs


@router.head("/blobs/{digest}", summary="200 when the server holds this sha256, else 404")
def blob_head(digest: str, ctx: Ctx) -> Response:
    return Response(status_code=200 if ctx.blobs.has(digest) else 404)


@router.put("/blobs/{digest}", summary="Upload a file named by its sha256 (the raw body)")
async def blob_put(digest: str, request: Request, ctx: Ctx) -> Any:
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import ClientDisconnect

    length = request.headers.get("content-length")
    declared = int(length) if length and length.isdigit() else None
    try:
        _, new = await ctx.blobs.put(digest, request.stream(), declared=declared)
    except ClientDisconnect:  # gone mid-upload: nothing was stored; it uploads again
        return Response(status_code=400)
    if new:
        await run_in_threadpool(_evict, ctx)
    return {"ref": ref_of(digest), "stored": new}


def _evict(ctx: ApiContext) -> None:
    """Keep the blob folder bounded, sparing every file an unfinished job uses."""
    keep: list[str] = []
    for job in ctx.engine.jobs(states=UNFINISHED):
        keep.extend(str(job.params[n]) for n in FILE_PARAMS if job.params.get(n))
        for lora in job.params.get("loras") or ():
            path = lora.get("path") if isinstance(lora, dict) else lora
            if path:
                keep.append(str(path))
    ctx.blobs.evict(keep)
