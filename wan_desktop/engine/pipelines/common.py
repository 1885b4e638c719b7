"""What every video pipeline does at the end: MP4, thumbnail and sidecar, then a JobOutput."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..errors import JobFailedError
from ..failures import is_storage_full
from ..jobs import FailureCategory, JobOutput
from ..outputs import library_versions, write_json, write_mp4, write_thumbnail

if TYPE_CHECKING:
    from ..context import JobContext

SIDECAR_FORMAT = 1


def save_video(ctx: JobContext, frames: Any, fps: float, sidecar: Mapping[str, Any]) -> JobOutput:
    """Write the job's video, thumbnail and sidecar atomically; return what was written."""
    paths = ctx.outputs
    try:
        t0 = time.monotonic()
        write_mp4(frames, paths.video, fps)
        write_thumbnail(frames[len(frames) // 2], paths.thumbnail)
        encode_s = time.monotonic() - t0
        n, h, w = int(frames.shape[0]), int(frames.shape[1]), int(frames.shape[2])
        job = ctx.job
        write_json(
            {
                "format": SIDECAR_FORMAT,
                "job_id": job.id,
                "kind": str(job.kind),
                "mock": job.mock,
                "label": job.label,
                "created_at": job.created_at,
                "params": dict(job.params),
                "model": {
                    "id": job.model_id,
                    "variant": job.variant,
                    "development": job.development,
                    **dict(sidecar.get("model", {})),
                },
                "video": {
                    "width": w,
                    "height": h,
                    "frames": n,
                    "fps": fps,
                    "duration_s": n / fps,
                    "codec": "h264",
                    "pix_fmt": "yuv420p",
                },
                "timings_s": {
                    **ctx.stage_times,
                    **dict(sidecar.get("timings_s", {})),
                    "encode": round(encode_s, 3),
                },
                "memory": dict(sidecar.get("memory", {})),
                "warnings": list(job.warnings),
                "libraries": library_versions(),
                **{k: v for k, v in sidecar.items() if k not in ("model", "timings_s", "memory")},
            },
            paths.sidecar,
        )
    except BaseException as exc:
        # Nothing half-made stays behind: a video without its sidecar is removed too.
        for path in (paths.video, paths.thumbnail, paths.sidecar):
            with contextlib.suppress(OSError):
                path.unlink()
        if isinstance(exc, OSError) and not is_storage_full(exc):  # full: classify() says so
            raise JobFailedError(
                FailureCategory.storage_failed,
                f"the video could not be written: {exc.strerror or exc}",
                ("check the outputs folder is writable and its disk healthy", "retry the job"),
                detail=f"{type(exc).__name__}: errno {exc.errno}",
            ) from None
        raise
    return JobOutput(
        video=str(paths.video),
        thumbnail=str(paths.thumbnail),
        sidecar=str(paths.sidecar),
        duration_s=n / fps,
        width=w,
        height=h,
        frames=n,
        fps=fps,
        size_bytes=paths.video.stat().st_size,
    )
