"""``/models``: status, download, download progress — the orchestrator through the engine."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException

from wan_desktop.models import ModelError

from ..context import ApiContext, Ctx
from ..errors import detail_list

router = APIRouter(tags=["models"])
MB = 1024 * 1024


def _loaded(ctx: ApiContext) -> set[str]:
    return {m.model_id for m in ctx.engine.loaded_models()}


@router.get("/models/status", summary="Each model: on disk, loaded, downloading")
def status(ctx: Ctx) -> dict[str, Any]:
    store = ctx.engine.models
    loaded = _loaded(ctx)
    downloading = {m for m, _ in ctx.engine.downloads()}
    models: dict[str, Any] = {}
    for spec in store.manifest:
        st = store.status(spec.id)
        size = st.bytes_total or st.approx_size_bytes or 0
        progress = ctx.hub.downloads.get((st.model_id, st.variant))
        models[spec.model_type] = {
            "model_id": st.model_id,
            "model_type": spec.model_type,
            "variant": st.variant,
            "state": str(st.state),
            "is_available": st.complete,
            "is_loaded": st.model_id in loaded,
            "is_downloading": st.model_id in downloading,
            "size_mb": round(size / MB, 1),
            "bytes_present": st.bytes_present,
            "bytes_needed": st.bytes_needed,
            "download_progress": None if progress is None else _fraction(progress),
            "development": st.development,
            "label": st.label,
            "reason": st.reason,
        }
    return {
        "models": models,
        "development_mode": store.config.dev_mode,
        "mock_mode": ctx.engine.settings.mock,
    }


def _fraction(p: dict[str, Any]) -> float | None:
    total = p.get("bytes_total")
    if p.get("phase") == "complete":
        return 100.0
    return round(100 * p.get("bytes_done", 0) / total, 1) if total else None


@router.post("/models/download", summary='Download a model ({"model_type"}) beside the queue')
def download(
    body: Annotated[Any, Body(examples=[{"model_type": "T2V-A14B"}])],
    ctx: Ctx,
) -> dict[str, Any]:
    model_type = body.get("model_type") if isinstance(body, dict) else None
    variant = body.get("variant") if isinstance(body, dict) else None
    if not isinstance(model_type, str) or not model_type.strip():
        raise HTTPException(422, detail=detail_list({"model_type": "required, e.g. T2V-A14B"}))
    if variant is not None and not isinstance(variant, str):
        raise HTTPException(422, detail=detail_list({"variant": "must be text"}))
    try:
        spec, var = ctx.engine.models.resolve(model_type, variant)
    except ModelError as exc:
        raise HTTPException(
            422, detail=detail_list({"model_type": f"{exc.message}; {exc.fix or ''}".strip("; ")})
        ) from None
    st = ctx.engine.models.status(spec.id, var.name)
    if st.complete:
        return {
            "message": f"{spec.model_type} is already downloaded",
            "model_type": spec.model_type,
            "model_id": spec.id,
            "variant": var.name,
            "status": "complete",
        }
    ctx.engine.ensure_model(spec.id, var.name)
    return {
        "message": f"Download of {spec.model_type} ({var.name}) started; follow "
        "/models/download/progress or the download_progress WebSocket topic",
        "model_type": spec.model_type,
        "model_id": spec.id,
        "variant": var.name,
        "status": "downloading",
        "development": var.development,
    }


@router.get("/models/download/progress", summary="Downloads in progress and just finished")
def progress(ctx: Ctx) -> dict[str, Any]:
    active = set(ctx.engine.downloads())
    items = []
    for (model_id, variant), p in ctx.hub.downloads.items():
        items.append(
            {
                **p,
                "active": (model_id, variant) in active,
                "percent": _fraction(p),
            }
        )
    for model_id, variant in active:
        if (model_id, variant) not in ctx.hub.downloads:
            items.append(
                {"model_id": model_id, "variant": variant, "phase": "starting", "active": True}
            )
    return {"downloads": items, "active_downloads": len(active)}
