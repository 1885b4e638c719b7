"""Helpers for tests of the real Wan pipeline on the tiny development variants."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from tests.engine_helpers import engine_settings, wait_job, wan_spec
from tests.helpers import REAL_MANIFEST
from wan_desktop.engine import Engine, JobState, simulated_profile
from wan_desktop.engine.hardware import HardwareProfile
from wan_desktop.engine.outputs import read_mp4, write_mp4
from wan_desktop.models.config import OrchestratorConfig

# Small enough for a 2-core CPU: one job takes about a second once the model is loaded.
SMALL = {"resolution": "96x64", "frames": 9, "steps": 4}


def real_engine(
    models_root: Path,
    data_root: Path,
    *,
    hardware: HardwareProfile | None = None,
    start: bool = True,
    **overrides: Any,
) -> Engine:
    """An engine that runs the real Wan pipeline in development mode (tiny variants)."""
    models = OrchestratorConfig.from_env(
        {}, models_root=models_root, manifest_path=REAL_MANIFEST, dev_mode=True
    )
    settings = engine_settings(data_root, mock=False, models=models, **overrides)
    return Engine(settings, hardware=hardware or simulated_profile(0, 16), start=start)


def small_spec(**params: Any) -> Any:
    return wan_spec(**{**SMALL, **params})


def run_job(engine: Engine, *, timeout: float = 240, **params: Any) -> Any:
    job = engine.submit(small_spec(**params))
    return wait_job(
        engine, job.id, JobState.completed, JobState.failed, JobState.cancelled, timeout=timeout
    )


def sidecar(job: Any) -> dict[str, Any]:
    return dict(json.loads(Path(job.output.sidecar).read_text("utf-8")))


def decoded(job: Any) -> Any:
    return read_mp4(Path(job.output.video))


def direct_call(pipe: Any, params: Mapping[str, Any]) -> Any:
    """A plain diffusers call with a job's normalised parameters: float frames (F, H, W, 3)."""
    import torch
    from PIL import Image

    images = {}
    if params.get("image"):
        images["image"] = Image.open(params["image"]).convert("RGB")
    if params.get("end_image"):
        images["last_image"] = Image.open(params["end_image"]).convert("RGB")
    pipe.scheduler = type(pipe.scheduler).from_config(
        pipe.scheduler.config, flow_shift=params["flow_shift"]
    )
    if pipe.config.boundary_ratio is not None:
        images["guidance_scale_2"] = params["guidance_scale_2"]
    out = pipe(
        prompt=params["prompt"],
        negative_prompt=params["negative_prompt"],
        height=params["height"],
        width=params["width"],
        num_frames=params["frames"],
        num_inference_steps=params["steps"],
        guidance_scale=params["guidance_scale"],
        generator=torch.Generator().manual_seed(params["seed"]),
        output_type="np",
        **images,
    )
    return out.frames[0]


def direct_frames(folder: Path, params: Mapping[str, Any], work: Path) -> Any:
    """The same generation as a plain diffusers call, encoded and decoded like the engine's."""
    import diffusers
    import torch

    image = bool(params.get("image"))
    cls = diffusers.WanImageToVideoPipeline if image else diffusers.DiffusionPipeline
    pipe = cls.from_pretrained(str(folder), dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    path = work / "direct.mp4"
    write_mp4(direct_call(pipe, params), path, params["fps"])
    return read_mp4(path)


def write_image(path: Path, size: tuple[int, int], color: tuple[int, int, int]) -> Path:
    import numpy as np
    from PIL import Image

    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    rgb = np.stack(
        [(xx * 255 // max(1, w - 1)), (yy * 255 // max(1, h - 1)), np.full_like(xx, color[2])], -1
    ).astype(np.uint8)
    rgb[: h // 2, : w // 2] = color
    Image.fromarray(rgb).save(path)
    return path


def make_lora(dest: Path, *, head_dim: int = 12, seed: int = 1, rank: int = 4) -> Path:
    """A real LoRA file for the tiny transformers (non-zero B, so it changes the output).

    ``head_dim`` other than the tiny models' 12 makes a LoRA whose shapes do not fit them.
    """
    import diffusers
    from peft import LoraConfig, get_peft_model_state_dict

    from wan_desktop.models import tiny

    transformer = tiny._transformer(tiny._require(), seed=seed, in_channels=16, out_channels=16)
    if head_dim != transformer.config.attention_head_dim:
        transformer = diffusers.WanTransformer3DModel.from_config(
            {**transformer.config, "attention_head_dim": head_dim}
        )
    config = LoraConfig(
        r=rank,
        lora_alpha=rank,
        target_modules=["to_q", "to_k", "to_v", "to_out.0"],
        init_lora_weights=False,  # random A and B: an effect we can see
    )
    transformer.add_adapter(config)
    diffusers.WanPipeline.save_lora_weights(
        str(dest.parent),
        transformer_lora_layers=get_peft_model_state_dict(transformer),
        weight_name=dest.name,
    )
    return dest


@contextlib.contextmanager
def forward_hook(hook: Callable[[Any, Any], None]) -> Iterator[None]:
    """A global torch forward pre-hook on every Wan transformer, for the duration of a block."""
    import torch

    def on_forward(module: Any, args: Any) -> None:
        if type(module).__name__ == "WanTransformer3DModel":
            hook(module, args)

    handle = torch.nn.modules.module.register_module_forward_pre_hook(on_forward)
    try:
        yield
    finally:
        handle.remove()


def child_main() -> None:
    """``python -c ... models_root data_root``: a process running the real pipeline (killed)."""
    models_root, data_root = Path(sys.argv[1]), Path(sys.argv[2])
    engine = real_engine(models_root, data_root)
    first = run_job(engine, seed=5)
    assert first.state is JobState.completed, first.failure
    ids = [
        engine.submit(small_spec(prompt=f"job {i}", steps=100, resolution="320x192")).id
        for i in range(3)
    ]
    from wan_desktop.engine import JobStep

    def on_event(event: Any) -> None:
        if isinstance(event, JobStep) and event.job_id == ids[0] and event.step >= 1:
            (data_root / "running").touch()

    engine.subscribe(on_event, name="child")
    (data_root / "ids.json").write_text(json.dumps({"first": first.id, "queued": ids}))
    time.sleep(3600)
