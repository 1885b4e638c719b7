"""Several processes and hard kills: one transfer, resumable, never complete while partial."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import (
    SYNTH_ID,
    make_store,
    make_synth_folder,
    spawn_ensure,
    synth_model_entry,
    write_manifest,
)
from wan_desktop.models.types import DownloadProgress, ModelState

MIB = 1 << 20
BIG = {
    "transformer/diffusion_pytorch_model-00001-of-00003.safetensors": 16 * MIB,
    "transformer/diffusion_pytorch_model-00002-of-00003.safetensors": 16 * MIB,
    "transformer/diffusion_pytorch_model-00003-of-00003.safetensors": 12 * MIB,
}


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, Path, Any]:
    synth = make_synth_folder(tmp_path / "mirror", BIG)
    manifest = write_manifest(
        tmp_path / "models.toml",
        {SYNTH_ID: synth_model_entry([f"local://{synth.path}"], synth.manifest_files())},
    )
    return tmp_path / "models", manifest, synth


def staged_bytes(root: Path) -> int:
    staging = root / ".staging" / SYNTH_ID
    if not staging.is_dir():
        return 0
    return sum(
        p.stat().st_size
        for p in staging.rglob("*")
        if p.is_file() and not p.name.startswith(".wan-")
    )


def wait_until(cond: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        time.sleep(0.005)


def test_two_processes_ensuring_one_model_transfer_it_once(setup: Any, tmp_path: Path) -> None:
    root, manifest, synth = setup
    # Slow enough that the second process, which starts meanwhile, still finds it running.
    first = spawn_ensure(root, manifest, SYNTH_ID, tmp_path / "r1.json", delay=0.05)
    wait_until(lambda: staged_bytes(root) > 0)  # the first one is mid-transfer
    second = spawn_ensure(root, manifest, SYNTH_ID, tmp_path / "r2.json")
    assert first.wait(60) == 0 and second.wait(60) == 0
    r1 = json.loads((tmp_path / "r1.json").read_text())
    r2 = json.loads((tmp_path / "r2.json").read_text())
    assert r1["path"] == r2["path"] == str(root / "wan22" / SYNTH_ID)
    assert r1["transferred"] == synth.total()
    assert r2["transferred"] == 0 and r2["waited"], "the second waited on the lock, fetched nothing"
    store = make_store(root, manifest)
    assert store.verify(SYNTH_ID).ok


def test_processes_started_together_still_transfer_once(setup: Any, tmp_path: Path) -> None:
    root, manifest, synth = setup
    procs = [spawn_ensure(root, manifest, SYNTH_ID, tmp_path / f"r{i}.json") for i in range(3)]
    assert [p.wait(60) for p in procs] == [0, 0, 0]
    results = [json.loads((tmp_path / f"r{i}.json").read_text()) for i in range(3)]
    assert sum(r["transferred"] for r in results) == synth.total()
    assert len({r["path"] for r in results}) == 1


@pytest.mark.parametrize("kill_at", [0.2, 0.5, 0.8])
def test_sigkill_midway_resumes_with_correct_hashes(
    setup: Any, tmp_path: Path, kill_at: float
) -> None:
    root, manifest, synth = setup
    store = make_store(root, manifest)
    proc = spawn_ensure(root, manifest, SYNTH_ID, tmp_path / "r.json", delay=0.01)
    seen: set[ModelState] = set()

    def far_enough() -> bool:
        seen.add(store.status(SYNTH_ID).state)
        return staged_bytes(root) >= kill_at * synth.total()

    wait_until(far_enough)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert ModelState.complete not in seen, "a partial model never reads as complete"
    st = store.status(SYNTH_ID)
    assert st.state is ModelState.partial
    assert not (root / "wan22" / SYNTH_ID).exists()
    left = st.bytes_present
    assert 0 < left < synth.total()

    transferred = 0

    def on_progress(p: DownloadProgress) -> None:
        nonlocal transferred
        transferred = p.bytes_transferred

    store.ensure(SYNTH_ID, progress=on_progress)
    assert transferred == synth.total() - left, "only the missing bytes are fetched again"
    report = store.verify(SYNTH_ID)
    assert report.ok and len(report.checked) == len(synth.files)
