"""Metrics, structured logs with a correlation id, and no secret in any log line, error or JSON."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import ROOT, SYNTH_ID, synth_model_entry, write_manifest
from tests.hfrepo import REPO, SHARDS, add_synth_repo, hf_store, hub_env
from tests.hubserver import CDN_SIGNATURE, HubServer
from wan_desktop.models import metrics
from wan_desktop.models.redact import redact, register_secret

BIG = next(iter(SHARDS))


@pytest.fixture
def hub() -> Iterator[HubServer]:
    with HubServer() as server:
        yield server


def metric(name: str, **labels: str) -> float:
    text = metrics.exposition().decode()
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        m = re.match(rf"^{name}\{{(.*)\}} (\S+)$", line)
        if m and ",".join(sorted(m.group(1).split(","))) == want:
            return float(m.group(2))
    return 0.0


def test_metrics_count_downloads_bytes_retries_and_failures(tmp_path: Path, hub: HubServer) -> None:
    repo = add_synth_repo(hub)
    before = {
        "started": metric("wan_downloads_started_total", source="hf"),
        "completed": metric("wan_downloads_completed_total", source="hf"),
        "bytes": metric("wan_download_bytes_total", source="hf"),
        "retries": metric("wan_download_retries_total", source="hf", reason="status_5xx"),
        "failed": metric("wan_downloads_failed_total", source="hf", code="AUTH_FAIL"),
    }
    hub.add_fault("500", BIG, times=1)
    hf_store(tmp_path / "a", hub).ensure(SYNTH_ID)
    assert metric("wan_downloads_started_total", source="hf") == before["started"] + 1
    assert metric("wan_downloads_completed_total", source="hf") == before["completed"] + 1
    total = sum(
        f.content.size
        for p, f in repo.files.items()
        if p.startswith(("model", "tok", "vae", "trans")) and "fp32" not in p
    )
    assert metric("wan_download_bytes_total", source="hf") - before["bytes"] == total
    assert (
        metric("wan_download_retries_total", source="hf", reason="status_5xx")
        == before["retries"] + 1
    )
    repo.private = True
    with pytest.raises(Exception):  # noqa: B017 - the code is what is measured
        hf_store(tmp_path / "b", hub).ensure(SYNTH_ID)
    assert (
        metric("wan_downloads_failed_total", source="hf", code="AUTH_FAIL") == before["failed"] + 1
    )
    assert "wan_download_duration_seconds_bucket" in metrics.exposition().decode()


def test_redaction_masks_registered_secrets_signed_urls_and_tokens() -> None:
    register_secret("s3cr3t-value-that-is-long")
    text = redact(
        "key s3cr3t-value-that-is-long at https://h/x?X-Amz-Signature=abc&X-Amz-Credential=AK/1 "
        "Authorization: Bearer hf_abcdefghijklmnop token=xyz12345678"
    )
    assert "s3cr3t" not in text and "abc" not in text and "AK/1" not in text
    assert "hf_abcdefghijklmnop" not in text and "xyz12345678" not in text
    assert "https://h/x?***" in text


HF_TOKEN = "hf_SecretTokenForTheLogTest0123456789"
WRONG_TOKEN = "hf_WrongTokenForTheLogTest987654321"
AWS_SECRET = "AwsSecret/ForTheLogTest+0123456789abcdefgh"
PRESIGNED_SIG = "f00dfacecafe0123456789abcdef0123456789abcdef0123456789abcdef0123"


def test_no_secret_in_any_log_line_error_or_json_of_a_faulty_run(
    tmp_path: Path, hub: HubServer
) -> None:
    hub.redirect_lfs = True
    add_synth_repo(hub, private=True)
    hub.tokens.add(HF_TOKEN)
    hub.add_fault("drop", BIG, times=2)
    hub.add_fault("500", "vae/*", times=2)
    hub.add_fault("stall", "tokenizer/part-001.json", times=1, seconds=2, after_bytes=10)
    presigned = (
        f"{hub.url}/cdn/{REPO}/listing.json?X-Amz-Algorithm=AWS4-HMAC-SHA256"
        f"&X-Amz-Credential=AKIAWANTEST%2F20261121%2Fus-east-1&X-Amz-Signature={PRESIGNED_SIG}"
    )
    sources = [presigned, "s3://wan-bucket/models/{model_dir}", f"hf://{REPO}@main"]
    manifest = write_manifest(tmp_path / "m.toml", {SYNTH_ID: synth_model_entry(sources)})
    env = hub_env(
        hub,
        tmp_path / "models",
        manifest,
        HF_TOKEN=HF_TOKEN,
        AWS_ACCESS_KEY_ID="AKIAWANTEST",
        AWS_SECRET_ACCESS_KEY=AWS_SECRET,
        AWS_ENDPOINT_URL=hub.url,
        WAN_STALL_TIMEOUT="1",
    )

    def wan(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "wan_desktop.cli",
                "models",
                "--log-json",
                "--log-level",
                "DEBUG",
                *args,
            ],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env={**env, **extra},
            timeout=180,
            check=False,
        )

    ok = wan("ensure", "--only", SYNTH_ID, "--json")
    assert ok.returncode == 0, ok.stdout + ok.stderr[-3000:]
    # A second run with a refused token fails: its error travels through logs and --json too.
    (tmp_path / "models" / "wan22" / SYNTH_ID / "model_index.json").unlink()
    failed = wan("ensure", "--only", SYNTH_ID, "--json", HF_TOKEN=WRONG_TOKEN)
    assert failed.returncode == 1, failed.stderr[-4000:]
    lines = [ln for run in (ok, failed) for ln in run.stderr.splitlines() if ln.strip()]
    records = [json.loads(ln) for ln in lines]  # every line is one JSON object
    assert any(r.get("event") == "retry" for r in records), "the faults were logged"
    assert any(r.get("event") == "source_failed" for r in records)
    everything = ok.stdout + ok.stderr + failed.stdout + failed.stderr
    for secret in (HF_TOKEN, WRONG_TOKEN, AWS_SECRET, PRESIGNED_SIG, CDN_SIGNATURE, "%2F2026"):
        assert secret not in everything, f"secret leaked: {secret[:12]}…"
    # One correlation id per ensure, on every record of it.
    ids = {r["correlation_id"] for r in records if r.get("event") == "ensure_start"}
    assert len(ids) == 2 and None not in ids
    doc = json.loads(failed.stdout)
    assert doc["results"][0]["error"]["code"] == "AUTH_FAIL"
