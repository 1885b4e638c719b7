"""The ``random`` variants: the real Wan2.2 architectures at full size, weights made on the device.

Full depth would need 64 GiB here, so each architecture is built at one block per transformer and
text encoder, at full width, through the same code (meta construction, materialisation on the
device, dtype rules); the full-size parameter counts come from the configs on the meta device.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.helpers import REAL_MANIFEST, make_store
from wan_desktop.engine.estimate import fit_verdict
from wan_desktop.engine.hardware import simulated_profile
from wan_desktop.engine.model_facts import facts_for
from wan_desktop.models.manifest import DEV_LABEL
from wan_desktop.models.manifest_load import load_manifest
from wan_desktop.models.store import ModelStore
from wan_desktop.ui.fit import describe

torch = pytest.importorskip("torch")
random_weights = pytest.importorskip("wan_desktop.models.random_weights")

MODELS = ("t2v-A14B@2.2.0", "i2v-A14B@2.2.0", "ti2v-5B@2.2.0")
# Published figures (FACTS.md): parameters per component.
PUBLISHED = {
    "t2v-A14B": {"transformer": 14.29e9, "transformer_2": 14.29e9, "text_encoder": 5.68e9,
                 "vae": 0.127e9},
    "i2v-A14B": {"transformer": 14.29e9, "transformer_2": 14.29e9, "text_encoder": 5.68e9,
                 "vae": 0.127e9},
    "ti2v-5B": {"transformer": 5.0e9, "text_encoder": 5.68e9, "vae": 0.70e9},
}  # fmt: skip


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> ModelStore:
    return make_store(tmp_path_factory.mktemp("models"), REAL_MANIFEST)


@pytest.mark.parametrize("name", ["t2v-A14B", "i2v-A14B", "ti2v-5B"])
def test_full_size_parameter_counts_match_the_published_figures(name: str) -> None:
    counts = random_weights.parameter_counts(f"random/{name}")
    assert set(counts) == set(PUBLISHED[name])
    for comp, published in PUBLISHED[name].items():
        assert counts[comp] == pytest.approx(published, rel=0.01), comp  # 3 digits
    total = sum(counts.values())
    assert total == pytest.approx(34.4e9 if "A14B" in name else 11.4e9, rel=0.01)


@pytest.mark.parametrize("model", MODELS)
def test_random_variant_is_a_folder_of_configs_labelled_as_noise(
    store: ModelStore, model: str
) -> None:
    folder = store.ensure(model, "random")
    spec = load_manifest(REAL_MANIFEST).get(model)
    var = spec.variants["random"]
    assert (
        var.development
        and var.label == DEV_LABEL == "development variant: random weights, output is noise"
    )
    assert random_weights.is_random(folder)
    files = [p for p in folder.rglob("*") if p.is_file()]
    assert not [p for p in files if p.suffix in (".safetensors", ".bin", ".pth")]
    assert sum(p.stat().st_size for p in files) < 100_000
    # The planner reads the real architecture from the folder's configs and the real sizes.
    facts = facts_for(spec, folder)
    assert facts.source == "files"
    assert facts.hidden_size == spec.memory.hidden_size
    assert facts.num_layers == spec.memory.num_layers
    assert dict(facts.params) == dict(spec.memory.params)


@pytest.mark.parametrize("model", ["T2V-A14B", "TI2V-5B"])
def test_the_fit_of_a_random_variant_is_the_real_models_built_or_not(
    tmp_path: Path, model: str
) -> None:
    # A store of its own: "before" means not built, whatever other tests built meanwhile.
    store = make_store(tmp_path / "models", REAL_MANIFEST)
    rtx4090 = simulated_profile(24, 64, name="RTX 4090", compute_capability=(8, 9))
    real = fit_verdict(store, rtx4090, model, {"variant": "bf16"})
    before = fit_verdict(store, rtx4090, model, {"variant": "random"})
    assert (before.kind, before.strategy, before.vram_gb, before.minutes) == (
        real.kind,
        real.strategy,
        real.vram_gb,
        real.minutes,
    )
    # Built, its configs give the exact architecture (the FFN width, narrower than the
    # manifest's guess): the same kind of fit, still a full-size model's figures.
    store.ensure(model, "random")
    after = fit_verdict(store, rtx4090, model, {"variant": "random"})
    assert after.kind == real.kind
    assert after.vram_gb is not None and after.vram_gb > 10
    assert "tiny" not in describe(before, rtx4090)[0] + describe(after, rtx4090)[0]


@pytest.mark.parametrize(
    ("model", "pipeline", "width", "in_channels", "z_dim"),
    [
        ("t2v-A14B@2.2.0", "WanPipeline", 5120, 16, 16),
        ("i2v-A14B@2.2.0", "WanImageToVideoPipeline", 5120, 36, 16),
        ("ti2v-5B@2.2.0", "WanPipeline", 3072, 48, 48),
    ],
)
def test_each_architecture_builds_at_reduced_depth_on_the_device_in_its_dtype(
    store: ModelStore, model: str, pipeline: str, width: int, in_channels: int, z_dim: int
) -> None:
    folder = store.ensure(model, "random")
    pipe = random_weights.load_pipeline(folder, torch.bfloat16, "cpu", num_layers=1)
    assert type(pipe).__name__ == pipeline
    experts = [m for m in (pipe.transformer, pipe.transformer_2) if m is not None]
    assert len(experts) == (1 if "5B" in model else 2)
    for expert in experts:
        assert len(expert.blocks) == 1
        assert expert.config.num_attention_heads * expert.config.attention_head_dim == width
        assert expert.config.in_channels == in_channels
        for name, p in expert.named_parameters():
            assert p.device.type == "cpu", name
            kept = {"time_embedder", "scale_shift_table", "norm1", "norm2", "norm3"}
            want = torch.float32 if kept.intersection(name.split(".")) else torch.bfloat16
            assert p.dtype == want, name
            assert torch.isfinite(p.float()).all(), name
        # Buffers computed by the constructors survive materialisation (the rotary tables).
        assert torch.equal(expert.rope.freqs_cos, type(expert.rope)(128, (1, 2, 2), 1024).freqs_cos)
    # The two experts are different random draws.
    if len(experts) == 2:
        assert not torch.equal(
            experts[0].blocks[0].attn1.to_q.weight, experts[1].blocks[0].attn1.to_q.weight
        )
    weight = experts[0].blocks[0].attn1.to_q.weight.float()
    assert weight.std().item() == pytest.approx(width**-0.5, rel=0.05)
    te = pipe.text_encoder
    assert (
        te.config.d_model == 4096 and te.config.vocab_size == 256384 and te.config.num_layers == 1
    )
    assert {p.dtype for p in te.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in pipe.vae.parameters()} == {torch.float32}
    assert pipe.vae.config.z_dim == z_dim
    every = [*pipe.transformer.parameters(), *te.parameters(), *pipe.vae.parameters()]
    assert not [p for p in every if p.is_meta]


def test_reduced_depth_model_generates_finite_frames_with_both_experts(
    store: ModelStore,
) -> None:
    folder = store.ensure("t2v-A14B@2.2.0", "random")
    pipe = random_weights.load_pipeline(folder, torch.bfloat16, "cpu", num_layers=1)
    calls = {"transformer": 0, "transformer_2": 0}
    for name in calls:
        getattr(pipe, name).register_forward_pre_hook(
            lambda *_, n=name: calls.__setitem__(n, calls[n] + 1)
        )
    out = pipe(
        prompt="a red fox",
        height=32,
        width=32,
        num_frames=5,
        num_inference_steps=2,  # flow shift 3: t = 1000 (high noise), 750 (low noise)
        max_sequence_length=16,
        guidance_scale=1.0,
        generator=torch.Generator().manual_seed(0),
        output_type="np",
    )
    frames = out.frames[0]
    assert frames.shape == (5, 32, 32, 3)
    assert np.isfinite(frames).all() and frames.std() > 0
    assert calls == {"transformer": 1, "transformer_2": 1}
