"""Each memory strategy's real code path, run on the CPU (the "GPU" is the CPU here).

diffusers' offloading runs cpu→cpu when told the device: model offload with ``device="cpu"``,
group offload at block and leaf level. So every strategy applies and generates here; the ones
that only move weights must give exactly the plain result, the fp8 ones a different but sane one.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.helpers import REAL_MANIFEST
from tests.wan_helpers import make_lora
from wan_desktop.engine.hardware import simulated_profile
from wan_desktop.engine.lora import LoraSet
from wan_desktop.engine.model_facts import facts_for
from wan_desktop.engine.params import LoraSpec
from wan_desktop.engine.planner import STRATEGIES, JobShape, MemoryPlan, plan
from wan_desktop.models import load_manifest

torch = pytest.importorskip("torch")
wan_load = pytest.importorskip("wan_desktop.engine.pipelines.wan_load")

T2V = "t2v-A14B@2.2.0"


@pytest.fixture(scope="module")
def folder(tiny_models_root: Path) -> Path:
    return tiny_models_root / "wan22" / f"{T2V}+tiny"


def plan_with(folder: Path, strategy: str, *, tiling: bool = False) -> MemoryPlan:
    facts = facts_for(load_manifest(REAL_MANIFEST).get(T2V), folder)
    base = plan(facts, "float32", JobShape(96, 64, 5, 2), simulated_profile(0, 16))
    return replace(base, strategy=strategy, vae_tiling=tiling)


def generate(pipe: Any) -> Any:
    out = pipe(
        prompt="a red fox",
        height=64,
        width=96,
        num_frames=5,
        num_inference_steps=2,
        generator=torch.Generator().manual_seed(0),
        output_type="np",
    )
    pipe.maybe_free_model_hooks()
    return out.frames[0]


@pytest.fixture(scope="module")
def plain(folder: Path) -> Any:
    return generate(wan_load.load_pipeline(folder, "float32"))


@pytest.mark.parametrize("strategy", list(STRATEGIES))
def test_strategy_runs_on_the_cpu(folder: Path, plain: Any, strategy: str) -> None:
    pipe = wan_load.load_pipeline(folder, "float32")
    wan_load.apply_strategy(pipe, plan_with(folder, strategy), torch.device("cpu"))
    frames = generate(pipe)
    assert np.isfinite(frames).all() and frames.shape == plain.shape
    if STRATEGIES[strategy].fp8:
        stored = {p.dtype for p in pipe.transformer.parameters()}
        assert torch.float8_e4m3fn in stored
        assert not np.array_equal(frames, plain)
        assert np.abs(frames - plain).mean() < 0.1  # lossy, not broken
    else:
        # Moving weights must not change the result. To the last bit on most CPUs; under model
        # offload accelerate's hooks hand each component fresh input tensors, and on some CPUs
        # (an AMD EPYC with MKL here) a matrix product then rounds its last bit differently:
        # 1.5e-7 at most, measured. A real change (a wrong weight, a missed layer) is far larger.
        np.testing.assert_allclose(frames, plain, rtol=0, atol=1e-6)


def test_vae_tiling_is_switched_by_the_plan(folder: Path) -> None:
    pipe = wan_load.load_pipeline(folder, "float32")
    wan_load.apply_strategy(pipe, plan_with(folder, "cpu", tiling=True), torch.device("cpu"))
    assert pipe.vae.use_tiling
    wan_load.apply_strategy(pipe, plan_with(folder, "cpu"), torch.device("cpu"))
    assert not pipe.vae.use_tiling


@pytest.mark.parametrize("strategy", ["cpu_fp8", "fp8_group_offload", "fp8_model_offload"])
def test_loras_keep_full_precision_over_fp8_weights(
    folder: Path, tmp_path: Path, strategy: str
) -> None:
    from safetensors.torch import load_file

    lora = make_lora(tmp_path / "lora.safetensors")
    pipe = wan_load.load_pipeline(folder, "float32")
    wan_load.apply_strategy(pipe, plan_with(folder, strategy), torch.device("cpu"))
    base = generate(pipe)
    loras = LoraSet(pipe, ["transformer", "transformer_2"], fp8_compute=torch.float32)
    applied, skipped = loras.apply([LoraSpec(str(lora), 1.0)])
    assert not skipped and len(applied) == 1
    name = applied[0].adapter
    params = dict(pipe.transformer.named_parameters())
    for key, value in load_file(str(lora)).items():
        ours = params[key.removeprefix("transformer.").replace(".weight", f".{name}.weight")]
        assert ours.dtype == torch.float32
        assert torch.equal(ours.detach().cpu(), value), "the file's values, not fp8-rounded ones"
    styled = generate(pipe)
    assert np.isfinite(styled).all() and not np.array_equal(styled, base)


@pytest.mark.parametrize("model", ["t2v-A14B@2.2.0", "ti2v-5B@2.2.0"])  # Wan2.1 and Wan2.2 VAEs
def test_latent_previews_follow_the_picture(tiny_models_root: Path, model: str) -> None:
    from torch.nn import functional

    from wan_desktop.engine.pipelines.preview import LatentPreview, normalise

    pipe = wan_load.load_pipeline(tiny_models_root / "wan22" / f"{model}+tiny", "float32")
    scale = int(pipe.vae_scale_factor_spatial)
    preview = LatentPreview.fit(pipe.vae, scale)
    gen = torch.Generator().manual_seed(123)  # not the pictures the map was fitted on
    pictures = functional.interpolate(
        torch.rand(4, 3, 3, 3, generator=gen) * 2 - 1, size=(64, 96), mode="bilinear"
    )
    with torch.no_grad():
        latents = normalise(pipe.vae, pipe.vae.encode(pictures[:, :, None]).latent_dist.mode())
    for i in range(4):
        rgb = preview(latents[i : i + 1])
        assert rgb.shape == (64, 96, 3) and rgb.dtype == np.uint8
        blocks = functional.avg_pool2d(pictures[i : i + 1], scale)
        truth = blocks.repeat_interleave(scale, 2).repeat_interleave(scale, 3)[0]
        r = np.corrcoef(rgb.astype(np.float32).ravel(), truth.permute(1, 2, 0).numpy().ravel())
        # Even random-weight VAEs keep enough colour for a linear map to follow the picture.
        assert r[0, 1] > 0.15
