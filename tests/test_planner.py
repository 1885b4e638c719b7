"""The VRAM planner: estimates from the manifest or the files, and the strategy it picks."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import REAL_MANIFEST
from wan_desktop.engine.hardware import simulated_profile
from wan_desktop.engine.model_facts import count_parameters, facts_for, facts_from_manifest
from wan_desktop.engine.params import round_size
from wan_desktop.engine.planner import (
    CPU_LADDER,
    GPU_LADDER,
    MPS_LADDER,
    STRATEGIES,
    JobShape,
    plan,
    weights_gb,
)
from wan_desktop.models import load_manifest
from wan_desktop.models.manifest import parse_resolution

MANIFEST = load_manifest(REAL_MANIFEST)
PROFILES = {
    "80GB": simulated_profile(80, 256, name="H100", compute_capability=(9, 0)),
    "24GB": simulated_profile(24, 64, name="RTX 4090", compute_capability=(8, 9)),
    "12GB": simulated_profile(12, 64, name="RTX 3060", compute_capability=(8, 6)),
    "8GB": simulated_profile(8, 32, name="RTX 3070", compute_capability=(8, 6)),
    "no GPU": simulated_profile(0, 64),
}
A14B_720 = {
    "80GB": "model_offload",  # both experts + UMT5 in bf16 do not fit; one expert at a time does
    "24GB": "fp8_group_offload",  # bf16 group offload would need 67 GB of RAM; fp8 halves it
    "12GB": "fp8_group_offload",
    "8GB": "sequential_offload",  # nothing fits 8 GB VRAM even one layer at a time: least VRAM
    "no GPU": "cpu_fp8",
}
# At 480p an 8 GB card holds the offloaded blocks, so RAM is the limit: the least RAM.
A14B_480 = {**A14B_720, "80GB": "gpu", "24GB": "fp8_model_offload", "8GB": "fp8_group_offload"}
TI2V = {
    "80GB": "gpu",
    "24GB": "model_offload",  # FACTS: TI2V-5B fits 24 GB with offloading
    "12GB": "group_offload",
    "8GB": "group_offload",
    "no GPU": "cpu",
}
EXPECTED = {
    ("T2V-A14B", "1280x720"): A14B_720,
    ("T2V-A14B", "854x480"): A14B_480,
    ("I2V-A14B", "1280x720"): A14B_720,
    ("I2V-A14B", "854x480"): A14B_480,
    ("TI2V-5B", "1280x720"): TI2V,
    ("TI2V-5B", "854x480"): TI2V,
}


def job_for(model: str, resolution: str, **extra: Any) -> JobShape:
    spec = MANIFEST.get(model)
    w, h = round_size(*parse_resolution(resolution), spec)
    d = spec.defaults
    return JobShape(w, h, d.frames, d.steps, image=spec.requires_image, **extra)


@pytest.mark.parametrize(("model", "resolution"), list(EXPECTED))
def test_the_cheapest_fitting_strategy_for_each_machine(model: str, resolution: str) -> None:
    facts = facts_from_manifest(MANIFEST.get(model))
    job = job_for(model, resolution)
    for name, profile in PROFILES.items():
        mp = plan(facts, "bfloat16", job, profile)
        assert mp.strategy == EXPECTED[model, resolution][name], name
        chosen = next(
            c for c in mp.candidates if (c.strategy, c.vae_tiling) == (mp.strategy, mp.vae_tiling)
        )
        if chosen.fits:
            # Everything cheaper was estimated not to fit.
            cheaper = mp.ladder[: mp.ladder.index(mp.strategy)]
            assert not any(c.fits for c in mp.candidates if c.strategy in cheaper), name
            assert mp.fits and not mp.notes
        else:
            assert not mp.fits and "no strategy fits" in mp.notes[-1]


def test_when_ram_is_the_limit_the_strategy_needing_least_ram_and_a_plain_no() -> None:
    # Issue 17: a 24 GB GPU with 32 GB RAM fell back to sequential_offload (66.8 GB RAM) over
    # fp8_group_offload (40.2 GB).
    facts = facts_from_manifest(MANIFEST.get("T2V-A14B"))
    profile = simulated_profile(24, 32, name="RTX 4090", compute_capability=(8, 9))
    mp = plan(facts, "bfloat16", job_for("T2V-A14B", "1280x720"), profile)
    assert not mp.fits
    assert mp.strategy == "fp8_group_offload" and mp.ram_gb == pytest.approx(40.2, abs=0.1)
    ram_needs = {c.strategy: c.ram_gb for c in mp.candidates}
    assert ram_needs["sequential_offload"] == pytest.approx(66.8, abs=0.1)
    assert mp.ram_gb == min(c.ram_gb for c in mp.candidates if c.limit == "ram")
    note = mp.notes[-1]
    assert "will not fit this machine" in note and "RAM is the limit" in note
    assert "40.2 GiB of 27.2 GiB usable RAM" in note
    # VRAM the limit everywhere: the least VRAM, said as plainly.
    small = simulated_profile(8, 32, name="RTX 3070", compute_capability=(8, 6))
    mp = plan(facts, "bfloat16", job_for("T2V-A14B", "1280x720"), small)
    assert mp.strategy == "sequential_offload" and "GPU memory is the limit" in mp.notes[-1]


def test_every_strategy_is_chosen_somewhere() -> None:
    chosen = {s for table in EXPECTED.values() for s in table.values()}
    assert chosen == set(STRATEGIES)


def test_estimates_agree_with_published_figures() -> None:
    t2v, ti2v = (facts_from_manifest(MANIFEST.get(m)) for m in ("T2V-A14B", "TI2V-5B"))
    # FACTS.md: bf16 checkpoints of 64 GiB (A14B) and 21 GiB (TI2V-5B); one A14B expert 26.6 GiB.
    assert sum(t2v.params.values()) * 2 / 1024**3 == pytest.approx(64, rel=0.02)
    assert sum(ti2v.params.values()) * 2 / 1024**3 == pytest.approx(21, rel=0.02)
    assert weights_gb(t2v, "bfloat16")["transformer"] == pytest.approx(26.6, rel=0.01)
    assert weights_gb(t2v, "bfloat16", fp8=True)["transformer"] == pytest.approx(13.3, rel=0.01)
    # A14B all on one GPU needs about 80 GB at 720p; TI2V-5B on 24 GB needs offloading.
    gpu_720 = [
        c
        for c in plan(t2v, "bfloat16", job_for("T2V-A14B", "1280x720"), PROFILES["80GB"]).candidates
        if c.strategy == "gpu"
    ]
    assert min(c.vram_gb for c in gpu_720) > 76
    assert plan(ti2v, "bfloat16", job_for("TI2V-5B", "1280x720"), PROFILES["24GB"]).vram_gb < 24


def test_the_time_model_reproduces_its_calibration_point() -> None:
    # FACTS.md: a Wan2.1-14B-class step (832x480, 81 frames, CFG) takes 9.77 s in diffusers on
    # an H100; the throughput table is scaled from that measurement.
    facts = facts_from_manifest(MANIFEST.get("T2V-A14B"))

    def minutes(steps: int) -> float:
        return plan(facts, "bfloat16", JobShape(832, 480, 81, steps), PROFILES["80GB"]).minutes

    per_step_s = (minutes(11) - minutes(1)) * 60 / 10
    assert per_step_s == pytest.approx(9.77, rel=0.05)


def test_vae_tiling_only_above_the_tile_size_and_only_when_needed() -> None:
    facts = facts_from_manifest(MANIFEST.get("TI2V-5B"))
    small = plan(facts, "bfloat16", JobShape(256, 256, 121, 50), PROFILES["8GB"])
    assert not small.vae_tiling and {c.vae_tiling for c in small.candidates} == {False}
    roomy = plan(facts, "bfloat16", job_for("TI2V-5B", "1280x720"), PROFILES["80GB"])
    assert not roomy.vae_tiling
    tight = plan(facts, "bfloat16", job_for("TI2V-5B", "1280x720"), PROFILES["8GB"])
    assert tight.vae_tiling


def test_keep_a_loaded_strategy_when_it_fits_and_gives_the_same_numbers() -> None:
    facts = facts_from_manifest(MANIFEST.get("TI2V-5B"))
    job = job_for("TI2V-5B", "854x480")
    profile = PROFILES["80GB"]
    assert plan(facts, "bfloat16", job, profile).strategy == "gpu"
    assert plan(facts, "bfloat16", job, profile, keep="group_offload").strategy == "group_offload"
    # fp8 storage changes the numbers: a fresh choice, not the loaded one.
    assert plan(facts, "bfloat16", job, profile, keep="fp8_model_offload").strategy == "gpu"


def test_after_an_out_of_memory_error_the_next_strategy_down() -> None:
    facts = facts_from_manifest(MANIFEST.get("TI2V-5B"))
    job = job_for("TI2V-5B", "854x480")
    first = plan(facts, "bfloat16", job, PROFILES["80GB"])
    assert first.next_strategy() == "model_offload"
    retry = plan(facts, "bfloat16", job, PROFILES["80GB"], after=first.strategy)
    assert retry.strategy == "model_offload"
    last = plan(facts, "bfloat16", job, PROFILES["80GB"], after="fp8_group_offload")
    assert last.strategy == "sequential_offload" and last.next_strategy() is None
    cpu = plan(facts, "bfloat16", job, PROFILES["no GPU"])
    assert (cpu.strategy, cpu.next_strategy()) == ("cpu", "cpu_fp8")


def test_ladders_and_dtypes_follow_the_hardware() -> None:
    facts = facts_from_manifest(MANIFEST.get("TI2V-5B"))
    job = job_for("TI2V-5B", "854x480")
    turing = simulated_profile(24, 64, compute_capability=(7, 5))
    mp = plan(facts, "bfloat16", job, turing)
    assert mp.compute_dtype == "float16" and "no bfloat16" in mp.notes[0]
    assert plan(facts, "bfloat16", job, PROFILES["24GB"]).compute_dtype == "bfloat16"
    mps = replace(PROFILES["24GB"], device="mps", compute_capability=None)
    assert plan(facts, "bfloat16", job, mps).ladder == tuple(s.name for s in MPS_LADDER)
    assert not any(s.fp8 for s in MPS_LADDER)
    assert {s.gpu for s in CPU_LADDER} == {False} and {s.gpu for s in GPU_LADDER} == {True}


def test_a_file_that_is_not_safetensors_leaves_the_manifest_figures(tmp_path: Path) -> None:
    spec = MANIFEST.get("TI2V-5B")
    folder = tmp_path / "model"
    (folder / "transformer").mkdir(parents=True)
    (folder / "model_index.json").write_text("{}")
    weights = folder / "transformer" / "diffusion_pytorch_model.safetensors"
    # Random bytes: read as a header length, the first eight would ask for exabytes.
    weights.write_bytes(b"\xff" * 8 + bytes(range(256)) * 64)
    with pytest.raises(ValueError, match="is not a safetensors file"):
        count_parameters(folder / "transformer")
    weights.write_bytes((12).to_bytes(8, "little") + b'{"w": {"sh' + b"\0" * 64)
    with pytest.raises(ValueError, match="unreadable safetensors header"):
        count_parameters(folder / "transformer")
    facts = facts_for(spec, folder)
    assert facts == facts_from_manifest(spec) and facts.source == "manifest"


def test_facts_come_from_the_files_when_the_model_is_on_disk(tiny_models_root: Path) -> None:
    torch = pytest.importorskip("torch")
    import diffusers

    spec = MANIFEST.get("T2V-A14B")
    folder = tiny_models_root / "wan22" / "t2v-A14B@2.2.0+tiny"
    facts = facts_for(spec, folder)
    assert facts.source == "files" and facts_for(spec, None).source == "manifest"
    pipe = diffusers.DiffusionPipeline.from_pretrained(str(folder), dtype=torch.float32)
    for comp in ("transformer", "transformer_2", "text_encoder", "vae"):
        module = getattr(pipe, comp)
        # Tied weights are stored once, so count unique tensors.
        unique = {id(p): p.numel() for p in module.state_dict(keep_vars=True).values()}
        assert count_parameters(folder / comp) == facts.params[comp] == sum(unique.values())
    assert facts.hidden_size == 24 and facts.num_layers == 2 and facts.vae_base_dim == 3
    tiny = plan(facts, "float32", JobShape(96, 64, 9, 4), PROFILES["no GPU"])
    assert tiny.strategy == "cpu" and tiny.ram_gb < 3 and tiny.minutes < 1
    real = plan(facts_from_manifest(spec), "float32", JobShape(96, 64, 9, 4), PROFILES["no GPU"])
    assert real.ram_gb > 50  # the manifest describes the real weights
