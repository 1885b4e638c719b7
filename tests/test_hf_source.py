"""hf:// against a Hub-compatible server on 127.0.0.1: selection, integrity, auth, faults."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import keyring
import keyring.backend
import pytest

from tests.helpers import SYNTH_ID, sha256
from tests.hfrepo import (
    MIB,
    REPO,
    SHARDS,
    UNINDEXED,
    VAE,
    add_synth_repo,
    expected_files,
    hf_manifest,
    hf_store,
)
from tests.hubserver import CDN_SIGNATURE, HubServer
from wan_desktop.models.cancel import CancelToken
from wan_desktop.models.errors import AllSourcesFailedError, CancelledError, ErrorCode
from wan_desktop.models.paths import COMPLETE_MARKER
from wan_desktop.models.store import ModelStore
from wan_desktop.models.types import DownloadProgress, ModelState

BIG = next(iter(SHARDS))


@pytest.fixture
def hub() -> Iterator[HubServer]:
    with HubServer() as server:
        yield server


def installed(store: ModelStore) -> set[str]:
    root = store.status(SYNTH_ID).path
    return {
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and not p.name.startswith(".wan-")
    }


def assert_each_byte_once(hub: HubServer, path: str, size: int) -> None:
    ranges = sorted((r.start or 0, r.end or 0) for r in hub.body_requests(path))
    assert ranges, f"no request for {path}"
    assert ranges[0][0] == 0 and ranges[-1][1] == size
    for (_, end), (start, _) in itertools.pairwise(ranges):
        assert start == end, f"{path}: ranges overlap or leave a gap: {ranges}"


def test_ensure_takes_sizes_and_hashes_from_the_hub_and_only_indexed_shards(
    tmp_path: Path, hub: HubServer
) -> None:
    repo = add_synth_repo(hub)
    store = hf_store(tmp_path, hub)
    events: list[DownloadProgress] = []
    path = store.ensure(SYNTH_ID, progress=events.append)
    assert installed(store) == expected_files(repo)
    marker = json.loads((path / COMPLETE_MARKER).read_text())
    for f in marker["files"]:
        assert sha256(path / f["path"]) == f["sha256"]
        if repo.files[f["path"]].lfs:
            assert f["sha256"] == repo.files[f["path"]].sha256, "the Hub's LFS sha256"
    assert marker["source"] == f"hf://{REPO}@main"
    # Large files come as parallel parts, every byte exactly once; skipped files not at all.
    assert len(hub.body_requests(BIG)) == 6
    assert_each_byte_once(hub, BIG, SHARDS[BIG])
    assert hub.body_requests(UNINDEXED) == [] and hub.body_requests("README.md") == []
    tree_pages = [r for r in hub.log if "/tree/" in r.path]
    assert len(tree_pages) >= 2, "the tree listing was followed across pages"
    assert all(repo.sha in r.path for r in hub.body_requests()), "pinned to the commit"
    # Progress: per model and per file, never backwards, ends complete.
    done = [e.bytes_done for e in events if e.phase == "downloading"]
    assert done == sorted(done) and events[-1].phase == "complete"
    assert (
        events[-1].bytes_done
        == events[-1].bytes_total
        == sum(repo.files[p].content.size for p in expected_files(repo))
    )
    assert store.verify(SYNTH_ID).ok


def test_lfs_redirect_to_a_signed_cdn_url(tmp_path: Path, hub: HubServer) -> None:
    hub.redirect_lfs = True
    add_synth_repo(hub)
    store = hf_store(tmp_path, hub)
    store.ensure(SYNTH_ID)
    assert any(r.path.startswith("/cdn/") for r in hub.body_requests())
    assert store.verify(SYNTH_ID).ok


TRANSIENT = [
    pytest.param({"kind": "drop", "pattern": BIG, "times": 2}, id="connection-dropped"),
    pytest.param({"kind": "500", "pattern": BIG, "times": 2}, id="http-500"),
    pytest.param({"kind": "429", "pattern": BIG, "times": 1, "retry_after": 0.6}, id="http-429"),
    pytest.param({"kind": "truncate", "pattern": BIG, "times": 2}, id="truncated-body"),
    pytest.param({"kind": "stall", "pattern": BIG, "times": 1, "seconds": 3}, id="stall"),
    pytest.param({"kind": "slow", "pattern": BIG, "times": 1, "seconds": 60}, id="trickle"),
    pytest.param({"kind": "wrong", "pattern": BIG, "times": 1}, id="wrong-bytes"),
    pytest.param({"kind": "500", "pattern": "*.index.json", "times": 2}, id="index-500"),
    pytest.param({"kind": "drop", "pattern": "*.index.json", "after_bytes": 5}, id="index-drop"),
    pytest.param({"kind": "drop", "pattern": "tokenizer/*", "times": 3, "after_bytes": 9}, id="s"),
]


@pytest.mark.parametrize("fault", TRANSIENT)
def test_a_passing_fault_ends_in_a_verified_model(
    tmp_path: Path, hub: HubServer, fault: dict[str, Any]
) -> None:
    add_synth_repo(hub)
    hub.add_fault(**fault)
    store = hf_store(tmp_path, hub)
    t0 = time.monotonic()
    store.ensure(SYNTH_ID)
    elapsed = time.monotonic() - t0
    assert store.verify(SYNTH_ID).ok
    assert all(f.times == 0 for f in hub.faults), "the fault was hit"
    if fault["kind"] == "429":
        # Retry-After (0.6 s) is above the backoff's own delays (at most retry_max_s = 0.2 s).
        assert elapsed >= 0.6, "Retry-After was honoured"
    if fault["kind"] == "slow":
        # Never silent for the 1 s read timeout, but far too slow for it: given up after ~1 s.
        assert elapsed < 20, "a server that trickles is a stall"
    if fault["kind"] == "wrong":
        # The whole file is fetched again once the hash shows the damage.
        assert hub.bytes_sent(BIG) == 2 * SHARDS[BIG]
    elif fault["kind"] in ("drop", "truncate", "stall", "slow"):
        # Only what was missing is asked again.
        assert hub.bytes_sent(BIG) <= SHARDS[BIG] + 4 * 1_000_000


PERSISTENT = [
    pytest.param({"kind": "500"}, ErrorCode.source_unavailable, id="http-500"),
    pytest.param({"kind": "drop", "after_bytes": 0}, ErrorCode.source_unavailable, id="drop"),
    pytest.param({"kind": "429", "retry_after": 0}, ErrorCode.rate_limit, id="http-429"),
    pytest.param({"kind": "truncate", "after_bytes": 0}, ErrorCode.incomplete_download, id="trunc"),
    pytest.param(
        {"kind": "stall", "after_bytes": 0, "seconds": 1.5},
        ErrorCode.source_unavailable,
        id="stall",
    ),
    pytest.param(
        {"kind": "slow", "after_bytes": 0, "seconds": 60}, ErrorCode.source_unavailable, id="crawl"
    ),
    pytest.param({"kind": "wrong"}, ErrorCode.checksum_fail, id="wrong-bytes"),
]


@pytest.mark.parametrize(("fault", "code"), PERSISTENT)
def test_a_lasting_fault_ends_in_the_right_error_code(
    tmp_path: Path, hub: HubServer, fault: dict[str, Any], code: ErrorCode
) -> None:
    repo = add_synth_repo(hub)
    hub.add_fault(pattern=VAE, times=10_000, **fault)
    store = hf_store(tmp_path, hub, max_retries=2)
    with pytest.raises(AllSourcesFailedError) as err:
        store.ensure(SYNTH_ID)
    (attempt,) = err.value.attempts
    assert attempt.code is code, attempt.message
    assert attempt.source == f"hf://{REPO}@main"
    assert "vae/diffusion_pytorch_model.safetensors" in attempt.message
    if code is ErrorCode.checksum_fail:
        assert err.value.code is ErrorCode.checksum_fail
        assert repo.files[VAE].sha256 in attempt.message, "names the expected hash"
        assert len([h for h in attempt.message.split() if len(h.strip(",")) == 64]) == 2
    assert store.status(SYNTH_ID).state is not ModelState.complete


def test_private_repo_needs_a_valid_token(tmp_path: Path, hub: HubServer) -> None:
    add_synth_repo(hub, private=True)
    hub.tokens.add("hf_goodtoken1234567890")
    with pytest.raises(AllSourcesFailedError) as err:
        hf_store(tmp_path / "a", hub).ensure(SYNTH_ID)
    assert err.value.code is ErrorCode.auth_fail
    assert "HF_TOKEN" in err.value.attempts[0].message
    with pytest.raises(AllSourcesFailedError) as err:
        hf_store(tmp_path / "b", hub, token="hf_wrongtoken12345678").ensure(SYNTH_ID)
    assert err.value.code is ErrorCode.auth_fail
    assert "token was refused" in err.value.attempts[0].message
    store = hf_store(tmp_path / "c", hub, token="hf_goodtoken1234567890")
    store.ensure(SYNTH_ID)
    assert all(r.authorized for r in hub.body_requests())


def test_gated_repo_says_where_to_accept_the_licence(tmp_path: Path, hub: HubServer) -> None:
    add_synth_repo(hub, gated=True)
    with pytest.raises(AllSourcesFailedError) as err:
        hf_store(tmp_path, hub).ensure(SYNTH_ID)
    assert err.value.code is ErrorCode.auth_fail
    (attempt,) = err.value.details["attempts"]
    assert "gated" in attempt["message"] and f"{hub.url}/{REPO}" in attempt["message"]


class MemoryKeyring(keyring.backend.KeyringBackend):
    priority = 1

    def __init__(self) -> None:
        super().__init__()
        self.store: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.store.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.store[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        self.store.pop((service, username), None)


def test_the_keyring_token_comes_before_hf_token(tmp_path: Path, hub: HubServer) -> None:
    from dataclasses import replace

    add_synth_repo(hub, private=True)
    hub.tokens.add("hf_fromthekeyring123456")
    ring = MemoryKeyring()
    ring.set_password("wan-desktop", "huggingface", "hf_fromthekeyring123456")
    previous = keyring.get_keyring()
    keyring.set_keyring(ring)
    try:
        store = hf_store(tmp_path, hub, token="hf_wrongenvtoken123456")
        store.config = replace(store.config, hf=replace(store.config.hf, use_keyring=True))
        store.ensure(SYNTH_ID)
    finally:
        keyring.set_keyring(previous)
    assert store.verify(SYNTH_ID).ok


def test_offline_mode_skips_the_hub(tmp_path: Path, hub: HubServer) -> None:
    from dataclasses import replace

    add_synth_repo(hub)
    store = hf_store(tmp_path, hub)
    store.config = replace(store.config, hf=replace(store.config.hf, offline=True))
    with pytest.raises(AllSourcesFailedError, match="HF_HUB_OFFLINE"):
        store.ensure(SYNTH_ID)
    assert hub.log == []


def test_a_source_that_just_failed_is_skipped_for_a_while(tmp_path: Path, hub: HubServer) -> None:
    add_synth_repo(hub)
    hub.add_fault("500", VAE, times=10_000)
    store = hf_store(tmp_path, hub, max_retries=1, source_failure_ttl_s=60.0)
    try:
        with pytest.raises(AllSourcesFailedError):
            store.ensure(SYNTH_ID)
        before = len(hub.log)
        t0 = time.monotonic()
        with pytest.raises(AllSourcesFailedError) as err:
            store.ensure(SYNTH_ID)
        assert time.monotonic() - t0 < 0.5 and len(hub.log) == before, "not asked again"
        assert "failed moments ago" in err.value.attempts[0].message
        assert err.value.attempts[0].code is ErrorCode.source_unavailable
        hub.faults.clear()
        store.clear_source_failures()
        store.ensure(SYNTH_ID)
    finally:
        store.clear_source_failures()


@pytest.mark.parametrize("part_size", [MIB, 8 * MIB], ids=["parts", "one-streamed-part"])
def test_cancel_then_resume_fetches_only_what_is_missing(
    tmp_path: Path, hub: HubServer, part_size: int
) -> None:
    add_synth_repo(hub)
    hub.rate_bps = 8_000_000
    store = hf_store(tmp_path, hub, max_concurrent_downloads=1, part_size_bytes=part_size)
    token = CancelToken()

    seen: list[DownloadProgress] = []

    def cancel_midway(p: DownloadProgress) -> None:
        seen.append(p)
        if p.file == BIG and p.file_bytes_done > 2_000_000:
            token.cancel()

    with pytest.raises(CancelledError):
        store.ensure(SYNTH_ID, progress=cancel_midway, cancel=token)
    st = store.status(SYNTH_ID)
    assert st.state is ModelState.partial and st.bytes_present > 2_000_000
    # Progress per file: its size, bytes so far and an ETA from its own rate.
    big = [p for p in seen if p.file == BIG]
    assert big and big[-1].file_bytes_total == SHARDS[BIG]
    assert any(p.file_eta_s is not None and p.file_eta_s > 0 for p in big)
    assert all(p.eta_s is None or p.eta_s >= 0 for p in seen)
    sent_before = hub.bytes_sent(BIG)
    streamed = part_size > SHARDS[BIG]  # one part, appended in order
    if streamed:
        staged = store.paths.staging_dir(SYNTH_ID) / BIG
        prefix = staged.with_name(".wan-partial." + staged.name).stat().st_size
        assert st.bytes_present == prefix > 2_000_000
    hub.rate_bps = None
    hub.clear_log()
    transferred = 0

    def on_progress(p: DownloadProgress) -> None:
        nonlocal transferred
        transferred = p.bytes_transferred

    store.ensure(SYNTH_ID, progress=on_progress)
    assert store.verify(SYNTH_ID).ok
    # What the first run had written is not asked again; what it had in flight may be.
    assert hub.bytes_sent(BIG) <= SHARDS[BIG] - st.bytes_present + sent_before
    assert hub.bytes_sent(BIG) < SHARDS[BIG]
    if streamed:  # asked again from the end of its prefix
        (again,) = hub.body_requests(BIG)
        assert (again.start, again.end) == (prefix, SHARDS[BIG])


def test_cdn_signature_never_reaches_errors(tmp_path: Path, hub: HubServer) -> None:
    hub.redirect_lfs = True
    add_synth_repo(hub)
    hub.add_fault("500", BIG, times=10_000)
    with pytest.raises(AllSourcesFailedError) as err:
        hf_store(tmp_path, hub, max_retries=1).ensure(SYNTH_ID)
    assert CDN_SIGNATURE not in json.dumps(err.value.to_dict())
    assert CDN_SIGNATURE not in str(err.value)


def test_manifest_with_unknown_revision(tmp_path: Path, hub: HubServer) -> None:
    add_synth_repo(hub)
    store = hf_store(tmp_path, hub, manifest=hf_manifest(tmp_path, rev="v9"))
    with pytest.raises(AllSourcesFailedError, match="no revision 'v9'"):
        store.ensure(SYNTH_ID)


def test_a_complete_local_copy_first_means_no_network(tmp_path: Path, hub: HubServer) -> None:
    from tests.helpers import synth_model_entry, write_manifest

    add_synth_repo(hub)
    mirror = hf_store(tmp_path / "mirror", hub).ensure(SYNTH_ID)
    hub.clear_log()
    sources = [f"local://{mirror}", f"hf://{REPO}@main"]
    manifest = write_manifest(tmp_path / "m.toml", {SYNTH_ID: synth_model_entry(sources)})
    store = hf_store(tmp_path / "b", hub, manifest=manifest)
    store.ensure(SYNTH_ID)
    assert hub.log == [], "the Hub was never asked"
    assert store.status(SYNTH_ID).source == f"local://{mirror}"


def test_no_network_fails_fast_with_a_source_error(tmp_path: Path, hub: HubServer) -> None:
    from dataclasses import replace

    store = hf_store(tmp_path, hub)
    # .invalid never resolves (RFC 2606): as on a machine with no network.
    unresolvable = replace(store.config.hf, endpoint="http://hub.wan-test.invalid")
    store.config = replace(store.config, hf=unresolvable)
    t0 = time.monotonic()
    with pytest.raises(AllSourcesFailedError) as err:
        store.ensure(SYNTH_ID)
    assert time.monotonic() - t0 < 10, "a name that does not resolve is not retried for long"
    (attempt,) = err.value.attempts
    assert attempt.code is ErrorCode.source_unavailable
    assert "cannot resolve hub.wan-test.invalid" in attempt.message


def test_a_refused_connection_is_a_source_error(tmp_path: Path, hub: HubServer) -> None:
    import socket
    from dataclasses import replace

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens there
    store = hf_store(tmp_path, hub, max_retries=1)
    store.config = replace(
        store.config, hf=replace(store.config.hf, endpoint=f"http://127.0.0.1:{port}")
    )
    with pytest.raises(AllSourcesFailedError) as err:
        store.ensure(SYNTH_ID)
    (attempt,) = err.value.attempts
    assert attempt.code is ErrorCode.source_unavailable
    assert "ConnectionRefusedError" in attempt.message


def test_a_server_that_always_cuts_the_body_early_still_completes(
    tmp_path: Path, hub: HubServer
) -> None:
    add_synth_repo(hub)
    # Every answer for the shard ends after 500 kB, whatever range was asked (1 MiB parts).
    hub.add_fault("drop", BIG, times=10_000, after_bytes=500_000)
    store = hf_store(tmp_path, hub, max_retries=2)
    store.ensure(SYNTH_ID)
    assert store.verify(SYNTH_ID).ok
    # Every byte that arrived was kept: each request moved the download on by its 500 kB.
    assert hub.bytes_sent(BIG) == SHARDS[BIG]
    assert all(r.sent > 0 for r in hub.body_requests(BIG))


def test_a_stall_keeps_what_arrived_before_it(tmp_path: Path, hub: HubServer) -> None:
    add_synth_repo(hub)
    hub.add_fault("stall", BIG, times=3, after_bytes=300_000, seconds=2)
    store = hf_store(tmp_path, hub, part_size_bytes=8 * MIB)  # the shard in one stream
    store.ensure(SYNTH_ID)
    assert store.verify(SYNTH_ID).ok
    assert hub.bytes_sent(BIG) == SHARDS[BIG]


def test_traffic_for_a_large_file_cut_every_2_mb_stays_near_its_size(
    tmp_path: Path, hub: HubServer
) -> None:
    """A 100 MB file whose every answer ends after 2 MB (in 32 MiB parts, 4 at a time)."""
    from tests.hubserver import PatternContent

    size = 100_000_000
    big = "transformer/diffusion_pytorch_model-00001-of-00002.safetensors"
    repo = add_synth_repo(hub)
    repo.add(big, PatternContent(size, seed=3), lfs=True)
    hub.add_fault("drop", big, times=10_000, after_bytes=2_000_000)
    store = hf_store(tmp_path, hub, part_size_bytes=32 * MIB, max_retries=2)
    store.ensure(SYNTH_ID)
    traffic = hub.bytes_sent(big)
    print(f"traffic for a {size / 1e6:.0f} MB file cut every 2 MB: {traffic / 1e6:.1f} MB")
    assert traffic <= 1.1 * size
    content = repo.files[big].content
    assert isinstance(content, PatternContent)
    assert content.first_difference(store.status(SYNTH_ID).path / big) is None


def test_each_shard_index_is_fetched_once(tmp_path: Path, hub: HubServer) -> None:
    from tests.hubserver import PatternContent

    repo = add_synth_repo(hub)
    te_index = "tokenizer/model.safetensors.index.json"  # a second folder with an index
    shard = "tokenizer/model-00001-of-00001.safetensors"
    repo.add(shard, PatternContent(MIB + 99, seed=5), lfs=True)
    repo.add(te_index, json.dumps({"weight_map": {"w": shard.rsplit("/", 1)[1]}}).encode())
    indexes = [p for p in repo.files if p.endswith(".index.json")]
    assert len(indexes) == 2
    store = hf_store(tmp_path, hub)
    path = store.ensure(SYNTH_ID)
    for index in indexes:
        assert len(hub.body_requests(index)) == 1, f"{index} was fetched more than once"
        assert (path / index).read_bytes() == repo.files[index].content.read(0, 1 << 20)
    # Every other file of the model is fetched once too.
    for rel in expected_files(repo) - set(indexes):
        assert hub.bytes_sent(rel) == repo.files[rel].content.size, rel
    assert store.verify(SYNTH_ID).ok


def test_a_missing_repository_is_told_from_a_missing_revision(
    tmp_path: Path, hub: HubServer
) -> None:
    add_synth_repo(hub)
    hub.tokens.add("hf_goodtoken1234567890")
    missing_repo = hf_manifest(tmp_path / "a", repo_id="wan-test/No-Such-Repo")
    store = hf_store(tmp_path / "a", hub, token="hf_goodtoken1234567890", manifest=missing_repo)
    with pytest.raises(AllSourcesFailedError) as err:
        store.ensure(SYNTH_ID)
    (attempt,) = err.value.attempts
    assert "the repository wan-test/No-Such-Repo does not exist" in attempt.message
    assert "revision" not in attempt.message.split(" — ")[0]
    assert "repository's name" in attempt.message
    missing_rev = hf_manifest(tmp_path / "b", rev="v9")
    store = hf_store(tmp_path / "b", hub, token="hf_goodtoken1234567890", manifest=missing_rev)
    with pytest.raises(AllSourcesFailedError) as err:
        store.ensure(SYNTH_ID)
    (attempt,) = err.value.attempts
    assert f"the repository {REPO} exists but has no revision 'v9'" in attempt.message
    assert "@revision" in attempt.message
    # Without a token the Hub does not say whether a repository exists: private is possible.
    store = hf_store(tmp_path / "c", hub, manifest=missing_repo)
    with pytest.raises(AllSourcesFailedError) as err:
        store.ensure(SYNTH_ID)
    assert err.value.code is ErrorCode.auth_fail
    assert "does not exist, or it is private" in err.value.attempts[0].message
