"""models.toml: the real manifest loads, and every validation rule names model, field and fix."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import REAL_MANIFEST, real_manifest_data, write_manifest
from wan_desktop.models.errors import (
    ErrorCode,
    InvalidModelIdError,
    ManifestError,
    ModelNotFoundError,
    SchemaVersionError,
    VariantNotFoundError,
)
from wan_desktop.models.manifest import DEV_LABEL
from wan_desktop.models.manifest_load import load_manifest, parse_manifest

T2V = "t2v-A14B@2.2.0"


@pytest.fixture(scope="module")
def manifest() -> Any:
    return load_manifest(REAL_MANIFEST)


def test_real_manifest_has_the_three_wan22_models(manifest: Any) -> None:
    assert [m.id for m in manifest] == [T2V, "i2v-A14B@2.2.0", "ti2v-5B@2.2.0"]
    t2v, i2v, ti2v = manifest
    assert t2v.variant(None).sources[-1] == "hf://Wan-AI/Wan2.2-T2V-A14B-Diffusers@main"
    assert i2v.variant(None).sources[-1] == "hf://Wan-AI/Wan2.2-I2V-A14B-Diffusers@main"
    assert ti2v.variant(None).sources[-1] == "hf://Wan-AI/Wan2.2-TI2V-5B-Diffusers@main"
    # Two experts with their switch points; TI2V has one transformer and the Wan2.2 VAE.
    assert "transformer_2" in t2v.components and t2v.defaults.boundary_ratio == 0.875
    assert "transformer_2" in i2v.components and i2v.defaults.boundary_ratio == 0.9
    assert "transformer_2" not in ti2v.components and ti2v.defaults.boundary_ratio is None
    assert ti2v.defaults.expand_timesteps and ti2v.memory.latent_channels == 48
    assert i2v.memory.in_channels == 36 and i2v.requires_image and i2v.supports_end_image
    # Facts from the published model cards.
    assert t2v.memory.total_params == pytest.approx(34.39e9, rel=0.01)
    assert ti2v.memory.total_params == pytest.approx(11.38e9, rel=0.01)


def test_hashes_of_real_weights_are_not_invented(manifest: Any) -> None:
    # Offline we do not know them: the Hub's metadata supplies them at download time.
    for spec in manifest:
        assert spec.variant(None).files == ()


def test_every_model_has_a_labelled_tiny_development_variant(manifest: Any) -> None:
    for spec in manifest:
        tiny = spec.variants["tiny"]
        assert tiny.development
        assert tiny.label == DEV_LABEL == "development variant: random weights, output is noise"
        assert tiny.sources == (f"builtin://tiny/{spec.name}",)
        assert not spec.variants[spec.default_variant].development


def test_lookup_by_id_name_and_alias(manifest: Any) -> None:
    assert manifest.get(T2V).id == T2V
    assert manifest.get("t2v-A14B").id == T2V
    assert manifest.get("T2V-A14B").id == T2V
    assert manifest.get("t2v-a14b").id == T2V  # aliases and names are case-insensitive


def test_dev_mode_resolves_every_request_to_tiny(manifest: Any) -> None:
    assert manifest.resolve(T2V)[1].name == "bf16"
    assert manifest.resolve(T2V, dev_mode=True)[1].name == "tiny"
    assert manifest.resolve(T2V, "bf16", dev_mode=True)[1].name == "tiny"


def test_unknown_model_lists_the_available_ones(manifest: Any) -> None:
    with pytest.raises(ModelNotFoundError) as err:
        manifest.get("t2v-A99B")
    assert err.value.code is ErrorCode.model_not_found
    assert "t2v-A99B" in err.value.message
    assert T2V in (err.value.fix or "") and "ti2v-5B@2.2.0" in (err.value.fix or "")


def test_unknown_variant_lists_the_available_ones(manifest: Any) -> None:
    with pytest.raises(VariantNotFoundError) as err:
        manifest.resolve(T2V, "fp4")
    assert err.value.code is ErrorCode.variant_not_found
    assert "fp4" in err.value.message and T2V in err.value.message
    assert err.value.fix == "choose one of: bf16, random, tiny"


def test_malformed_id_is_invalid_not_unknown(manifest: Any) -> None:
    with pytest.raises(InvalidModelIdError) as err:
        manifest.get("t2v@latest")
    assert "name@X.Y.Z" in (err.value.fix or "")


# ----------------------------------------------------------------------------------- schema


def test_missing_schema_version_says_what_to_add() -> None:
    data = real_manifest_data()
    del data["schema_version"]
    with pytest.raises(SchemaVersionError) as err:
        parse_manifest(data)
    assert err.value.code is ErrorCode.schema_version_mismatch
    assert "schema_version = 1" in (err.value.fix or "")


def test_newer_schema_asks_to_update_the_app() -> None:
    data = real_manifest_data() | {"schema_version": 2}
    with pytest.raises(SchemaVersionError) as err:
        parse_manifest(data)
    assert "update Wan Desktop" in (err.value.fix or "")


def test_older_schema_gives_migration_guidance() -> None:
    data = real_manifest_data() | {"schema_version": 0}
    with pytest.raises(SchemaVersionError) as err:
        parse_manifest(data)
    assert "migrate" in (err.value.fix or "") and "docs/models-manifest.md" in (err.value.fix or "")


def test_invalid_toml_is_a_manifest_error(tmp_path: Path) -> None:
    bad = tmp_path / "models.toml"
    bad.write_text('schema_version = 1\n[models."a@1.0.0"]\n[models."a@1.0.0"]\n')
    with pytest.raises(ManifestError) as err:
        load_manifest(bad)
    assert "not valid TOML" in err.value.message


def test_missing_manifest_file_names_the_env_var(tmp_path: Path) -> None:
    with pytest.raises(ManifestError) as err:
        load_manifest(tmp_path / "nope.toml")
    assert "WAN_MODELS_MANIFEST" in (err.value.fix or "")


def test_round_trip_through_toml_writer(tmp_path: Path) -> None:
    path = write_manifest(tmp_path / "models.toml", real_manifest_data()["models"])
    again = load_manifest(path)
    original = load_manifest(REAL_MANIFEST)
    assert [m.id for m in again] == [m.id for m in original]
    assert again.get(T2V).defaults == original.get(T2V).defaults


# ------------------------------------------------------------------------- field validation

Mutation = Callable[[dict[str, Any]], None]


def _set(path: str, value: Any) -> Mutation:
    def apply(model: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = model
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value

    return apply


def _del(path: str) -> Mutation:
    def apply(model: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = model
        for key in parents:
            node = node[key]
        del node[last]

    return apply


def _files(*paths: str, **extra: Any) -> Mutation:
    entries = [{"path": p, "size": 1, "sha256": "0" * 64, **extra} for p in paths]
    return _set("variants.bf16.files", entries)


# (mutation, the field the error must name, a word the message or fix must contain)
CASES: dict[str, tuple[Mutation, str, str]] = {
    "unknown task": (_set("task", "v2v"), "task", "t2v"),
    "unknown component": (_set("components", ["transformer", "unet"]), "components", "unet"),
    "no transformer": (_set("components", ["vae"]), "components", "transformer"),
    "boundary without expert": (_del("defaults.boundary_ratio"), "defaults.boundary_ratio", "two"),
    "frames not 4k+1": (_set("defaults.frames", 80), "defaults.frames", "4k+1"),
    "steps not a number": (_set("defaults.steps", "forty"), "defaults.steps", "integer"),
    "bad resolution": (_set("defaults.resolution", "720p"), "resolution", "WIDTHxHEIGHT"),
    "unknown field": (_set("colour", "blue"), "colour", "remove"),
    "no sources": (_set("variants.bf16.sources", []), "variants.bf16.sources", "priority"),
    "unknown scheme": (_set("variants.bf16.sources", ["ftp://x/y"]), "sources[0]", "hf://"),
    "bad dtype": (_set("variants.bf16.dtype", "fp64"), "variants.bf16.dtype", "bfloat16"),
    "default is missing": (_set("default_variant", "fp8"), "default_variant", "bf16"),
    "default is dev": (_set("default_variant", "tiny"), "default_variant", "production"),
    "no tiny": (_del("variants.tiny"), "variants", "builtin://"),
    "tiny not dev": (_set("variants.tiny.development", False), "development", "true"),
    "bad sha256": (_files("vae/config.json", sha256="XYZ"), "sha256", "64"),
    "negative size": (_files("vae/config.json", size=-1), "size", "minimum"),
    "file of unknown component": (_files("vae/x.bin", component="unet"), "component", "vae"),
    "absolute path": (_files("/etc/passwd"), "files[0].path", "absolute"),
    "parent path": (_files("vae/../../x"), "files[0].path", ".."),
    "drive letter": (_files("C:/weights.bin"), "files[0].path", "absolute"),
    "backslash": (_files("vae\\config.json"), "files[0].path", "forward slashes"),
    "reserved name": (_files("vae/CON.json"), "files[0].path", "reserved"),
    "reserved com port": (_files("com1"), "files[0].path", "reserved"),
    "trailing dot": (_files("vae/config."), "files[0].path", "Windows"),
    "colon": (_files("vae/a:b"), "files[0].path", "Windows"),
    "case collision": (_files("vae/Config.json", "vae/config.json"), "files", "case"),
    "duplicate file": (_files("vae/config.json", "vae/config.json"), "files", "twice"),
    "unknown file field": (_files("vae/config.json", colour="red"), "colour", "path"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_validation_rule(case: str) -> None:
    mutate, fieldname, hint = CASES[case]
    data = real_manifest_data()
    model = copy.deepcopy(data["models"][T2V])
    mutate(model)
    data["models"][T2V] = model
    with pytest.raises(ManifestError) as err:
        parse_manifest(data)
    exc = err.value
    text = f"{exc.message} {exc.fix}"
    assert exc.code is ErrorCode.manifest_invalid
    assert T2V in exc.message, text
    assert fieldname in exc.message, text
    assert hint.lower() in text.lower(), text
    assert exc.fix, "every validation error says how to fix it"


def test_bad_model_id_in_manifest() -> None:
    data = real_manifest_data()
    data["models"]["T2V latest"] = data["models"].pop(T2V)
    with pytest.raises(InvalidModelIdError) as err:
        parse_manifest(data)
    assert "T2V latest" in err.value.message and "name@X.Y.Z" in err.value.message


def test_alias_collision_between_models() -> None:
    data = real_manifest_data()
    data["models"]["i2v-A14B@2.2.0"]["aliases"] = ["t2v-a14b@2.2.0".upper().split("@")[0]]
    with pytest.raises(ManifestError) as err:
        parse_manifest(data)
    assert "already used" in err.value.message


def test_files_with_hashes_are_known_without_source_metadata() -> None:
    data = real_manifest_data()
    model = data["models"][T2V]
    model["variants"]["bf16"]["files"] = [
        {"path": "model_index.json", "size": 10, "sha256": "a" * 64},
        {
            "path": "transformer/diffusion_pytorch_model.safetensors.index.json",
            "size": 5,
            "sha256": "b" * 64,
            "component": "transformer",
        },
        {
            "path": "transformer/diffusion_pytorch_model-00001-of-00002.safetensors",
            "size": 9,
            "sha256": "c" * 64,
            "component": "transformer",
            "part": 1,
            "shard_index": "transformer/diffusion_pytorch_model.safetensors.index.json",
        },
    ]
    var = parse_manifest(data).get(T2V).variant("bf16")
    assert var.files_known
    assert var.files[2].part == 1


def test_shard_pointing_at_unlisted_index_is_rejected() -> None:
    data = real_manifest_data()
    data["models"][T2V]["variants"]["bf16"]["files"] = [
        {"path": "transformer/a.safetensors", "shard_index": "transformer/missing.index.json"},
    ]
    with pytest.raises(ManifestError) as err:
        parse_manifest(data)
    assert "unlisted index" in err.value.message
