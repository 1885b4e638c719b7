"""POST /generation/submit (JSON and multipart) and GET /generation/models/detect."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.api_helpers import api_client, image_bytes, lora_bytes
from tests.engine_helpers import wait_job
from wan_desktop.api.settings import ApiSettings
from wan_desktop.engine import JobState
from wan_desktop.engine.pipelines.mock import MOCK_LABEL


@pytest.fixture
def client(tmp_path: Path) -> Any:
    with api_client(tmp_path) as (c, eng):
        c.engine = eng  # type: ignore[attr-defined]
        yield c


def fields_of(response: Any) -> set[str]:
    return {d["loc"][-1] for d in response.json()["errors"]}


def test_json_submit_answers_the_contract_shape_and_says_mock(client: Any) -> None:
    r = client.post(
        "/api/v1/generation/submit",
        json={"model_type": "T2V-A14B", "prompt": "  a fox in snow  ", "steps": 3},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) >= {
        "task_id",
        "status",
        "message",
        "real_ai_enabled",
        "hardware_optimized",
        "estimated_vram_gb",
        "estimated_time_minutes",
        "parameters",
    }
    assert body["status"] == "pending"
    assert body["real_ai_enabled"] is False and "MOCK" in body["message"]
    assert MOCK_LABEL in body["message"] and body["model_label"] == MOCK_LABEL
    p = body["parameters"]
    assert p["model_type"] == "T2V-A14B" and p["prompt"] == "a fox in snow"
    assert p["resolution"] == "1280x720" and p["steps"] == 3
    assert p["image_path"] is None and p["lora_path"] is None and p["lora_strength"] == 1.0
    job = wait_job(client.engine, body["task_id"], JobState.completed)
    assert job.params["steps"] == 3


def test_defaults_follow_the_contract_and_extras_reach_the_engine(client: Any) -> None:
    r = client.post(
        "/api/v1/generation/submit",
        json={
            "modelType": "T2V-A14B",
            "prompt": "waves",
            "seed": 42,
            "num_frames": 9,
            "fps": 8,
            "guidance_scale": 2.5,
            "negative_prompt": "blur",
            "priority": "high",
            "resolution": "854x480",
        },
    )
    assert r.status_code == 200, r.text
    job = client.engine.get(r.json()["task_id"])
    assert job.params["steps"] == 50  # the contract's default
    assert job.params["seed"] == 42 and job.params["frames"] == 9 and job.params["fps"] == 8
    assert job.params["guidance_scale"] == 2.5 and job.params["negative_prompt"] == "blur"
    assert job.priority.name == "high"
    assert r.json()["parameters"]["resolution"] == "854x480"
    client.engine.cancel(job.id)


@pytest.mark.parametrize(
    ("body", "bad"),
    [
        ({"prompt": "x"}, {"model_type"}),
        ({"model_type": "t2v-a14b", "prompt": "x"}, {"model_type"}),  # exact case
        ({"model_type": "T2V-A14B", "prompt": "   "}, {"prompt"}),
        ({"model_type": "T2V-A14B", "prompt": "x" * 501}, {"prompt"}),
        ({"model_type": "T2V-A14B", "prompt": "x", "resolution": "640x480"}, {"resolution"}),
        ({"model_type": "T2V-A14B", "prompt": "x", "steps": 0}, {"steps"}),
        ({"model_type": "T2V-A14B", "prompt": "x", "steps": 101}, {"steps"}),
        ({"model_type": "T2V-A14B", "prompt": "x", "steps": "many"}, {"steps"}),
        ({"model_type": "T2V-A14B", "prompt": "x", "lora_strength": 2.5}, {"lora_strength"}),
        ({"model_type": "T2V-A14B", "prompt": "x", "num_frames": 10}, {"num_frames"}),
        ({"model_type": "T2V-A14B", "prompt": "x", "priority": "urgent!"}, {"priority"}),
        ({"model_type": "I2V-A14B", "prompt": "x"}, {"image"}),
        ({"model_type": "TI2V-5B", "prompt": "x"}, {"image"}),
        ({"model_type": "T2V-A14B", "prompt": "x", "lora_path": "../../etc/passwd"}, {"lora_path"}),
        (
            {"model_type": "T2V-A14B", "prompt": "x", "lora_path": "loras/missing.safetensors"},
            {"lora_path"},
        ),
        ({"model_type": 7, "prompt": ["x"]}, {"model_type", "prompt"}),
    ],
)
def test_bad_fields_get_422_naming_each_field(
    client: Any, body: dict[str, Any], bad: set[str]
) -> None:
    r = client.post("/api/v1/generation/submit", json=body)
    assert r.status_code == 422, r.text
    assert fields_of(r) == bad
    assert all(d["msg"] for d in r.json()["errors"])
    assert all(f"{name}:" in r.json()["detail"] for name in bad)  # one readable string


def test_malformed_bodies_are_422_or_415_never_500(client: Any) -> None:
    r = client.post(
        "/api/v1/generation/submit",
        content=b"{not json",
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 422
    r = client.post("/api/v1/generation/submit", json=[1, 2])
    assert r.status_code == 422
    r = client.post(
        "/api/v1/generation/submit", content=b"hi", headers={"content-type": "text/plain"}
    )
    assert r.status_code == 415


def test_multipart_with_image_and_end_image_on_i2v(client: Any) -> None:
    r = client.post(
        "/api/v1/generation/submit",
        data={"model_type": "I2V-A14B", "prompt": "the cat turns its head", "steps": "2"},
        files={
            "image": ("cat.png", image_bytes("PNG"), "image/png"),
            "end_image": ("end.webp", image_bytes("WEBP"), "image/webp"),
        },
    )
    assert r.status_code == 200, r.text
    p = r.json()["parameters"]
    assert p["steps"] == 2
    assert p["image_path"].startswith("uploads/") and p["image_path"].endswith(".png")
    assert p["end_image_path"].endswith(".webp")
    job = client.engine.get(r.json()["task_id"])
    saved = Path(job.params["image"])
    assert saved.parent == client.engine.settings.uploads_dir.resolve()
    assert saved.read_bytes() == image_bytes("PNG")
    client.engine.cancel(job.id)


def test_an_image_larger_than_any_video_frame_is_refused_before_it_is_decoded(
    client: Any,
) -> None:
    """A 39.7-megapixel PNG used to pass a 40 MP limit (six at once: +500 MB): an image is now
    bounded by the largest frame a Wan job makes (4096x4096), and a JPEG decodes at 1/8 scale."""
    from wan_desktop.engine.params import SIDE_MAX

    big = image_bytes("PNG", (SIDE_MAX + 1, SIDE_MAX))
    r = client.post(
        "/api/v1/generation/submit",
        data={"model_type": "I2V-A14B", "prompt": "x"},
        files={"image": ("big.png", big, "image/png")},
    )
    assert r.status_code == 422 and fields_of(r) == {"image"}
    assert f"at most {SIDE_MAX}x{SIDE_MAX}" in r.text
    assert client.engine.queue() == []
    photo = image_bytes("JPEG", (4000, 3000))  # a 12-megapixel photo is fine
    r = client.post(
        "/api/v1/generation/submit",
        data={"model_type": "I2V-A14B", "prompt": "x"},
        files={"image": ("photo.jpg", photo, "image/jpeg")},
    )
    assert r.status_code == 200, r.text
    client.engine.cancel(r.json()["task_id"])


def test_images_are_checked_by_decoding_not_by_content_type(client: Any) -> None:
    fake = b"\x89PNG\r\n\x1a\n" + b"not really a png" * 10
    r = client.post(
        "/api/v1/generation/submit",
        data={"model_type": "I2V-A14B", "prompt": "x"},
        files={"image": ("x.png", fake, "image/png")},
    )
    assert r.status_code == 422 and fields_of(r) == {"image"}
    gif = image_bytes("GIF")
    r = client.post(
        "/api/v1/generation/submit",
        data={"model_type": "I2V-A14B", "prompt": "x"},
        files={"image": ("x.jpg", gif, "image/jpeg")},
    )
    assert r.status_code == 422 and "JPEG, PNG or WebP" in r.text
    # A real JPEG sent as text/plain is fine: the bytes decide.
    r = client.post(
        "/api/v1/generation/submit",
        data={"model_type": "I2V-A14B", "prompt": "x", "steps": "1"},
        files={"image": ("x.txt", image_bytes("JPEG"), "text/plain")},
    )
    assert r.status_code == 200, r.text
    assert not list(client.engine.settings.uploads_dir.glob("*.png"))  # refused ones not kept


def test_images_over_the_limit_are_refused(tmp_path: Path) -> None:
    settings = ApiSettings(max_image_bytes=20_000)
    with api_client(tmp_path, settings=settings) as (c, _):
        big = image_bytes("PNG", (64, 48)) + b"\0" * 30_000  # decodes, but too many bytes
        r = c.post(
            "/api/v1/generation/submit",
            data={"model_type": "I2V-A14B", "prompt": "x"},
            files={"image": ("big.png", big, "image/png")},
        )
        assert r.status_code == 422 and "limit" in r.text
        huge = b"\0" * 1_200_000  # past the whole-body limit: refused while streaming
        r = c.post(
            "/api/v1/generation/submit",
            data={"model_type": "I2V-A14B", "prompt": "x"},
            files={"image": ("huge.png", huge, "image/png")},
        )
        assert r.status_code == 422 and "over" in r.text


def test_t2v_refuses_an_image(client: Any) -> None:
    r = client.post(
        "/api/v1/generation/submit",
        data={"model_type": "T2V-A14B", "prompt": "x"},
        files={"image": ("a.png", image_bytes(), "image/png")},
    )
    assert r.status_code == 422 and fields_of(r) == {"image"}


def test_lora_path_resolves_inside_the_lora_folder_and_zero_strength_stays(client: Any) -> None:
    r = client.post(
        "/api/v1/lora/upload",
        files={"file": ("style.safetensors", lora_bytes(), "application/octet-stream")},
    )
    assert r.status_code == 200, r.text
    r = client.post(
        "/api/v1/generation/submit",
        json={
            "model_type": "T2V-A14B",
            "prompt": "x",
            "loraPath": "loras/style.safetensors",
            "loraStrength": 0,
        },
    )
    assert r.status_code == 200, r.text
    assert r.json()["parameters"]["lora_path"] == "loras/style.safetensors"
    assert r.json()["parameters"]["lora_strength"] == 0.0
    job = client.engine.get(r.json()["task_id"])
    assert job.params["loras"][0]["strength"] == 0.0
    assert Path(job.params["loras"][0]["path"]).parent == client.engine.settings.loras_dir.resolve()
    task = client.get(f"/api/v1/queue/{job.id}").json()
    assert task["lora_path"] == "loras/style.safetensors" and task["lora_strength"] == 0.0
    client.engine.cancel(job.id)


def test_submissions_past_the_rate_limit_get_429(tmp_path: Path) -> None:
    settings = ApiSettings(submit_burst=2, submit_per_s=0.01)
    with api_client(tmp_path, settings=settings) as (c, eng):
        eng.pause()
        body = {"model_type": "T2V-A14B", "prompt": "x"}
        assert c.post("/api/v1/generation/submit", json=body).status_code == 200
        assert c.post("/api/v1/generation/submit", json=body).status_code == 200
        r = c.post("/api/v1/generation/submit", json=body)
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        # A bad request does not spend the budget and still says what is wrong.
        assert c.post("/api/v1/generation/submit", json={"prompt": "x"}).status_code == 422


@pytest.mark.parametrize(
    ("query", "model"),
    [
        ("prompt=a+fox", "T2V-A14B"),
        ("prompt=a+fox&has_image=true", "I2V-A14B"),
        ("prompt=animate+this+photo&has_image=true", "TI2V-5B"),
        ("prompt=starting+from+this+image,+a+storm&has_image=true", "TI2V-5B"),
        ("prompt=x&has_image=true&has_end_image=true", "I2V-A14B"),
    ],
)
def test_detect_follows_the_contract_rule(client: Any, query: str, model: str) -> None:
    r = client.get(f"/api/v1/generation/models/detect?{query}")
    assert r.status_code == 200
    body = r.json()
    assert body["detected_model_type"] == model
    assert set(body["requirements"]) >= {
        "requires_image",
        "supports_end_image",
        "estimated_vram_gb",
        "estimated_time_per_frame",
        "max_resolution",
        "recommended_steps",
    }
    assert body["explanation"] and len(body["alternatives"]) == 2
    assert client.get("/api/v1/generation/models/detect?has_image=maybe").status_code == 422


def test_detect_with_two_images_says_which_model_uses_the_end_image(client: Any) -> None:
    body = client.get(
        "/api/v1/generation/models/detect?prompt=x&has_image=true&has_end_image=true"
    ).json()
    assert body["detected_model_type"] == "I2V-A14B"  # the only model that uses an end image
    assert any("only model that uses an end image" in line for line in body["explanation"])


def _detect_on(root: Path, profile: Any, query: str = "prompt=a+fox") -> dict[str, Any]:
    from tests.engine_helpers import engine_settings
    from tests.helpers import REAL_MANIFEST
    from wan_desktop.engine import Engine
    from wan_desktop.engine.pipelines.mock import MockPipeline
    from wan_desktop.models import load_manifest

    eng = Engine(
        engine_settings(root),
        pipelines=[MockPipeline(load_manifest(REAL_MANIFEST))],
        hardware=profile,
    )
    with api_client(root, engine=eng) as (c, _):
        first = c.get(f"/api/v1/generation/models/detect?{query}")
        again = c.get(f"/api/v1/generation/models/detect?{query}")
    eng.shutdown()
    assert first.status_code == 200 and again.json() == first.json()
    return dict(first.json()["requirements"])


def test_detect_estimates_come_from_the_planner_for_this_machine(tmp_path: Path) -> None:
    from wan_desktop.engine import simulated_profile
    from wan_desktop.engine.model_facts import facts_from_manifest
    from wan_desktop.engine.planner import JobShape, plan
    from wan_desktop.models import load_manifest

    machines = {
        "cpu": simulated_profile(0, 64),
        "rtx4090": simulated_profile(24, 64, compute_capability=(8, 9)),
        "h100": simulated_profile(80, 256, compute_capability=(9, 0)),
    }
    req = {name: _detect_on(tmp_path / name, p) for name, p in machines.items()}

    # What the planner says for T2V-A14B's default job on each machine.
    from tests.helpers import REAL_MANIFEST

    spec = load_manifest(REAL_MANIFEST).get("T2V-A14B")
    d = spec.defaults
    w, h = (int(x) for x in d.resolution.split("x"))
    shape = JobShape(w, h, d.frames, d.steps, guidance=d.guidance_scale > 1.0)
    for name, profile in machines.items():
        mp = plan(facts_from_manifest(spec), spec.variant(None).dtype, shape, profile)
        r = req[name]
        assert r["estimated_vram_gb"] == mp.vram_gb and r["strategy"] == mp.strategy, name
        assert r["estimated_minutes"] == mp.minutes and r["device"] == profile.device
        assert r["estimated_time_per_frame"] == round(mp.minutes * 60 / d.frames, 2)
        assert r["for_job"] == {"resolution": f"{w}x{h}", "frames": d.frames, "steps": d.steps}
        assert r["facts"] == "manifest"  # not downloaded: the manifest's facts
    # The answer follows the machine: no VRAM on a CPU; a 24 GB card offloads, an H100 less so.
    assert req["cpu"]["estimated_vram_gb"] == 0.0 and req["cpu"]["strategy"].startswith("cpu")
    assert req["rtx4090"]["strategy"] != "gpu" and 0 < req["rtx4090"]["estimated_vram_gb"] < 24
    assert req["h100"]["estimated_vram_gb"] > req["rtx4090"]["estimated_vram_gb"]
    per_frame = [req[m]["estimated_time_per_frame"] for m in ("h100", "rtx4090", "cpu")]
    assert per_frame == sorted(per_frame) and per_frame[0] < per_frame[-1]


def test_detect_without_a_planner_answer_says_so_and_never_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The hardware profile override is unreadable: the planner has no machine to plan for.
    monkeypatch.setenv("WAN_HARDWARE_PROFILE", "{not json")
    r = _detect_on(tmp_path, None)
    assert r["estimated_vram_gb"] is None and r["estimated_time_per_frame"] is None
    assert "could not estimate T2V-A14B" in r["estimate_note"]
    assert r["requires_image"] is False and r["recommended_steps"] > 0


def submit_schemas(client: Any) -> dict[str, dict[str, Any]]:
    """The request body of /generation/submit as /openapi.json shows it, by content type."""
    op = client.get("/openapi.json").json()["paths"]["/api/v1/generation/submit"]["post"]
    return {kind: c["schema"] for kind, c in op["requestBody"]["content"].items()}


def typed(prop: dict[str, Any]) -> dict[str, Any]:
    """An optional field's schema is anyOf [its type, null]: its type."""
    return next((o for o in prop.get("anyOf", ()) if o.get("type") != "null"), prop)


def test_every_input_limit_is_the_engines(client: Any) -> None:
    """Declared once (engine/params.py): the negative prompt was 2000 in the API and unlimited
    in the engine; the API's schema and checks now map their names onto the engine's limits."""
    from tests.helpers import REAL_MANIFEST
    from wan_desktop.engine.errors import InvalidInputError
    from wan_desktop.engine.params import LIMITS, TEXT_MAX, validate_wan_params
    from wan_desktop.models import load_manifest

    manifest = load_manifest(REAL_MANIFEST)
    too_long = "n" * (TEXT_MAX["negative_prompt"] + 1)
    with pytest.raises(InvalidInputError) as err:
        validate_wan_params(
            {"model": "T2V-A14B", "prompt": "a fox", "negative_prompt": too_long}, manifest
        )
    assert set(err.value.errors) == {"negative_prompt"}
    fields = {
        k: typed(v) for k, v in submit_schemas(client)["application/json"]["properties"].items()
    }
    assert fields["negative_prompt"]["maxLength"] == TEXT_MAX["negative_prompt"]
    assert (fields["num_frames"]["minimum"], fields["num_frames"]["maximum"]) == LIMITS["frames"]
    assert (fields["steps"]["minimum"], fields["steps"]["maximum"]) == LIMITS["steps"]
    assert (fields["fps"]["minimum"], fields["fps"]["maximum"]) == LIMITS["fps"]


def test_the_openapi_schema_shows_the_real_fields_with_the_engines_bounds(client: Any) -> None:
    """The request body in /openapi.json is the model that checks it, generated from
    engine/params: every bound there is the engine's, and every bound is the one enforced."""
    from wan_desktop.api.errors import FIELD_NAMES
    from wan_desktop.engine.params import CONTRACT_RESOLUTIONS, LIMITS, TEXT_MAX

    schemas = submit_schemas(client)
    assert set(schemas) == {"application/json", "multipart/form-data"}
    engine_name = {contract: engine for engine, contract in FIELD_NAMES.items()}
    for kind, schema in schemas.items():
        props = {k: typed(v) for k, v in schema["properties"].items()}
        assert schema["required"] == ["model_type", "prompt"], kind
        assert schema["additionalProperties"] is False, kind  # unknown fields are refused
        numbers = {k for k, v in props.items() if v.get("type") in ("integer", "number")}
        assert numbers == {
            "steps",
            "lora_strength",
            "seed",
            "num_frames",
            "fps",
            "guidance_scale",
            "gpus",
        }, kind
        for name in numbers:
            lo, hi = LIMITS[engine_name.get(name, name)]
            assert (props[name]["minimum"], props[name]["maximum"]) == (lo, hi), (kind, name)
        for name in ("prompt", "negative_prompt"):
            assert props[name]["maxLength"] == TEXT_MAX[name], (kind, name)
        assert props["prompt"]["minLength"] == 1
        assert props["model_type"]["enum"] == ["T2V-A14B", "I2V-A14B", "TI2V-5B"]
        assert props["resolution"]["enum"] == list(CONTRACT_RESOLUTIONS)
        assert props["steps"]["default"] == 50 and props["lora_strength"]["default"] == 1.0
    files = {"image", "end_image"}
    multipart = schemas["multipart/form-data"]["properties"]
    assert all(
        multipart[f] == {**multipart[f], "type": "string", "format": "binary"} for f in files
    )
    assert not files & set(schemas["application/json"]["properties"])  # no file in JSON

    # The bounds shown are the bounds checked: one past each is refused in those words.
    client.engine.pause()
    props = {k: typed(v) for k, v in schemas["application/json"]["properties"].items()}
    for name in sorted(numbers):
        whole = props[name]["type"] == "integer"  # (bounds in /openapi.json are 1.0 or 1)
        lo, hi = (int(b) if whole else b for b in (props[name]["minimum"], props[name]["maximum"]))
        step = 1 if whole else 0.5
        for bad in (lo - step, hi + step):
            body = {"model_type": "T2V-A14B", "prompt": "x", name: bad}
            r = client.post("/api/v1/generation/submit", json=body)
            assert r.status_code == 422 and fields_of(r) == {name}, (name, bad, r.text)
            assert f"{name}: is {bad}; use {lo}–{hi}" in r.json()["detail"]
    ok = {"model_type": "T2V-A14B", "prompt": "x", "num_frames": 5, "gpus": 1}
    ok |= {name: props[name]["minimum"] for name in numbers - set(ok)}
    r = client.post("/api/v1/generation/submit", json=ok)
    assert r.status_code == 200, r.text
    client.engine.cancel(r.json()["task_id"])


# What a browser sends for a form's empty file input: a part with no file name and no bytes.
NO_FILE = {"end_image": ("", b"", "application/octet-stream")}


def test_json_and_multipart_are_checked_by_one_model_the_same_way(client: Any) -> None:
    """Form fields are text: they are coerced exactly as the same values sent in JSON, and an
    empty field means "not given" (the default), as null does."""
    client.engine.pause()
    bad = {
        "model_type": "T2V-A14B",
        "prompt": "x",
        "steps": "0",
        "seed": "many",
        "lora_strength": "nan",
        "fps": "61",
        "guidance_scale": "inf",
        "num_frames": "2.5",
        "priority": "HIGH",
    }
    as_json = client.post("/api/v1/generation/submit", json=bad)
    as_form = client.post(
        "/api/v1/generation/submit",
        data=bad,
        files=NO_FILE,
    )
    assert as_json.status_code == as_form.status_code == 422, (as_json.text, as_form.text)
    assert as_json.json()["errors"] == as_form.json()["errors"]
    assert fields_of(as_json) == set(bad) - {"model_type", "prompt"}
    detail = as_json.json()["detail"]
    assert "steps: is 0; use 1–100" in detail and "seed: must be a whole number" in detail
    assert "lora_strength: is nan; use 0.0–2.0" in detail and "guidance_scale: is inf" in detail
    assert "priority: 'HIGH' is not one of low, normal, high (exact case)" in detail

    good = {
        "model_type": "T2V-A14B",
        "prompt": "x",
        "steps": "3",
        "seed": "",
        "num_frames": "5",
        "fps": " 8 ",
        "lora_strength": "",
        "guidance_scale": "2.5",
        "resolution": "",
        "priority": "",
        "negative_prompt": "",
    }
    for r in (
        client.post("/api/v1/generation/submit", json=good),
        client.post("/api/v1/generation/submit", data=good, files=NO_FILE),
    ):
        assert r.status_code == 200, r.text
        job = client.engine.get(r.json()["task_id"])
        p = job.params
        assert (p["steps"], p["frames"], p["fps"], p["guidance_scale"]) == (3, 5, 8, 2.5)
        assert isinstance(p["seed"], int)  # "" = none: a seed is drawn and recorded
        assert r.json()["parameters"]["resolution"] == "1280x720"  # "" = the default
        assert r.json()["parameters"]["lora_strength"] == 1.0 and job.priority.name == "normal"
        client.engine.cancel(job.id)


def test_yes_no_and_non_finite_values_are_not_numbers(client: Any) -> None:
    """Pydantic's lax mode reads true as 1: a yes/no is refused where a number goes."""
    body = '{"model_type": "T2V-A14B", "prompt": "x", "steps": true, "seed": false, '
    body += '"lora_strength": true, "guidance_scale": NaN, "fps": Infinity}'
    r = client.post(
        "/api/v1/generation/submit", content=body, headers={"content-type": "application/json"}
    )
    assert r.status_code == 422, r.text
    assert fields_of(r) == {"steps", "seed", "lora_strength", "guidance_scale", "fps"}
    detail = r.json()["detail"]
    assert "steps: must be a whole number 1–100" in detail
    assert "lora_strength: must be a number 0.0–2.0" in detail
    assert "guidance_scale: is nan; use 0.0–30.0" in detail
    assert client.engine.queue() == []


def test_prompts_are_measured_after_trimming_and_long_ones_say_by_how_much(client: Any) -> None:
    from wan_desktop.engine.params import TEXT_MAX

    client.engine.pause()
    most = TEXT_MAX["prompt"]
    r = client.post(
        "/api/v1/generation/submit",
        json={"model_type": "T2V-A14B", "prompt": f"  {'p' * most}\n "},
    )
    assert r.status_code == 200, r.text
    assert r.json()["parameters"]["prompt"] == "p" * most
    r = client.post(
        "/api/v1/generation/submit",
        json={
            "model_type": "T2V-A14B",
            "prompt": "p" * (most + 1),
            "negative_prompt": " " + "n" * (TEXT_MAX["negative_prompt"] + 1),
        },
    )
    assert r.status_code == 422 and fields_of(r) == {"prompt", "negative_prompt"}
    detail = r.json()["detail"]
    assert f"prompt: is {most + 1} characters; shorten it to {most}" in detail
    n = TEXT_MAX["negative_prompt"]
    assert f"negative_prompt: is {n + 1} characters; shorten it to {n}" in detail


def test_an_image_sent_as_text_is_refused_not_ignored(client: Any) -> None:
    """A JSON "image" was silently dropped: the job ran without the picture the client meant."""
    body = {"model_type": "I2V-A14B", "prompt": "x", "image": "/etc/hostname"}
    r = client.post("/api/v1/generation/submit", json=body)
    assert r.status_code == 422 and fields_of(r) == {"image"}
    assert "image: send a file, as a part of multipart/form-data" in r.json()["detail"]
    r = client.post("/api/v1/generation/submit", json={**body, "model_type": "T2V-A14B"})
    assert r.status_code == 422 and fields_of(r) == {"image"}
    assert client.engine.queue() == []
    # null and "" (an empty file input) mean no image.
    client.engine.pause()
    for none in (None, ""):
        r = client.post(
            "/api/v1/generation/submit",
            json={"model_type": "T2V-A14B", "prompt": "x", "image": none, "end_image": none},
        )
        assert r.status_code == 200, r.text
        client.engine.cancel(r.json()["task_id"])


def test_a_field_sent_under_both_of_its_names_is_refused(client: Any) -> None:
    """model_type and modelType disagreeing: one of them was dropped without a word."""
    r = client.post(
        "/api/v1/generation/submit",
        json={"model_type": "T2V-A14B", "modelType": "I2V-A14B", "prompt": "x"},
    )
    assert r.status_code == 422 and fields_of(r) == {"model_type"}, r.text
    assert "model_type: send model_type or modelType, not both" in r.json()["detail"]
    assert client.engine.queue() == []


def test_errors_never_echo_a_huge_value_or_list_every_unknown_field(client: Any) -> None:
    huge = 10**300
    body: dict[str, Any] = {"model_type": "T2V-A14B", "prompt": "x", "steps": huge}
    r = client.post("/api/v1/generation/submit", json=body)
    assert r.status_code == 422 and fields_of(r) == {"steps"}
    assert str(huge) not in r.text and "(301 characters)" in r.json()["detail"]
    body |= {f"extra_{i}": i for i in range(12)}
    r = client.post("/api/v1/generation/submit", json=body)
    assert r.status_code == 422 and "body: 12 unknown fields; remove them" in r.json()["detail"]
    assert len(fields_of(r)) == 10 + 2  # ten named, the body, and steps
