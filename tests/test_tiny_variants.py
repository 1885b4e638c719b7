"""The tiny development variants are real Wan2.2 pipelines at toy size."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import REAL_MANIFEST, make_store
from wan_desktop.models.paths import COMPLETE_MARKER
from wan_desktop.models.store import ModelStore

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")


@pytest.mark.parametrize(
    ("model", "pipeline_class", "experts", "latent_channels"),
    [
        ("t2v-A14B@2.2.0", "WanPipeline", 2, 16),
        ("i2v-A14B@2.2.0", "WanImageToVideoPipeline", 2, 16),
        ("ti2v-5B@2.2.0", "WanPipeline", 1, 48),
    ],
)
def test_tiny_variant_loads_and_runs_one_step(
    tiny_store: ModelStore, model: str, pipeline_class: str, experts: int, latent_channels: int
) -> None:
    from PIL import Image

    path = tiny_store.get_wan_paths(model).root
    pipe = diffusers.DiffusionPipeline.from_pretrained(str(path))
    assert type(pipe).__name__ == pipeline_class
    assert (pipe.transformer_2 is not None) == (experts == 2)
    assert pipe.vae.config.z_dim == latent_channels
    spec = tiny_store.manifest.get(model)
    assert pipe.config.boundary_ratio == spec.defaults.boundary_ratio
    assert bool(pipe.config.expand_timesteps) == spec.defaults.expand_timesteps

    steps: list[int] = []

    def on_step(pipe: object, i: int, t: object, kw: dict[str, object]) -> dict[str, object]:
        steps.append(i)
        return kw

    kwargs = {}
    if pipeline_class == "WanImageToVideoPipeline":
        kwargs["image"] = Image.new("RGB", (64, 64), (200, 30, 30))
    size = 64 if latent_channels == 48 else 32  # the Wan2.2 VAE compresses 16x per side
    out = pipe(
        prompt="a red fox running through snow",
        height=size,
        width=size,
        num_frames=5,
        num_inference_steps=1,
        generator=torch.Generator().manual_seed(0),
        output_type="np",
        callback_on_step_end=on_step,
        **kwargs,
    )
    assert out.frames.shape == (1, 5, size, size, 3)
    assert steps == [0]


def test_tiny_builds_are_byte_identical(tiny_models_root: Path, tmp_path: Path) -> None:
    again = make_store(tmp_path / "again", REAL_MANIFEST, dev_mode=True)
    path = again.ensure("ti2v-5B@2.2.0")
    first = json.loads(
        (tiny_models_root / "wan22" / "ti2v-5B@2.2.0+tiny" / COMPLETE_MARKER).read_text()
    )
    second = json.loads((path / COMPLETE_MARKER).read_text())
    assert first["files"] == second["files"]
