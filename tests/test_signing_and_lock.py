"""Manifest signatures (ed25519) and `wan models lock` writing sizes and hashes into models.toml."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import (
    REAL_MANIFEST,
    ROOT,
    SYNTH_ID,
    make_store,
    synth_model_entry,
    write_manifest,
)
from tests.hfrepo import REPO, add_synth_repo, expected_files, hub_env
from tests.hubserver import HubServer
from wan_desktop.models.errors import ErrorCode, ManifestSignatureError
from wan_desktop.models.manifest_load import load_manifest
from wan_desktop.models.signing import public_key_of, sign_manifest, signature_path

SEED = bytes(range(32))
OTHER_SEED = bytes(range(1, 33))


@pytest.fixture
def signed(tmp_path: Path) -> Path:
    manifest = tmp_path / "models.toml"
    shutil.copy(REAL_MANIFEST, manifest)
    sign_manifest(manifest, SEED)
    return manifest


def test_a_good_signature_is_accepted(signed: Path, tmp_path: Path) -> None:
    store = make_store(tmp_path / "m", signed, manifest_public_key=public_key_of(SEED))
    assert len(store.manifest) == 3


def test_a_changed_manifest_is_refused(signed: Path, tmp_path: Path) -> None:
    signed.write_text(signed.read_text().replace("Wan2.2 T2V-A14B", "Evil T2V"))
    store = make_store(tmp_path / "m", signed, manifest_public_key=public_key_of(SEED))
    with pytest.raises(ManifestSignatureError) as err:
        _ = store.manifest
    assert err.value.code is ErrorCode.manifest_signature_error
    assert "does not match" in err.value.message


def test_another_key_is_refused(signed: Path, tmp_path: Path) -> None:
    store = make_store(tmp_path / "m", signed, manifest_public_key=public_key_of(OTHER_SEED))
    with pytest.raises(ManifestSignatureError):
        _ = store.manifest


def test_a_signature_with_no_key_to_check_it_is_refused(signed: Path, tmp_path: Path) -> None:
    with pytest.raises(ManifestSignatureError, match="no public key"):
        _ = make_store(tmp_path / "m", signed).manifest


def test_unsigned_manifest_is_fine_unless_a_signature_is_required(tmp_path: Path) -> None:
    manifest = tmp_path / "models.toml"
    shutil.copy(REAL_MANIFEST, manifest)
    assert len(make_store(tmp_path / "a", manifest).manifest) == 3
    store = make_store(
        tmp_path / "b",
        manifest,
        manifest_public_key=public_key_of(SEED),
        require_manifest_signature=True,
    )
    with pytest.raises(ManifestSignatureError, match="require"):
        _ = store.manifest


def test_cli_reports_a_bad_signature(signed: Path, tmp_path: Path) -> None:
    signature_path(signed).write_text("A" * 88 + "\n")
    out = subprocess.run(
        [sys.executable, "-m", "wan_desktop.cli", "models", "status", "--json"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={
            **os.environ,
            "WAN_MODELS_MANIFEST": str(signed),
            "MODELS_ROOT": str(tmp_path / "m"),
            "WAN_MANIFEST_PUBLIC_KEY": public_key_of(SEED),
        },
        timeout=60,
        check=False,
    )
    assert out.returncode == 1
    assert json.loads(out.stdout)["error"]["code"] == "MANIFEST_SIGNATURE_ERROR"


# ------------------------------------------------------------------------------------ lock


@pytest.fixture
def hub() -> Iterator[HubServer]:
    with HubServer() as server:
        yield server


COMMENTED = """\
# Our models: keep this comment.
schema_version = 1  # trailing comment kept too
"""


def test_lock_fills_sizes_and_hashes_and_keeps_the_file_as_it_was(
    tmp_path: Path, hub: HubServer
) -> None:
    repo = add_synth_repo(hub)
    manifest = write_manifest(
        tmp_path / "models.toml", {SYNTH_ID: synth_model_entry([f"hf://{REPO}@main"])}
    )
    body = manifest.read_text().split("\n", 1)[1]  # without schema_version
    manifest.write_text(COMMENTED + body)
    before = manifest.read_text()
    env = hub_env(hub, tmp_path / "models", manifest)

    def wan(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "wan_desktop.cli", "models", *args],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=env,
            timeout=120,
            check=False,
        )

    out = wan("lock", SYNTH_ID, "--json")
    assert out.returncode == 0, out.stdout + out.stderr
    doc = json.loads(out.stdout)
    assert doc["schema"] == "wan.models.lock/1" and doc["written"]
    after = manifest.read_text()
    assert after.startswith(COMMENTED), "comments and layout before the table are untouched"
    spec = load_manifest(manifest).get(SYNTH_ID)
    files = {f.path: f for f in spec.variant("full").files}
    assert set(files) == expected_files(repo)
    for path, f in files.items():
        hub_file = repo.files[path]
        assert f.size == hub_file.content.size and f.sha256 == hub_file.sha256
    hashed_here = {f["path"] for f in doc["files"] if f["hashed_here"]}
    assert hashed_here == {p for p in files if not repo.files[p].lfs}
    assert files["vae/config.json"].component == "vae"
    # The locked manifest drives a normal ensure, now checked against the recorded hashes.
    ensure = wan("ensure", "--only", SYNTH_ID)
    assert ensure.returncode == 0, ensure.stderr
    # Only what changed is new: every original line is still there.
    assert all(line in after for line in before.splitlines() if line.strip())
