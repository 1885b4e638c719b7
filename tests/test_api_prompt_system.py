"""Prompt help, system stats and health, models, metrics and the OpenAPI docs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.api_helpers import api_client
from wan_desktop.api.prompt import EnhanceOptions, RuleEnhancer


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Any:
    with api_client(tmp_path_factory.mktemp("sys")) as (c, eng):
        c.engine = eng  # type: ignore[attr-defined]
        yield c


def test_enhance_adds_terms_by_rule_and_reports_them(client: Any) -> None:
    r = client.post(
        "/api/v1/prompt/enhance",
        json={
            "prompt": "a dragon over a castle",
            "options": {"apply_vace": True, "apply_cinematic": True, "apply_style": True},
        },
    )
    assert r.status_code == 200
    b = r.json()
    assert b["original_prompt"] == "a dragon over a castle"
    assert b["enhanced_prompt"].startswith("a dragon over a castle, ")
    assert (
        "cinematic composition" in b["enhanced_prompt"]
        and "magical atmosphere" in b["enhanced_prompt"]
    )
    assert (
        b["detected_style"] == "fantasy"
        and 0 < b["confidence"] <= 1
        and b["vace_detected"] is False
    )
    assert b["character_count"] == {
        "original": 22,
        "enhanced": len(b["enhanced_prompt"]),
        "difference": len(b["enhanced_prompt"]) - 22,
    }
    assert len(b["enhancements_applied"]) >= 2
    again = client.post(
        "/api/v1/prompt/enhance",
        json={
            "prompt": "a dragon over a castle",
            "options": {"apply_vace": True, "apply_cinematic": True, "apply_style": True},
        },
    ).json()
    assert again == b, "deterministic"


def test_enhance_options_and_vace(client: Any) -> None:
    off = client.post(
        "/api/v1/prompt/enhance",
        json={
            "prompt": "a dragon",
            "options": {"apply_vace": False, "apply_cinematic": False, "apply_style": False},
        },
    ).json()
    assert off["enhanced_prompt"] == "a dragon" and off["enhancements_applied"] == []
    vace = client.post(
        "/api/v1/prompt/enhance",
        json={
            "prompt": "an aesthetic stylized garden, slow pan",
            "options": {"apply_vace": True, "apply_cinematic": True, "apply_style": False},
        },
    ).json()
    assert vace["vace_detected"] is True and "VACE aesthetic enhancement" in vace["enhanced_prompt"]
    assert "smooth camera movement" not in vace["enhanced_prompt"], (
        "it already says how the camera moves"
    )


def test_enhanced_prompts_never_pass_the_limit() -> None:
    long = "a wizard casting magic spells " * 16
    out = RuleEnhancer().enhance(long.strip()[:495], EnhanceOptions())
    assert len(out.enhanced) <= 500


def test_enhance_and_preview_errors(client: Any) -> None:
    assert client.post("/api/v1/prompt/enhance", json={"prompt": ""}).status_code == 422
    assert client.post("/api/v1/prompt/enhance", json={"prompt": "x" * 501}).status_code == 422
    assert client.post("/api/v1/prompt/enhance", json={}).status_code == 422
    assert (
        client.post(
            "/api/v1/prompt/enhance", json={"prompt": "x", "options": {"apply_vace": "maybe"}}
        ).status_code
        == 422
    )
    r = client.post("/api/v1/prompt/preview", json={"prompt": "a robot in a neon city"})
    assert (
        r.status_code == 200
        and r.json()["detected_style"] == "sci-fi"
        and r.json()["would_change"] is True
    )


@pytest.mark.parametrize(
    ("prompt", "valid"),
    [
        ("", False),
        ("ab", False),
        ("abc", True),
        ("x" * 500, True),
        ("x" * 501, False),
        ("   a  ", False),
    ],
)
def test_validate(client: Any, prompt: str, valid: bool) -> None:
    r = client.post("/api/v1/prompt/validate", json={"prompt": prompt})
    assert r.status_code == 200
    b = r.json()
    assert b["is_valid"] is valid and b["message"] and isinstance(b["suggestions"], list)
    assert b["character_count"] == len(prompt.strip())


def test_styles(client: Any) -> None:
    b = client.get("/api/v1/prompt/styles").json()
    assert b["total_count"] == len(b["styles"]) >= 5
    assert {"name", "display_name", "description"} <= set(b["styles"][0])


def test_stats_history_and_health(client: Any) -> None:
    s = client.get("/api/v1/system/stats").json()
    for key in (
        "cpu_percent",
        "ram_used_gb",
        "ram_total_gb",
        "ram_percent",
        "gpu_percent",
        "vram_used_mb",
        "vram_total_mb",
        "vram_percent",
        "timestamp",
    ):
        assert key in s
    assert (
        s["ram_total_gb"] > 0
        and s["vram_total_mb"] == 0
        and s["system_info"]["gpu_available"] is False
    )
    ai = s["real_ai_integration"]
    assert ai["enabled"] is False  # a mock engine
    assert set(ai) >= {"generation_service_status", "hardware_optimized", "model_status"}
    assert set(ai["model_status"]) == {"T2V-A14B", "I2V-A14B", "TI2V-5B"}
    h = client.get("/api/v1/system/stats/history?hours=1").json()
    assert len(h["stats"]) >= 1 and "ram_used_gb" in h["stats"][-1]
    for bad in ("0", "-1", "1000", "x"):
        assert client.get(f"/api/v1/system/stats/history?hours={bad}").status_code == 422
    for path in ("/health", "/api/v1/system/health"):
        b = client.get(path).json()
        assert b["status"] == "ok" and b["system"] == "operational" and b["api_version"]
        assert b["endpoints"] == {
            "health": "/api/v1/system/health",
            "docs": "/docs",
            "websocket": "/ws",
            "api_base": "/api/v1",
        }
        assert "port" in b and b["timestamp"] and b["service"]


def test_models_status_and_download_errors(client: Any) -> None:
    b = client.get("/api/v1/models/status").json()
    assert set(b["models"]) == {"T2V-A14B", "I2V-A14B", "TI2V-5B"}
    m = b["models"]["T2V-A14B"]
    assert m["state"] == "NOT_PRESENT" and m["is_available"] is False and m["is_loaded"] is False
    assert client.post("/api/v1/models/download", json={}).status_code == 422
    r = client.post("/api/v1/models/download", json={"model_type": "X-1"})
    assert r.status_code == 422 and "unknown model" in r.text
    assert (
        client.post(
            "/api/v1/models/download", json={"model_type": "T2V-A14B", "variant": "nope"}
        ).status_code
        == 422
    )
    assert client.get("/api/v1/models/download/progress").json()["active_downloads"] == 0


def test_models_download_runs_through_the_orchestrator(tmp_path: Path) -> None:
    from tests.engine_helpers import mock_engine
    from tests.helpers import REAL_MANIFEST
    from wan_desktop.models.config import OrchestratorConfig

    models = OrchestratorConfig.from_env(
        {}, models_root=tmp_path / "m", manifest_path=REAL_MANIFEST, dev_mode=True
    )
    eng = mock_engine(tmp_path, models=models)
    with api_client(tmp_path, engine=eng) as (c, _):
        r = c.post("/api/v1/models/download", json={"model_type": "TI2V-5B"})
        assert (
            r.status_code == 200
            and r.json()["variant"] == "tiny"
            and r.json()["status"] == "downloading"
        )
        import time

        deadline = time.monotonic() + 120
        while c.get("/api/v1/models/status").json()["models"]["TI2V-5B"]["state"] != "COMPLETE":
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert (
            c.post("/api/v1/models/download", json={"model_type": "TI2V-5B"}).json()["status"]
            == "complete"
        )
        st = c.get("/api/v1/models/status").json()
        assert st["development_mode"] is True and st["models"]["TI2V-5B"]["development"] is True
        # The orchestrator's own metrics (a registry of its own) are on the API's /metrics page.
        families = metric_families(c.get("/metrics").text)
        built = families["wan_downloads_completed"].samples
        assert any(s.labels == {"source": "builtin"} and s.value >= 1 for s in built)
        assert "wan_api_requests" in families and "wan_download_duration_seconds" in families
        # On this machine the planner's estimate now reads the built model's files.
        detect = c.get("/api/v1/generation/models/detect?prompt=animate+it&has_image=true")
        assert detect.json()["requirements"]["facts"] == "files"
    eng.shutdown()


def metric_families(text: str) -> dict[str, Any]:
    """Parsed families of a valid exposition, each HELP and TYPE line appearing once."""
    from prometheus_client.parser import text_string_to_metric_families

    for kind in ("# HELP ", "# TYPE "):
        names = [line.split()[2] for line in text.splitlines() if line.startswith(kind)]
        dup = sorted({n for n in names if names.count(n) > 1})
        assert not dup, f"duplicate {kind.strip()} lines: {dup}"
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families
    return families


def test_metrics_serve_the_api_and_the_orchestrator_once_each(client: Any) -> None:
    from prometheus_client import REGISTRY, Counter

    from wan_desktop.models import metrics as orchestrator

    orchestrator.download_started("hf://Wan-AI/x")  # creates the orchestrator's registry
    families = metric_families(client.get("/metrics").text)
    assert {"wan_api_requests", "wan_jobs", "wan_downloads_started"} <= set(families)
    # A family registered in both registries is served once (the default registry's).
    twin = Counter("wan_downloads_started", "registered twice", ["source"], registry=REGISTRY)
    try:
        twin.labels("twin").inc()
        families = metric_families(client.get("/metrics").text)
        samples = families["wan_downloads_started"].samples
        assert {s.labels["source"] for s in samples} == {"twin"}
    finally:
        REGISTRY.unregister(twin)


def test_metrics_are_prometheus_text(client: Any) -> None:
    client.get("/api/v1/queue")
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert 'wan_api_requests_total{method="GET",route="/api/v1/queue",status="200"}' in text
    assert "wan_api_request_seconds_bucket" in text and 'wan_jobs{state="queued"}' in text
    assert "process_cpu_seconds_total" in text or "python_info" in text  # the default registry


def test_openapi_docs(client: Any) -> None:
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    for p in (
        "/api/v1/generation/submit",
        "/api/v1/queue",
        "/api/v1/queue/reorder",
        "/api/v1/outputs/{video_id}/download",
        "/api/v1/lora/upload",
        "/api/v1/prompt/enhance",
        "/api/v1/system/stats",
        "/api/v1/models/status",
        "/health",
        "/metrics",
    ):
        assert p in paths, p
    assert set(paths["/api/v1/queue/reorder"]) == {"post", "put"}
    assert set(paths["/api/v1/generation/submit"]["post"]["requestBody"]["content"]) == {
        "application/json",
        "multipart/form-data",
    }


def test_the_docs_pages_load_nothing_from_other_hosts(client: Any) -> None:
    import re

    for page in ("/docs", "/redoc"):
        r = client.get(page)
        assert r.status_code == 200
        refs = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)""", r.text)
        refs += re.findall(r"""url\s*:\s*["']([^"']+)""", r.text)
        assert refs, r.text
        for ref in refs:
            assert "//" not in ref, f"{page} loads {ref} from another host"
        assets = [ref for ref in refs if ref.endswith((".js", ".css"))]
        assert assets, r.text
        for ref in assets:
            asset = client.get(ref)
            assert asset.status_code == 200 and len(asset.content) > 10_000, ref
        assert "https://" not in r.text, r.text
