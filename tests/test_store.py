"""ModelStore: ensure, status, verify and repair, with the real local and builtin sources."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import (
    REAL_MANIFEST,
    SYNTH_ID,
    make_store,
    make_synth_folder,
    sha256,
    small_filesystem,
    synth_model_entry,
    write_manifest,
)
from wan_desktop.models import folder_state
from wan_desktop.models import install as install_module
from wan_desktop.models.errors import (
    AllSourcesFailedError,
    CancelledError,
    ErrorCode,
    LockTimeoutError,
    ModelNotPresentError,
    NoSpaceError,
    PathInvalidError,
)
from wan_desktop.models.manifest import DEV_LABEL
from wan_desktop.models.paths import COMPLETE_MARKER
from wan_desktop.models.sources import CancelToken, RemoteFile, Source
from wan_desktop.models.store import ModelStore
from wan_desktop.models.types import DownloadProgress, ModelState, Phase

BIG = {
    "transformer/diffusion_pytorch_model-00001-of-00002.safetensors": 2_500_000,
    "transformer/diffusion_pytorch_model-00002-of-00002.safetensors": 1_500_000,
    "vae/diffusion_pytorch_model.safetensors": 700_000,
}


def flip_byte(path: Path, offset: int = 100) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


class Recorder:
    def __init__(self) -> None:
        self.events: list[DownloadProgress] = []

    def __call__(self, p: DownloadProgress) -> None:
        self.events.append(p)

    @property
    def transferred(self) -> int:
        return self.events[-1].bytes_transferred if self.events else 0


@pytest.fixture
def synth(tmp_path: Path) -> Any:
    return make_synth_folder(tmp_path / "mirror", BIG)


def synth_store(
    tmp_path: Path, sources: list[str], files: list[dict[str, Any]] | None = None, **overrides: Any
) -> ModelStore:
    manifest = write_manifest(
        tmp_path / "models.toml", {SYNTH_ID: synth_model_entry(sources, files)}
    )
    return make_store(tmp_path / "models", manifest, **overrides)


# ----------------------------------------------------------------------------- builtin (tiny)


def test_tiny_variant_goes_through_ensure_and_is_labelled(tiny_store: ModelStore) -> None:
    st = tiny_store.status("T2V-A14B")
    assert st.state is ModelState.complete and st.complete
    assert st.variant == "tiny" and st.development and st.label == DEV_LABEL
    assert st.path.name == "t2v-A14B@2.2.0+tiny"
    marker = json.loads((st.path / COMPLETE_MARKER).read_text())
    assert marker["source"] == "builtin://tiny/t2v-A14B"
    assert marker["label"] == DEV_LABEL
    for f in marker["files"]:
        assert sha256(st.path / f["path"]) == f["sha256"]
    # Sharded like the real repositories.
    assert any(f["path"].endswith(".safetensors.index.json") for f in marker["files"])
    # The typed record the engine asks for says the same as the file.
    typed = tiny_store.completion("T2V-A14B")
    assert typed is not None and typed.to_dict() == marker
    assert typed.total_bytes == st.bytes_total


def test_ensure_of_a_complete_model_moves_nothing(tiny_store: ModelStore) -> None:
    rec = Recorder()
    path = tiny_store.ensure("T2V-A14B", progress=rec)
    assert path == tiny_store.status("T2V-A14B").path
    assert rec.transferred == 0


def test_get_wan_paths_lists_components(tiny_store: ModelStore) -> None:
    paths = tiny_store.get_wan_paths("t2v-A14B@2.2.0")
    assert paths.development and paths.label == DEV_LABEL and paths.dtype == "float32"
    assert set(paths.components) == {
        "transformer",
        "transformer_2",
        "text_encoder",
        "tokenizer",
        "vae",
        "scheduler",
    }
    assert paths.model_index.is_file()
    assert "transformer_2" not in tiny_store.get_wan_paths("ti2v-5B@2.2.0").components


def test_get_wan_paths_of_a_missing_model_says_how_to_get_it(tmp_path: Path) -> None:
    store = make_store(tmp_path / "models", REAL_MANIFEST)
    with pytest.raises(ModelNotPresentError) as err:
        store.get_wan_paths("T2V-A14B")
    assert "wan models ensure --only t2v-A14B@2.2.0" in (err.value.fix or "")


def test_status_of_a_model_never_downloaded(tmp_path: Path) -> None:
    store = make_store(tmp_path / "models", REAL_MANIFEST)
    st = store.status("TI2V-5B")
    assert st.state is ModelState.not_present and st.variant == "bf16"
    assert st.approx_size_bytes == 22_500_000_000
    assert not (tmp_path / "models").exists(), "status has no side effects"


# ------------------------------------------------------------------------------ local source


def test_ensure_from_local_folder_with_manifest_hashes(tmp_path: Path, synth: Any) -> None:
    store = synth_store(tmp_path, [f"local://{synth.path}"], synth.manifest_files())
    rec = Recorder()
    path = store.ensure(SYNTH_ID, progress=rec)
    assert path == tmp_path / "models" / "wan22" / SYNTH_ID
    for rel in synth.files:
        assert (path / rel).read_bytes() == (synth.path / rel).read_bytes()
    assert rec.transferred == synth.total()
    assert rec.events[-1].phase is Phase.complete
    done = [e.bytes_done for e in rec.events if e.phase is Phase.downloading]
    assert done == sorted(done), "progress never goes backwards"
    assert rec.events[-1].bytes_total == synth.total()
    assert not (tmp_path / "models" / ".staging" / SYNTH_ID).exists()


def test_allow_patterns_select_files_when_the_manifest_lists_none(
    tmp_path: Path, synth: Any
) -> None:
    (synth.path / "notes.txt").write_text("not a model file")
    (synth.path / "assets").mkdir()
    (synth.path / "assets" / "demo.gif").write_bytes(b"GIF89a")
    store = synth_store(tmp_path, [f"local://{synth.path}"])
    path = store.ensure(SYNTH_ID)
    got = sorted(
        p.relative_to(path).as_posix()
        for p in path.rglob("*")
        if p.is_file() and not p.name.startswith(".wan-")
    )
    assert got == sorted(synth.files)


def test_local_mirror_that_is_another_models_folder_supplies_hashes(
    tmp_path: Path, synth: Any
) -> None:
    first = synth_store(tmp_path / "a", [f"local://{synth.path}"])
    mirror = first.ensure(SYNTH_ID)
    flip_byte(mirror / next(iter(BIG)))  # the mirror's marker still has the good hash
    second = synth_store(tmp_path / "b", [f"local://{mirror}"])
    with pytest.raises(AllSourcesFailedError) as err:
        second.ensure(SYNTH_ID)
    assert err.value.code is ErrorCode.checksum_fail


def test_sources_are_tried_in_order_until_one_works(tmp_path: Path, synth: Any) -> None:
    store = synth_store(
        tmp_path,
        [
            "local://${WAN_TEST_UNSET_MIRROR}/x",
            f"local://{tmp_path}/nowhere",
            f"local://{synth.path}",
        ],
        synth.manifest_files(),
    )
    assert store.ensure(SYNTH_ID).is_dir()


def test_when_every_source_fails_the_error_lists_each_and_why(tmp_path: Path, synth: Any) -> None:
    files = synth.manifest_files()
    files[0] = {**files[0], "sha256": "0" * 64}  # model_index.json hash that nothing matches
    store = synth_store(
        tmp_path,
        [
            "local://${WAN_TEST_UNSET_MIRROR}/x",
            f"local://{tmp_path}/nowhere",
            f"local://{synth.path}",
        ],
        files,
    )
    with pytest.raises(AllSourcesFailedError) as err:
        store.ensure(SYNTH_ID)
    exc = err.value
    assert [a.code for a in exc.attempts] == [
        ErrorCode.source_unavailable,
        ErrorCode.source_unavailable,
        ErrorCode.checksum_fail,
    ]
    assert "WAN_TEST_UNSET_MIRROR" in exc.attempts[0].message
    assert "does not exist" in exc.attempts[1].message
    bad = exc.attempts[2].message
    real = sha256(synth.path / "model_index.json")
    assert "model_index.json" in bad and str(synth.path) in bad
    assert real in bad and "0" * 64 in bad, "names both hashes"
    assert exc.code is ErrorCode.checksum_fail
    assert store.status(SYNTH_ID).state is not ModelState.complete


def test_size_mismatch_is_its_own_error_code(tmp_path: Path, synth: Any) -> None:
    files = synth.manifest_files()
    files[-1] = {**files[-1], "size": files[-1]["size"] - 10}
    store = synth_store(tmp_path, [f"local://{synth.path}"], files)
    with pytest.raises(AllSourcesFailedError) as err:
        store.ensure(SYNTH_ID)
    assert err.value.attempts[0].code is ErrorCode.size_mismatch


def test_source_without_model_index_is_not_a_model(tmp_path: Path, synth: Any) -> None:
    (synth.path / "model_index.json").unlink()
    store = synth_store(tmp_path, [f"local://{synth.path}"])
    with pytest.raises(AllSourcesFailedError, match=r"model_index\.json"):
        store.ensure(SYNTH_ID)


def test_a_source_cannot_name_files_outside_the_model(tmp_path: Path) -> None:
    class Evil(Source):
        scheme = "local"

        def list_files(self) -> list[RemoteFile]:
            return [RemoteFile("model_index.json", 2, None), RemoteFile("../../escape", 1, None)]

        def fetch(self, file: RemoteFile, sink: Any) -> None:
            raise AssertionError("never fetched")

    store = synth_store(tmp_path, ["local://x"])
    spec, var = store.resolve(SYNTH_ID)
    with pytest.raises(PathInvalidError, match=r"\.\."):
        store._plan(spec, var, Evil("local://x", None))  # type: ignore[arg-type]


# ----------------------------------------------------------------------- verify and repair


def test_flipped_byte_is_corrupt_until_repaired(
    tmp_path: Path, synth: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = synth_store(tmp_path, [f"local://{synth.path}"], synth.manifest_files())
    path = store.ensure(SYNTH_ID)
    damaged = "transformer/diffusion_pytorch_model-00002-of-00002.safetensors"
    flip_byte(path / damaged)
    assert store.status(SYNTH_ID).complete, "status does not hash: it cannot see a flipped byte"

    report = store.verify(SYNTH_ID)
    assert not report.ok
    assert [m.path for m in report.mismatches] == [damaged]
    assert report.mismatches[0].expected_sha256 == sha256(synth.path / damaged)

    # From now on status says CORRUPT without hashing anything.
    def no_hashing(*_: Any) -> Any:
        raise AssertionError("status must not re-hash")

    with monkeypatch.context() as m:
        m.setattr(folder_state, "sha256_file", no_hashing)
        st = store.status(SYNTH_ID)
    assert st.state is ModelState.corrupt and st.corrupt_files == (damaged,)
    assert st.bytes_needed == BIG[damaged]
    with pytest.raises(ModelNotPresentError):
        store.get_wan_paths(SYNTH_ID)

    rec = Recorder()
    store.ensure(SYNTH_ID, force=True, progress=rec)
    assert rec.transferred == BIG[damaged], "only the damaged file is fetched again"
    assert store.verify(SYNTH_ID).ok
    assert store.status(SYNTH_ID).complete


def test_plain_ensure_also_repairs_a_corrupt_model(tmp_path: Path, synth: Any) -> None:
    store = synth_store(tmp_path, [f"local://{synth.path}"], synth.manifest_files())
    path = store.ensure(SYNTH_ID)
    (path / "vae" / "diffusion_pytorch_model.safetensors").unlink()
    st = store.status(SYNTH_ID)
    assert st.state is ModelState.corrupt and st.missing == (
        "vae/diffusion_pytorch_model.safetensors",
    )
    rec = Recorder()
    store.ensure(SYNTH_ID, progress=rec)
    assert rec.transferred == BIG["vae/diffusion_pytorch_model.safetensors"]
    assert store.verify(SYNTH_ID).ok


def test_force_on_a_healthy_model_rechecks_and_fetches_nothing(tmp_path: Path, synth: Any) -> None:
    store = synth_store(tmp_path, [f"local://{synth.path}"], synth.manifest_files())
    store.ensure(SYNTH_ID)
    rec = Recorder()
    store.ensure(SYNTH_ID, force=True, progress=rec)
    assert rec.transferred == 0
    assert store.verify(SYNTH_ID).ok


def test_verify_of_a_missing_model_says_to_ensure(tmp_path: Path, synth: Any) -> None:
    store = synth_store(tmp_path, [f"local://{synth.path}"])
    with pytest.raises(ModelNotPresentError, match="nothing to verify"):
        store.verify(SYNTH_ID)


# ------------------------------------------------------------------- preflight, locks, crashes


def test_not_enough_space_fails_before_any_byte_moves(
    tmp_path: Path, synth: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = synth_store(tmp_path, [f"local://{synth.path}"], synth.manifest_files())
    real = shutil.disk_usage

    def tiny_disk(path: Any) -> Any:
        return real(path)._replace(free=1_000_000)

    monkeypatch.setattr(install_module.shutil, "disk_usage", tiny_disk)
    with pytest.raises(NoSpaceError) as err:
        store.ensure(SYNTH_ID)
    exc = err.value
    assert exc.code is ErrorCode.no_space
    assert exc.details["bytes_needed"] == synth.total()
    assert exc.details["bytes_free"] == 1_000_000
    assert "MODELS_ROOT" in (exc.fix or "") and "gc" in (exc.fix or "")
    staging = tmp_path / "models" / ".staging" / SYNTH_ID
    assert not any(p.is_file() and not p.name.startswith(".wan-") for p in staging.rglob("*"))


def test_disk_filling_up_while_copying_from_a_local_mirror_is_no_space(
    tmp_path: Path, synth: Any
) -> None:
    with small_filesystem(tmp_path / "fs", "16m") as fs:
        manifest = write_manifest(
            tmp_path / "models.toml",
            {SYNTH_ID: synth_model_entry([f"local://{synth.path}"], synth.manifest_files())},
        )
        store = make_store(fs / "models", manifest, free_space_reserve_bytes=0)
        filler = fs / "filler"

        def fill_the_disk(p: DownloadProgress) -> None:
            # Something else takes the rest of the disk as the copy begins.
            if p.phase is Phase.downloading and not filler.exists():
                with filler.open("wb", buffering=0) as fh, contextlib.suppress(OSError):
                    while True:
                        fh.write(b"\0" * (256 << 10))

        with pytest.raises(NoSpaceError) as err:
            store.ensure(SYNTH_ID, progress=fill_the_disk)
        assert "full" in err.value.message and "gc" in (err.value.fix or "")
        filler.unlink()
        store.ensure(SYNTH_ID)
        assert store.verify(SYNTH_ID).ok


def _hold_lock(lock: Path) -> subprocess.Popen[str]:
    code = (
        "import sys, time; from filelock import FileLock; "
        "l = FileLock(sys.argv[1]); l.acquire(); print('locked', flush=True); time.sleep(60)"
    )
    lock.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(lock)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


def test_lock_timeout_then_a_killed_holder_frees_the_lock(tmp_path: Path, synth: Any) -> None:
    store = synth_store(
        tmp_path, [f"local://{synth.path}"], synth.manifest_files(), lock_timeout_s=0.6
    )
    holder = _hold_lock(store.paths.lock_file(SYNTH_ID))
    try:
        rec = Recorder()
        t0 = time.monotonic()
        with pytest.raises(LockTimeoutError) as err:
            store.ensure(SYNTH_ID, progress=rec)
        assert 0.5 < time.monotonic() - t0 < 5
        assert err.value.code is ErrorCode.lock_timeout
        assert rec.events[0].phase is Phase.waiting
        holder.kill()
        holder.wait()
        assert store.ensure(SYNTH_ID).is_dir(), "a SIGKILLed holder's lock is free at once"
    finally:
        holder.kill()
        holder.wait()


def test_crash_between_marker_and_rename_is_finished_next_time(tmp_path: Path, synth: Any) -> None:
    store = synth_store(tmp_path, [f"local://{synth.path}"], synth.manifest_files())
    path = store.ensure(SYNTH_ID)
    staging = store.paths.staging_dir(SYNTH_ID)
    staging.parent.mkdir(parents=True, exist_ok=True)
    path.rename(staging)  # as if the process died right before the final rename
    assert store.status(SYNTH_ID).state is ModelState.partial
    rec = Recorder()
    assert store.ensure(SYNTH_ID, progress=rec) == path
    assert rec.transferred == 0
    assert store.verify(SYNTH_ID).ok


def test_staged_bytes_of_another_file_version_are_discarded(tmp_path: Path, synth: Any) -> None:
    store = synth_store(tmp_path, [f"local://{synth.path}"], synth.manifest_files())
    staging = store.paths.staging_dir(SYNTH_ID)
    rel = next(iter(BIG))
    (staging / rel).parent.mkdir(parents=True)
    (staging / rel).write_bytes(b"x" * 1000)  # a prefix of some older file
    (staging / ".wan-plan.json").write_text(
        json.dumps(
            {
                "source": "local://elsewhere",
                "done": {},
                "files": [{"path": rel, "size": BIG[rel], "sha256": "f" * 64}],
            }
        )
    )
    path = store.ensure(SYNTH_ID)
    assert sha256(path / rel) == sha256(synth.path / rel)


def test_cancel_stops_and_the_next_ensure_resumes(tmp_path: Path, synth: Any) -> None:
    store = synth_store(
        tmp_path, [f"local://{synth.path}"], synth.manifest_files(), max_concurrent_downloads=1
    )
    token = CancelToken()

    def cancel_midway(p: DownloadProgress) -> None:
        if p.bytes_transferred > 0:
            token.cancel()

    with pytest.raises(CancelledError):
        store.ensure(SYNTH_ID, progress=cancel_midway, cancel=token)
    st = store.status(SYNTH_ID)
    assert st.state is ModelState.partial and st.bytes_present > 0
    rec = Recorder()
    store.ensure(SYNTH_ID, progress=rec)
    assert rec.transferred == synth.total() - st.bytes_present
    assert store.verify(SYNTH_ID).ok


def test_delete_removes_model_and_partial_download(tmp_path: Path, synth: Any) -> None:
    store = synth_store(tmp_path, [f"local://{synth.path}"], synth.manifest_files())
    store.ensure(SYNTH_ID)
    assert store.delete(SYNTH_ID) == synth.total()
    assert store.status(SYNTH_ID).state is ModelState.not_present
    assert not store.paths.model_dir(SYNTH_ID, "full", "full").exists()


def test_discard_partial_removes_only_the_partial_download(tmp_path: Path, synth: Any) -> None:
    store = synth_store(tmp_path, [f"local://{synth.path}"], synth.manifest_files())
    store.ensure(SYNTH_ID)
    # What a cancelled re-download (a repair) leaves beside the installed model.
    staging = store.paths.staging_dir(SYNTH_ID)
    (staging / "transformer").mkdir(parents=True)
    (staging / "transformer" / ".wan-partial.w.safetensors").write_bytes(b"\0" * 5000)
    scratch = staging.with_name(staging.name + ".scratch")
    scratch.mkdir()
    (scratch / "part").write_bytes(b"\0" * 100)
    partial = [m for m in store.disk_usage().models if not m.complete]
    assert [(m.dir_name, m.bytes) for m in partial] == [(SYNTH_ID, 5100)]
    assert store.discard_partial(SYNTH_ID) == 5100
    assert not staging.exists() and not scratch.exists()
    assert store.status(SYNTH_ID).complete and store.verify(SYNTH_ID).ok
    assert store.discard_partial(SYNTH_ID) == 0, "nothing left: nothing to free"
    assert store.discard_partial("a" * 1000) == 0, "a name no file system holds: nothing there"
    for bad in ("", "..", "../models"):
        with pytest.raises(ValueError, match="not a folder name"):
            store.discard_partial(bad)
