"""The finished explainer video: the rendered scenes joined into one MP4 (subtitles, thumbnail),
the sidecar record of how it was made, and where it is kept (the outputs folder and/or S3).

A mixin of ExplainerPipeline, which provides the settings and the two helpers named below.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from wan_desktop.engine.jobs import JobOutput
from wan_desktop.engine.outputs import library_versions, write_json

from .errors import ExplainerErrorCode, failure
from .plan import Outline
from .run import Run
from .scenes import RenderedScene
from .settings import ExplainerSettings, StorageMode

SIDECAR_FORMAT = 1


class Delivery:
    """Mixed into ExplainerPipeline: its last two stages, combining and storage."""

    settings: ExplainerSettings
    _stage: Callable[..., None]  # announces a stage (ExplainerPipeline._stage)
    _call: Callable[[Run, Callable[[], Any]], Any]  # work off the worker thread

    def _combine(
        self, run: Run, outline: Outline, scenes: list[RenderedScene]
    ) -> tuple[JobOutput, dict[str, Any]]:
        from . import media

        p, paths = run.params, run.ctx.outputs
        self._stage(run, "combining", f"joining {len(scenes)} scenes", len(scenes))
        try:
            durations = [media.probe(s.video).duration_s for s in scenes]
            cues = media.cues_for([s.plan.narration for s in scenes], durations)
            info = self._call(
                run,
                lambda: media.combine(
                    [s.video for s in scenes],
                    paths.video,
                    burn_in=cues if p.burn_subtitles else (),
                    gpu=self.settings.use_gpu_acceleration,
                ),
            )
            if (
                self.settings.use_gpu_acceleration
                and p.burn_subtitles
                and info.encoder != ("h264_nvenc")
            ):
                run.ctx.warn("GPU acceleration is on but NVENC is not usable; encoded on the CPU")
            if p.enable_subtitles:
                media.write_srt(cues, paths.subtitles)
            if p.enable_thumbnails:
                media.save_thumbnail(scenes[0].video, paths.thumbnail)
        except (OSError, ValueError) as exc:
            raise failure(
                ExplainerErrorCode.combine_failed,
                f"the scenes could not be joined: {exc}",
                ("retry the job", "check free disk space"),
            ) from exc
        except Exception as exc:
            if type(exc).__module__.startswith("av"):
                raise failure(
                    ExplainerErrorCode.combine_failed,
                    f"the scenes could not be joined: {exc}",
                    ("retry the job",),
                ) from exc
            raise
        output = JobOutput(
            video=str(paths.video),
            thumbnail=str(paths.thumbnail) if p.enable_thumbnails else None,
            sidecar=str(paths.sidecar),
            subtitles=str(paths.subtitles) if p.enable_subtitles else None,
            duration_s=info.duration_s,
            width=info.width,
            height=info.height,
            frames=info.frames,
            fps=info.fps,
            size_bytes=info.size_bytes,
        )
        sidecar = self._sidecar(run, outline, scenes, info, durations)
        run.ctx.log(
            "info",
            f"video: {info.duration_s:.2f} s, {info.width}x{info.height} @ {info.fps:g} fps, "
            f"{info.size_bytes} bytes ({info.encoder})",
        )
        return output, sidecar

    def _sidecar(
        self,
        run: Run,
        outline: Outline,
        scenes: list[RenderedScene],
        info: Any,
        durations: list[float],
    ) -> dict[str, Any]:
        job, p = run.ctx.job, run.params
        return {
            "format": SIDECAR_FORMAT,
            "job_id": job.id,
            "kind": str(job.kind),
            "label": job.label,
            "created_at": job.created_at,
            "params": p.to_dict(),
            "writer": {
                "name": run.writer.name,
                "offline": run.writer.offline,
                "models": (
                    dict(
                        zip(
                            ("planner", "scene", "helper"),
                            self.settings.llm.models(p.model),
                            strict=True,
                        )
                    )
                    if not run.writer.offline
                    else None
                ),
                "calls": [vars(c) for c in run.client.calls] if run.client else [],
            },
            "sandbox": str(run.sandbox.isolation.mode),
            "quality": {
                "name": p.quality,
                "manim": p.preset.manim_quality,
                "width": info.width,
                "height": info.height,
                "fps": info.fps,
            },
            "outline": outline.to_dict(),
            "scenes": [
                {**s.summary(), "measured_s": d, "plan": s.plan.to_dict()}
                for s, d in zip(scenes, durations, strict=True)
            ],
            "video": {
                "duration_s": info.duration_s,
                "frames": info.frames,
                "codec": "h264",
                "encoder": info.encoder,
                "size_bytes": info.size_bytes,
                "format": p.output_format,
                "subtitles_burned_in": p.burn_subtitles,
            },
            "stages": run.stage_log,
            "timings_s": {k: round(v, 3) for k, v in run.ctx.stage_times.items()},
            "warnings": list(job.warnings),
            "libraries": library_versions(),
        }

    def _store(self, run: Run, output: JobOutput, sidecar: dict[str, Any]) -> JobOutput:
        """Write the sidecar, and copy everything to S3 when the storage mode says so."""
        mode = run.params.storage
        self._stage(run, "storage", _STORAGE_MESSAGES[mode])
        sidecar_path = Path(output.sidecar or run.ctx.outputs.sidecar)
        if not mode.uses_s3:
            write_json(sidecar, sidecar_path)
            return output
        from .storage import S3Uploader, StorageError

        root = run.ctx.settings.outputs_dir
        files = {
            name: (Path(path), _relative(Path(path), root))
            for name, path in (
                ("video", output.video),
                ("thumbnail", output.thumbnail),
                ("subtitles", output.subtitles),
            )
            if path
        }
        try:
            uploader = S3Uploader(
                self.settings.s3,
                base_s=self.settings.retry_base_s,
                cancel=run.cancel,
                on_event=run.sink,
            )
            urls = self._call(run, lambda: uploader.upload_all(files))
            urls["sidecar"] = uploader.url_for(_relative(sidecar_path, root))
            write_json({**sidecar, "urls": urls}, sidecar_path)
            self._call(run, lambda: uploader.upload(sidecar_path, _relative(sidecar_path, root)))
        except StorageError as exc:
            raise failure(
                ExplainerErrorCode.storage_failed,
                f"the video could not be stored in S3: {exc}",
                (
                    "check OUTPUT_S3_ENDPOINT_URL, OUTPUT_S3_BUCKET and the AWS_* credentials",
                    "retry the job, or use storage_mode local_only",
                ),
            ) from exc
        if mode is StorageMode.s3_only and self.settings.cleanup:
            for path in (*(p for p, _ in files.values()), sidecar_path):
                path.unlink(missing_ok=True)
            run.ctx.log("info", "local copies removed (storage mode s3_only)")
            return _replace_paths(output, urls)
        return JobOutput(**{**output.to_dict(), "urls": urls})


_STORAGE_MESSAGES = {
    StorageMode.local_only: "kept in the outputs folder",
    StorageMode.s3_only: "uploading to S3 (local copies removed afterwards)",
    StorageMode.local_and_s3: "uploading to S3 (local copies kept)",
}


def _replace_paths(output: JobOutput, urls: Mapping[str, str]) -> JobOutput:
    d = output.to_dict()
    for name in ("video", "thumbnail", "subtitles", "sidecar"):
        if d.get(name):
            d[name] = urls.get(name, d[name])
    d["urls"] = dict(urls)
    return JobOutput(**d)


def _relative(path: Path, root: Path) -> str:
    with contextlib.suppress(ValueError):
        return path.resolve().relative_to(root.resolve()).as_posix()
    return path.name
