"""Per-variant defaults: the tiny development variants make small videos unless asked otherwise."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import REAL_MANIFEST, real_manifest_data, write_manifest
from wan_desktop.engine.errors import InvalidInputError
from wan_desktop.engine.params import validate_wan_params
from wan_desktop.models import load_manifest
from wan_desktop.models.errors import ManifestError
from wan_desktop.models.manifest_load import parse_manifest

T2V = "t2v-A14B@2.2.0"
MANIFEST = load_manifest(REAL_MANIFEST)


def test_tiny_variants_override_sizes_and_steps_only() -> None:
    for spec in MANIFEST:
        tiny, full = spec.defaults_for("tiny"), spec.defaults_for(None)
        assert full == spec.defaults == spec.defaults_for(spec.default_variant)
        assert (tiny.steps, tiny.frames, tiny.resolution) == (8, 17, "320x192")
        assert tiny.max_resolution == "320x192"
        assert (tiny.flow_shift, tiny.guidance_scale, tiny.boundary_ratio) == (
            full.flow_shift,
            full.guidance_scale,
            full.boundary_ratio,
        )


def test_variant_defaults_survive_a_round_trip(tmp_path: Path) -> None:
    again = load_manifest(write_manifest(tmp_path / "m.toml", real_manifest_data()["models"]))
    assert again.get(T2V).defaults_for("tiny") == MANIFEST.get(T2V).defaults_for("tiny")


@pytest.mark.parametrize(
    ("override", "field", "hint"),
    [
        ({"boundary_ratio": 0.5}, "variants.tiny.defaults.boundary_ratio", "only"),
        ({"frames": 16}, "variants.tiny.defaults.frames", "4k+1"),
        ({"resolution": "small"}, "variants.tiny.defaults.resolution", "WIDTHxHEIGHT"),
        ({"steps": 0}, "variants.tiny.defaults.steps", "minimum"),
    ],
)
def test_bad_variant_defaults_are_refused(override: dict[str, Any], field: str, hint: str) -> None:
    data = copy.deepcopy(real_manifest_data())
    data["models"][T2V]["variants"]["tiny"]["defaults"] = override
    with pytest.raises(ManifestError) as err:
        parse_manifest(data)
    assert field in err.value.message and hint in f"{err.value.message} {err.value.fix}"


def test_a_job_takes_the_defaults_of_the_variant_that_runs() -> None:
    raw = {"model": "T2V-A14B", "prompt": "a fox"}
    full = validate_wan_params(raw, MANIFEST)
    dev = validate_wan_params(raw, MANIFEST, dev_mode=True)
    assert (full.width, full.height, full.frames, full.steps) == (1280, 720, 81, 40)
    assert (dev.width, dev.height, dev.frames, dev.steps) == (320, 192, 17, 8)
    # The app's and the API's usual request: capped to the tiny variant's size in dev mode.
    asked = validate_wan_params(
        {**raw, "resolution": "1280x720", "steps": 50}, MANIFEST, dev_mode=True
    )
    assert (asked.width, asked.height, asked.steps) == (320, 176, 50)
    explicit = validate_wan_params({**raw, "variant": "tiny"}, MANIFEST)
    assert explicit.frames == 17 and explicit.variant == "tiny"


@pytest.mark.parametrize("dev_mode", [False, True])
@pytest.mark.parametrize(
    "raw",
    [
        {"model": "T2V-A14B", "prompt": "a fox", "resolution": "854x480"},
        {"model": "TI2V-5B", "prompt": "a fox", "resolution": "1920x1080", "seed": 3},
        {"model": "t2v-A14B", "prompt": " a fox ", "flow_shift": 3, "guidance_scale_2": 1},
    ],
)
def test_validation_is_idempotent(raw: dict[str, Any], dev_mode: bool) -> None:
    once = validate_wan_params(raw, MANIFEST, dev_mode=dev_mode).to_dict()
    assert validate_wan_params(once, MANIFEST, dev_mode=dev_mode).to_dict() == once


def test_second_expert_settings_are_refused_on_one_transformer_models(tmp_path: Path) -> None:
    lora = tmp_path / "style.safetensors"
    lora.write_bytes(b"x")
    raw = {
        "model": "TI2V-5B",
        "prompt": "a fox",
        "guidance_scale_2": 2.0,
        "loras": [{"path": str(lora), "strength": 1.0, "strength_2": 0.5}],
    }
    with pytest.raises(InvalidInputError) as err:
        validate_wan_params(raw, MANIFEST)
    assert set(err.value.errors) == {"guidance_scale_2", "loras[0]"}
