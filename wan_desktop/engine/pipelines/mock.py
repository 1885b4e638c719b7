"""The mock pipeline: every event and output of a real generation, with no model.

For trying the app and for UI tests. It draws a moving test pattern with the word MOCK and the
prompt on it; the job, its events and its sidecar all say mock.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from wan_desktop.models import Manifest

from ..jobs import JobKind, JobOutput, JobState
from ..outputs import expected_video_bytes
from ..params import WanParams, validate_wan_params
from .base import JobDescription, Pipeline
from .common import save_video

if TYPE_CHECKING:
    from ..context import JobContext

MOCK_LABEL = "mock: no model ran; the video is a test pattern"
# Keep mock videos cheap to encode whatever size was asked for.
MAX_MOCK_SIDE = 480


class MockPipeline(Pipeline):
    kind = JobKind.wan
    mock = True

    def __init__(self, manifest: Manifest, *, step_s: float = 0.05) -> None:
        self.manifest = manifest
        self.step_s = step_s

    def validate(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        return validate_wan_params(raw, self.manifest).to_dict()

    def describe(self, params: Mapping[str, Any]) -> JobDescription:
        p = WanParams.from_dict(params)
        return JobDescription(
            model_id=p.model,
            variant=None,
            label=MOCK_LABEL,
            estimate={"vram_gb": 0.0, "minutes": p.steps * self.step_s / 60, "strategy": "mock"},
        )

    def output_bytes(self, params: Mapping[str, Any]) -> int:
        p = WanParams.from_dict(params)
        return expected_video_bytes(*_mock_size(p), p.frames)

    def run(self, ctx: JobContext) -> JobOutput:
        p = WanParams.from_dict(ctx.params)
        ctx.stage("initializing", 0.01, "mock run: no model is loaded")
        ctx.set_state(JobState.loading)
        ctx.stage("loading_model", 0.05, "mock model")
        ctx.set_state(JobState.running)
        ctx.stage("generating", 0.10, f"{p.steps} steps")
        w, h = _mock_size(p)
        every = ctx.settings.preview_every
        ctx.timer.start()
        for i in range(1, p.steps + 1):
            time.sleep(self.step_s)
            if every and i % every == 0:
                ctx.preview(i, _preview_frame(w, h, p.prompt, p.seed, i / p.steps))
            ctx.step(i, p.steps)
        ctx.set_state(JobState.encoding)
        ctx.stage("post_processing", 0.92)
        frames = _test_pattern(p.frames, w, h, p.prompt, p.seed)
        ctx.stage("saving", 0.95)
        return save_video(ctx, frames, p.fps, {"mock": True, "seed": p.seed})


def _mock_size(p: WanParams) -> tuple[int, int]:
    scale = min(1.0, MAX_MOCK_SIDE / max(p.width, p.height))
    return max(16, int(p.width * scale) // 2 * 2), max(16, int(p.height * scale) // 2 * 2)


def _preview_frame(w: int, h: int, prompt: str, seed: int, done: float) -> Any:
    """The middle frame of the pattern under noise that fades as the steps progress."""
    import numpy as np

    frame = _test_pattern(1, w, h, prompt, seed)[0].astype(np.float32)
    noise = np.random.default_rng(seed).integers(0, 256, frame.shape).astype(np.float32)
    weight = done**0.5  # the picture emerges early, as in a real denoising run
    return (frame * weight + noise * (1.0 - weight)).astype(np.uint8)


def _test_pattern(n: int, w: int, h: int, prompt: str, seed: int) -> Any:
    import numpy as np
    from PIL import Image, ImageDraw

    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    frames: Any = np.empty((n, h, w, 3), dtype=np.uint8)
    phase0 = (seed % 360) / 360.0
    for i in range(n):
        t = phase0 + i / max(1, n)
        r = 127 + 127 * np.sin(2 * np.pi * (xx / w + t))
        g = 127 + 127 * np.sin(2 * np.pi * (yy / h + t * 0.7))
        b = 127 + 127 * np.cos(2 * np.pi * ((xx + yy) / (w + h) - t))
        img = Image.fromarray(np.stack([r, g, b], -1).astype(np.uint8))
        draw = ImageDraw.Draw(img)
        draw.rectangle((0, 0, w, 18), fill=(0, 0, 0))
        draw.text((4, 3), f"MOCK  {prompt[:60]}", fill=(255, 255, 255))
        frames[i] = np.asarray(img)
    return frames
