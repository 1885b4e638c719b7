"""The React frontend's fields, checked against the tables in docs/api.md.

The tables are written from the API contract, not from this server's code: the test reads them
from the docs and checks every answer against them (presence and type of each field), plus the
contract's rules the frontend depends on (detect vs. submit, the TI2V-5B end image, 422 shape).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.api_helpers import api_client, image_bytes, lora_bytes
from wan_desktop.engine import JobState

DOCS = Path(__file__).resolve().parent.parent / "docs" / "api.md"
_HEADING = re.compile(r"^#### (GET|POST|DELETE|PUT) (\S+)$|^#### (422 .*)$")
_ROW = re.compile(r"^\| `([^`]+)` \| ([^|]+) \|$")


def contract_tables() -> dict[str, dict[str, str]]:
    """``{"POST /api/v1/prompt/preview": {"preview_enhanced": "string", ...}, ...}``."""
    tables: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for line in DOCS.read_text(encoding="utf-8").splitlines():
        m = _HEADING.match(line)
        if m:
            current = tables.setdefault(m.group(3) or f"{m.group(1)} {m.group(2)}", {})
            continue
        if line.startswith("#"):
            current = None
        row = _ROW.match(line)
        if row and current is not None:
            current[row.group(1)] = row.group(2).strip()
    return tables


def _values(doc: Any, path: str) -> list[Any]:
    """Every value at a dotted path; ``name[]`` steps into each item of a list."""
    values = [doc]
    for part in path.split("."):
        each = part.endswith("[]")
        key = part[:-2] if each else part
        nxt: list[Any] = []
        for v in values:
            assert isinstance(v, dict) and key in v, f"{path}: no {key!r} in {v!r}"
            nxt.extend(v[key] if each else [v[key]])
        values = nxt
    return values


def _type_ok(value: Any, kind: str) -> bool:
    if kind.endswith(" or null"):
        return value is None or _type_ok(value, kind[: -len(" or null")])
    if kind.startswith("one of "):
        return value in [x.strip() for x in kind[len("one of ") :].split(",")]
    checks = {
        "string": lambda v: isinstance(v, str),
        "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "boolean": lambda v: isinstance(v, bool),
        "list": lambda v: isinstance(v, list),
        "object": lambda v: isinstance(v, dict),
    }
    return checks[kind](value)


def check(doc: Any, table: dict[str, str]) -> list[str]:
    """What in ``doc`` breaks the table (an empty list when nothing does)."""
    problems = []
    for path, kind in table.items():
        try:
            values = _values(doc, path)
        except AssertionError as exc:
            problems.append(str(exc))
            continue
        problems += [f"{path} = {v!r} is not {kind}" for v in values if not _type_ok(v, kind)]
    return problems


def test_the_docs_hold_the_contract_tables() -> None:
    tables = contract_tables()
    assert set(tables) >= {
        "POST /api/v1/generation/submit",
        "GET /api/v1/generation/models/detect",
        "GET /api/v1/lora/list",
        "GET /api/v1/lora/{name}/memory-impact",
        "POST /api/v1/prompt/enhance",
        "POST /api/v1/prompt/preview",
        "POST /api/v1/prompt/validate",
        "422 on the frontend's routes",
    }
    # The fields issue 17 found missing are in the tables (so the check below covers them).
    assert {"estimated_memory_mb", "vram_available_mb", "memory_impact"} <= set(
        tables["GET /api/v1/lora/{name}/memory-impact"]
    )
    assert {"preview_enhanced", "suggested_enhancements", "character_count.preview"} <= set(
        tables["POST /api/v1/prompt/preview"]
    )
    assert tables["GET /api/v1/lora/list"]["loras[].current_strength"] == "number"
    assert tables["422 on the frontend's routes"]["detail"] == "string"


@pytest.fixture
def client(tmp_path: Path) -> Any:
    with api_client(tmp_path) as (c, eng):
        eng.pause()  # answers are checked, nothing needs to run
        c.engine = eng  # type: ignore[attr-defined]
        yield c


def test_every_frontend_answer_matches_the_contract_tables(client: Any) -> None:
    tables = contract_tables()
    r = client.post(
        "/api/v1/lora/upload",
        files={"file": ("style.safetensors", lora_bytes(), "application/octet-stream")},
    )
    assert r.status_code == 200, r.text
    answers = {
        "POST /api/v1/generation/submit": client.post(
            "/api/v1/generation/submit",
            json={
                "model_type": "T2V-A14B",
                "prompt": "a fox",
                "loraPath": "loras/style.safetensors",
            },
        ),
        "GET /api/v1/generation/models/detect": client.get(
            "/api/v1/generation/models/detect?prompt=a+fox&has_image=true"
        ),
        "GET /api/v1/lora/list": client.get("/api/v1/lora/list"),
        "GET /api/v1/lora/{name}/memory-impact": client.get("/api/v1/lora/style/memory-impact"),
        "POST /api/v1/prompt/enhance": client.post(
            "/api/v1/prompt/enhance", json={"prompt": "a robot in a neon city"}
        ),
        "POST /api/v1/prompt/preview": client.post(
            "/api/v1/prompt/preview", json={"prompt": "a robot in a neon city"}
        ),
        "POST /api/v1/prompt/validate": client.post(
            "/api/v1/prompt/validate", json={"prompt": "a robot in a neon city"}
        ),
        "422 on the frontend's routes": client.post(
            "/api/v1/generation/submit", json={"model_type": "T2V-A14B", "steps": 0}
        ),
    }
    assert set(answers) == set(tables), "every table is checked against a real answer"
    for name, r in answers.items():
        assert r.status_code == (422 if name.startswith("422") else 200), (name, r.text)
        assert check(r.json(), tables[name]) == [], name
    # A missing field or a wrong type is caught (the check can fail).
    assert check({"memory_impact": "huge"}, tables["GET /api/v1/lora/{name}/memory-impact"])


def test_detect_requires_an_image_exactly_where_submit_does(client: Any) -> None:
    both = client.get(
        "/api/v1/generation/models/detect?prompt=x&has_image=true&has_end_image=true"
    ).json()
    assert both["detected_model_type"] == "I2V-A14B"
    assert both["requirements"]["supports_end_image"] is True
    for query in ("prompt=x", "prompt=x&has_image=true", "prompt=animate+this&has_image=true"):
        body = client.get(f"/api/v1/generation/models/detect?{query}").json()
        model = body["detected_model_type"]
        r = client.post("/api/v1/generation/submit", json={"model_type": model, "prompt": "x"})
        refused_for_image = r.status_code == 422 and "image" in {
            e["loc"][-1] for e in r.json()["errors"]
        }
        assert body["requirements"]["requires_image"] is refused_for_image, model


def test_ti2v_takes_an_end_image_and_says_it_is_not_used(client: Any) -> None:
    r = client.post(
        "/api/v1/generation/submit",
        data={"model_type": "TI2V-5B", "prompt": "a storm"},
        files={
            "image": ("a.png", image_bytes(), "image/png"),
            "end_image": ("b.png", image_bytes(), "image/png"),
        },
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert "end image is not used" in body["message"]
    assert body["parameters"]["end_image_path"] is None
    job = client.engine.get(body["task_id"])
    assert job.state is JobState.queued and job.params.get("end_image") is None
    assert any("end image is not used" in w for w in job.warnings)
    task = client.get(f"/api/v1/queue/{job.id}").json()
    assert any("end image is not used" in w for w in task["warnings"])
    # I2V-A14B uses it; T2V-A14B still refuses images.
    r = client.post(
        "/api/v1/generation/submit",
        data={"model_type": "T2V-A14B", "prompt": "x"},
        files={"end_image": ("b.png", image_bytes(), "image/png")},
    )
    assert r.status_code == 422 and "end_image" in r.json()["detail"]


def test_a_422_names_every_bad_field_in_one_string(client: Any) -> None:
    r = client.post(
        "/api/v1/generation/submit",
        json={"model_type": "t2v", "prompt": "", "steps": 500, "lora_strength": 9},
    )
    assert r.status_code == 422
    body = r.json()
    assert isinstance(body["detail"], str)
    for name in ("model_type", "prompt", "steps", "lora_strength"):
        assert f"{name}:" in body["detail"]
    assert {e["loc"][-1] for e in body["errors"]} == {
        "model_type",
        "prompt",
        "steps",
        "lora_strength",
    }
    # Routes FastAPI validates answer the same way.
    r = client.post("/api/v1/prompt/enhance", json={"options": {"apply_vace": "maybe"}})
    assert r.status_code == 422 and isinstance(r.json()["detail"], str)
    assert "prompt" in r.json()["detail"] and "options.apply_vace" in r.json()["detail"]
    r = client.get("/api/v1/queue?limit=0")
    assert r.status_code == 422 and "limit" in r.json()["detail"]
    # The explainer API keeps FastAPI's list.
    r = client.post("/api/v1/videos/generate", json={"configuration": {}})
    assert r.status_code == 422 and isinstance(r.json()["detail"], list)


def test_unknown_fields_are_refused_and_bad_input_is_never_echoed_whole(client: Any) -> None:
    # Under the API's body cap (a larger body is a 413 before it is read): 400 kB of bad input.
    pad = "x" * 400_000
    r = client.post(
        "/api/v1/generation/submit", json={"model_type": "T2V-A14B", "prompt": "x", "pad": pad}
    )
    assert r.status_code == 422 and "pad: unknown field" in r.json()["detail"]
    assert len(r.content) < 4000
    assert client.engine.queue() == []  # not queued
    r = client.post(
        "/api/v1/generation/submit",
        data={"model_type": "T2V-A14B", "prompt": "x"},
        files={"video": ("v.png", image_bytes(), "image/png")},
    )
    assert r.status_code == 422 and "video: unknown field" in r.json()["detail"]
    for route in ("/api/v1/prompt/enhance", "/api/v1/prompt/validate"):
        r = client.post(route, json={"prompt": pad})
        assert r.status_code == 422, route
        assert len(r.content) < 4000 and "400000 characters" in r.text
    r = client.post("/api/v1/videos/generate", json={"configuration": {"topic": pad}})
    assert r.status_code == 422 and len(r.content) < 4000
    whole = client.post("/api/v1/prompt/validate", json={"prompt": "x" * 2_000_000})
    assert whole.status_code == 413 and len(whole.content) < 4000


def test_memory_impact_levels_follow_the_free_gpu_memory() -> None:
    from wan_desktop.api.routes.lora import impact_level

    assert impact_level(100, 24_000) == "low"
    assert impact_level(1_000, 24_000) == "medium"
    assert impact_level(5_000, 24_000) == "high"
    # With no GPU, by size alone.
    assert [impact_level(mb, 0.0) for mb in (100, 600, 2000)] == ["low", "medium", "high"]


def test_a_tiny_image_is_refused_without_showing_server_paths(client: Any) -> None:
    r = client.post(
        "/api/v1/generation/submit",
        data={"model_type": "I2V-A14B", "prompt": "x"},
        files={"image": ("dot.png", image_bytes(size=(1, 1)), "image/png")},
    )
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert "image:" in detail and "1x1 pixels" in detail and "at least 32x32" in detail
    assert str(client.engine.settings.data_dir) not in r.text
    uploads = client.engine.settings.uploads_dir
    assert not uploads.exists() or not list(uploads.iterdir()), "a refused upload is not kept"
