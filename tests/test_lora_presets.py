"""Accelerator LoRAs: packs in models.toml, fetched and verified like a model, and the "fast"
preset that applies them per expert with the steps and guidance they were made for."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.helpers import REAL_MANIFEST, make_store, sha256
from tests.hfrepo import hf_store
from tests.hubserver import HubServer, PatternContent
from tests.wan_helpers import decoded, real_engine, run_job, sidecar, write_image
from wan_desktop.engine import Engine, InvalidInputError, JobState
from wan_desktop.engine.params import CHOICES, validate_wan_params
from wan_desktop.models import load_manifest
from wan_desktop.models.errors import ManifestError
from wan_desktop.models.paths import COMPLETE_MARKER

T2V_PACK, I2V_PACK = "lightning-t2v-A14B@1.1.0", "lightning-i2v-A14B@1.0.0"
T2V_DIR = "Wan2.2-T2V-A14B-4steps-lora-rank64-Seko-V1.1"


def test_the_manifest_lists_the_4_step_loras_of_both_a14b_models() -> None:
    manifest = load_manifest(REAL_MANIFEST)
    assert [spec.id for spec in manifest] == ["t2v-A14B@2.2.0", "i2v-A14B@2.2.0", "ti2v-5B@2.2.0"]
    for model, pack_id in (("t2v-A14B@2.2.0", T2V_PACK), ("i2v-A14B@2.2.0", I2V_PACK)):
        pack = manifest.lora_pack(model, "fast")
        assert pack is not None and pack.id == pack_id
        assert dict(pack.settings) == {"steps": 4, "guidance_scale": 1.0, "guidance_scale_2": 1.0}
        assert {e: (x.file, x.strength) for e, x in pack.experts.items()} == {
            "transformer": ("high_noise_model.safetensors", 1.0),
            "transformer_2": ("low_noise_model.safetensors", 1.0),
        }
        real = pack.download.variant(None)
        assert "hf://lightx2v/Wan2.2-Lightning@main" in real.sources
        assert not real.development and not real.files  # sizes and hashes: the Hub's listing
        folder = "T2V" if pack_id == T2V_PACK else "I2V"
        assert pack.download.allow_patterns[0].startswith(f"Wan2.2-{folder}-A14B-4steps-lora")
        assert pack.download.variant("tiny").development
        assert manifest.get(pack_id) is pack.download  # ensured, verified, deleted by id
    assert manifest.lora_pack("ti2v-5B@2.2.0", "fast") is None  # none is published


def test_a_pack_for_a_model_that_does_not_exist_is_named(tmp_path: Path) -> None:
    import tomlkit

    data = tomlkit.parse(REAL_MANIFEST.read_text("utf-8"))
    data["loras"][T2V_PACK]["base"] = "t2v-A99B@2.2.0"
    path = tmp_path / "models.toml"
    path.write_text(tomlkit.dumps(data), "utf-8")
    with pytest.raises(ManifestError) as err:
        load_manifest(path)
    assert T2V_PACK in err.value.message and "'base'" in err.value.message


def test_a_pack_downloads_from_the_hub_with_its_sizes_and_hashes(tmp_path: Path) -> None:
    """Only the pack's two files of the repository, verified against the Hub's LFS sha256."""
    with HubServer() as hub:
        repo = hub.add_repo("lightx2v/Wan2.2-Lightning")
        files = {
            f"{T2V_DIR}/high_noise_model.safetensors": PatternContent(300_000, seed=1),
            f"{T2V_DIR}/low_noise_model.safetensors": PatternContent(300_000, seed=2),
        }
        for path, content in files.items():
            repo.add(path, content, lfs=True)
        other = "Wan2.2-I2V-A14B-4steps-lora-rank64-Seko-V1/high_noise_model.safetensors"
        repo.add(other, PatternContent(300_000, seed=3), lfs=True)
        repo.add("README.md", b"# Wan2.2-Lightning\n")
        store = hf_store(tmp_path, hub, manifest=REAL_MANIFEST)
        folder = store.ensure(T2V_PACK)
        assert hub.body_requests(other) == [] and hub.body_requests("README.md") == []
    marker = json.loads((folder / COMPLETE_MARKER).read_text("utf-8"))
    assert {f["path"]: f["sha256"] for f in marker["files"]} == {
        path: repo.files[path].sha256 for path in files
    }
    for path in files:
        assert sha256(folder / path) == repo.files[path].sha256
    assert store.verify(T2V_PACK).ok
    assert store.layout().known[folder.name] == (T2V_PACK, "bf16", "wan22")  # GC knows it


def test_lock_writes_a_packs_sizes_and_hashes_into_its_own_table(tmp_path: Path) -> None:
    import shutil

    from wan_desktop.models.manifest_lock import lock_model

    manifest = tmp_path / "models.toml"
    shutil.copy(REAL_MANIFEST, manifest)
    with HubServer() as hub:
        repo = hub.add_repo("lightx2v/Wan2.2-Lightning")
        for i, name in enumerate(("high", "low")):
            repo.add(f"{T2V_DIR}/{name}_noise_model.safetensors", PatternContent(20_000, seed=i))
        lock_model(hf_store(tmp_path, hub, manifest=manifest), T2V_PACK)
    locked = load_manifest(manifest).lora_pack("t2v-A14B@2.2.0", "fast")
    assert locked is not None
    files = {f.path: f.sha256 for f in locked.download.variant(None).files}
    assert files == {path: f.sha256 for path, f in repo.files.items()}


@pytest.fixture(scope="module")
def engine(tiny_models_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    import shutil

    root = tmp_path_factory.mktemp("preset-models")
    shutil.copytree(tiny_models_root, root, symlinks=True, dirs_exist_ok=True)
    eng = real_engine(root, tmp_path_factory.mktemp("preset-engine"))
    yield eng
    eng.shutdown()


@pytest.mark.parametrize("model", ["T2V-A14B", "I2V-A14B"])
def test_fast_applies_each_experts_lora_with_its_steps_and_guidance(
    engine: Engine, tmp_path: Path, model: str
) -> None:
    extra: dict[str, Any] = {"model": model}
    if model == "I2V-A14B":
        extra["image"] = str(write_image(tmp_path / "first.png", (128, 96), (200, 60, 30)))
    # Asked for 20 steps at guidance 5: the preset sets what its LoRAs were made for.
    fast = run_job(engine, seed=4, preset="fast", steps=20, guidance_scale=5.0, **extra)
    assert fast.state is JobState.completed, fast.failure
    p = fast.params
    assert (p["preset"], p["steps"], p["guidance_scale"], p["guidance_scale_2"]) == (
        "fast",
        4,
        1.0,
        1.0,
    )
    meta = sidecar(fast)
    loras = {Path(lora["path"]).name: lora["strengths"] for lora in meta["generation"]["loras"]}
    assert loras == {
        "high_noise_model.safetensors": {"transformer": 1.0, "transformer_2": 0.0},
        "low_noise_model.safetensors": {"transformer": 0.0, "transformer_2": 1.0},
    }
    pack_id = T2V_PACK if model == "T2V-A14B" else I2V_PACK
    assert all(f"{pack_id}+tiny" in lora["path"] for lora in meta["generation"]["loras"])
    # The same job without the LoRAs is another video: they took effect.
    plain = run_job(engine, seed=4, steps=4, guidance_scale=1.0, guidance_scale_2=1.0, **extra)
    assert plain.state is JobState.completed, plain.failure
    assert sidecar(plain)["generation"]["loras"] == []
    assert not np.array_equal(decoded(fast), decoded(plain))


def test_fast_is_refused_for_a_model_without_a_pack() -> None:
    manifest = load_manifest(REAL_MANIFEST)
    with pytest.raises(InvalidInputError) as err:
        validate_wan_params({"model": "TI2V-5B", "prompt": "a fox", "preset": "fast"}, manifest)
    assert set(err.value.errors) == {"preset"} and "TI2V-5B" in err.value.errors["preset"]
    with pytest.raises(InvalidInputError) as err:
        validate_wan_params({"model": "T2V-A14B", "prompt": "a", "preset": "turbo"}, manifest)
    assert all(name in err.value.errors["preset"] for name in CHOICES["preset"])


def test_the_api_and_the_cli_take_the_preset(tmp_path: Path) -> None:
    import argparse

    from tests.api_helpers import api_client
    from wan_desktop.engine import cli

    with api_client(tmp_path) as (client, eng):
        body = {"model_type": "T2V-A14B", "prompt": "a fox"}
        r = client.post("/api/v1/generation/submit", json={**body, "preset": "fast"})
        assert r.status_code == 200, r.text
        job = eng.get(r.json()["task_id"])
        assert job.params["preset"] == "fast" and job.params["steps"] == 4
        r = client.post("/api/v1/generation/submit", json={**body, "preset": "turbo"})
        assert r.status_code == 422 and "preset" in r.json()["detail"]
    parser = argparse.ArgumentParser()
    cli.add_parser(parser.add_subparsers())
    out = str(tmp_path / "a.mp4")
    argv = ["generate", "--model", "x", "--prompt", "y", "--preset", "fast", "--out", out]
    args = parser.parse_args(argv)
    assert cli._params(args)[0]["preset"] == "fast"


def test_a_tiny_pack_builds_in_development_mode(tmp_path: Path) -> None:
    store = make_store(tmp_path / "models", REAL_MANIFEST, dev_mode=True)
    folder = store.ensure(I2V_PACK)
    assert folder.name == f"{I2V_PACK}+tiny"
    assert {p.name for p in folder.iterdir() if not p.name.startswith(".")} == {
        "high_noise_model.safetensors",
        "low_noise_model.safetensors",
    }
    assert store.verify(I2V_PACK).ok
