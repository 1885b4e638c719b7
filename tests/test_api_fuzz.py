"""Property-based fuzzing over the OpenAPI schema: whatever is sent, no answer is a 5xx.

Every operation of ``/openapi.json`` gets path parameters, query parameters and bodies drawn from
its schema, mixed with hostile values (wrong types, traversal, huge numbers, junk bytes).
Bounded: a fixed number of examples per operation, no shrinking deadline.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.api_helpers import api_client
from wan_desktop.api.settings import ApiSettings

EXAMPLES = 25
OPERATIONS = 47  # every route of the app, explainer videos and /jobs included

hostile_text = st.sampled_from(
    [
        "",
        " ",
        "..",
        "../../etc/passwd",
        "%2e%2e%2f",
        "0" * 32,
        "f" * 32,
        "null",
        "-1",
        "1e309",
        "NaN",
        "\u00e9\u4e2d",
        "a" * 600,
    ]
)
text = st.one_of(st.text(max_size=40), hostile_text)
scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=True, allow_infinity=True),
    text,
)
json_value = st.recursive(
    scalar,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(text, inner, max_size=3)),
    max_leaves=8,
)


def from_schema(
    schema: dict[str, Any], spec: dict[str, Any], depth: int = 0
) -> st.SearchStrategy[Any]:
    """Values of a JSON schema, or (one time in four) anything at all."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = spec["components"]["schemas"][name]
    if depth > 3:
        return json_value
    options = schema.get("anyOf") or schema.get("oneOf")
    if options:
        typed = st.one_of([from_schema(o, spec, depth + 1) for o in options])
    elif "enum" in schema:
        typed = st.sampled_from(schema["enum"])
    else:
        kind = schema.get("type")
        if kind == "integer":
            typed = st.integers(
                int(schema.get("minimum", -5)) - 2, int(schema.get("maximum", 10_000)) + 2
            )
        elif kind == "number":
            typed = st.floats(allow_nan=False)
        elif kind == "boolean":
            typed = st.booleans()
        elif kind == "string":
            typed = text
        elif kind == "array":
            typed = st.lists(from_schema(schema.get("items", {}), spec, depth + 1), max_size=3)
        elif kind == "object" or "properties" in schema:
            props = schema.get("properties", {})
            required = set(schema.get("required", ()))
            typed = st.fixed_dictionaries(
                {k: from_schema(v, spec, depth + 1) for k, v in props.items() if k in required},
                optional={
                    k: from_schema(v, spec, depth + 1)
                    for k, v in props.items()
                    if k not in required
                },
            )
        else:
            typed = json_value
    return st.one_of(typed, typed, typed, json_value)


def operations(spec: dict[str, Any]) -> list[tuple[str, str]]:
    return sorted(
        (path, method)
        for path, item in spec["paths"].items()
        for method in item
        if method in ("get", "post", "put", "delete")
    )


@pytest.fixture(scope="module")
def fuzz_client(tmp_path_factory: pytest.TempPathFactory) -> Any:
    root = tmp_path_factory.mktemp("fuzz")
    with api_client(
        root,
        settings=ApiSettings(submit_burst=10_000, max_lora_bytes=200_000, max_image_bytes=50_000),
    ) as (c, eng):
        eng.pause()  # queued jobs stay queued: the fuzz measures the API, not the mock pipeline
        c.spec = c.get("/openapi.json").json()  # type: ignore[attr-defined]
        # Real ids too, so routes get past "not found": a queued explainer job, a Wan job.
        explainer = c.post(
            "/api/v1/videos/generate",
            json={"configuration": {"topic": "t", "context": "c", "model": "template"}},
        )
        wan = c.post("/api/v1/generation/submit", json={"model_type": "T2V-A14B", "prompt": "x"})
        c.ids = [explainer.json()["job_id"], wan.json()["task_id"]]  # type: ignore[attr-defined]
        yield c


def _request(c: Any, path: str, method: str, data: st.DataObject) -> Any:
    spec = c.spec
    op = spec["paths"][path][method]
    url = path
    params: dict[str, Any] = {}
    for p in op.get("parameters", []):
        values = from_schema(p.get("schema", {}), spec)
        if p["in"] == "path" and p["name"].endswith("_id"):
            values = st.one_of(values, st.sampled_from(c.ids))
        value = data.draw(values)
        if p["in"] == "path":
            url = url.replace("{" + p["name"] + "}", quote(str(value), safe="") or "x")
        elif p["in"] == "query" and (value is not None or p.get("required")):
            params[p["name"]] = json.dumps(value) if isinstance(value, list | dict) else str(value)
    content = op.get("requestBody", {}).get("content", {})
    kwargs: dict[str, Any] = {"params": params}
    kinds = sorted(content)
    if kinds:
        kind = data.draw(st.sampled_from(kinds))
        schema = content[kind].get("schema", {})
        body = data.draw(from_schema(schema, spec))
        if kind == "multipart/form-data":
            fields = body if isinstance(body, dict) else {}
            files = {}
            form = {}
            for k, v in fields.items():
                if schema.get("properties", {}).get(k, {}).get("format") == "binary":
                    files[k] = (
                        data.draw(text) or "f.bin",
                        data.draw(st.binary(max_size=2048)),
                        "application/octet-stream",
                    )
                elif isinstance(v, str | int | float | bool):
                    form[str(k)] = str(v)
            if not files:
                files = {"file": ("x.bin", b"\0", "application/octet-stream")}
            kwargs.update(data=form, files=files)
        elif data.draw(st.integers(0, 9)) == 0:
            kwargs.update(content=data.draw(st.binary(max_size=64)), headers={"content-type": kind})
        else:
            kwargs["content"] = json.dumps(body, allow_nan=True)
            kwargs["headers"] = {"content-type": kind}
    return c.request(method.upper(), url, **kwargs)


def test_the_schema_has_every_route(fuzz_client: Any) -> None:
    assert len(operations(fuzz_client.spec)) >= OPERATIONS


@settings(
    max_examples=EXAMPLES * OPERATIONS,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
@given(data=st.data())
def test_no_request_gets_a_server_error(fuzz_client: Any, data: st.DataObject) -> None:
    path, method = data.draw(st.sampled_from(operations(fuzz_client.spec)))
    r = _request(fuzz_client, path, method, data)
    assert r.status_code < 500, f"{method.upper()} {path} -> {r.status_code}: {r.text[:300]}"
