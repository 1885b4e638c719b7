"""Real processes against the local Hub: kill -9 at random points, and four at once.

The server generates the multi-GB file on the fly (nothing stored on its side); its request log is
the witness of what each process fetched.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import ROOT, SYNTH_ID
from tests.hfrepo import REPO, hf_manifest, hub_env
from tests.hubserver import HubRepo, HubServer, PatternContent
from wan_desktop.models.paths import COMPLETE_MARKER

MIB = 1 << 20
HUGE = "transformer/diffusion_pytorch_model-00001-of-00001.safetensors"
HUGE_SIZE = 2 * (1 << 30) + 12_345  # 2 GiB and a bit: parts never line up with the end
KILLS = 20


def add_repo(hub: HubServer, big_path: str, big_size: int) -> HubRepo:
    repo = hub.add_repo(REPO)
    repo.add("model_index.json", json.dumps({"_class_name": "WanPipeline"}).encode())
    repo.add("transformer/config.json", b'{"num_layers": 2}')
    repo.add(big_path, PatternContent(big_size, seed=7), lfs=True)
    repo.add("vae/diffusion_pytorch_model.safetensors", PatternContent(3 * MIB, seed=8), lfs=True)
    repo.add("vae/config.json", b'{"z_dim": 16}')
    return repo


def wan_ensure(env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "wan_desktop.cli", "models", "ensure", "--only", SYNTH_ID, "--json"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def recorded_done(root: Path) -> list[tuple[int, int]] | None:
    """The byte ranges the part record counts as written, or None when there is no record."""
    staging = root / ".staging" / SYNTH_ID / "transformer"
    rec = staging / f".wan-partial.{Path(HUGE).name}.json"
    try:
        parts = json.loads(rec.read_text())["parts"]
    except (OSError, ValueError, KeyError):
        return None
    return [(a, a + d) for a, _, d in parts if d > 0]


def unfinished(done: list[tuple[int, int]], size: int) -> list[tuple[int, int]]:
    out, pos = [], 0
    for a, b in sorted(done):
        if a > pos:
            out.append((pos, a))
        pos = max(pos, b)
    if pos < size:
        out.append((pos, size))
    return out


def inside(rng: tuple[int, int], allowed: list[tuple[int, int]]) -> bool:
    return any(a <= rng[0] and rng[1] <= b for a, b in allowed)


@pytest.fixture
def hub() -> Iterator[HubServer]:
    with HubServer() as server:
        yield server


@pytest.mark.slow
def test_kill_9_at_random_points_then_resume_fetches_only_unfinished_parts(
    tmp_path: Path, hub: HubServer
) -> None:
    repo = add_repo(hub, HUGE, HUGE_SIZE)
    expected_sha = repo.files[HUGE].sha256  # computed once, on the fly
    root = tmp_path / "models"
    env = hub_env(hub, root, hf_manifest(tmp_path), WAN_PART_SIZE="64MiB")
    hub.rate_bps = 25e6  # per request; four parts at a time: ~100 MB/s
    rng = random.Random(20261121)
    allowed: list[tuple[int, int]] = [(0, HUGE_SIZE)]
    kills = 0
    for _ in range(KILLS):
        mark = len(hub.log)
        proc = wan_ensure(env)
        time.sleep(rng.uniform(0.3, 1.3))
        if proc.poll() is not None:
            break  # finished before the kill: the checks below still apply to it
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        kills += 1
        time.sleep(0.3)  # requests the dead process had sent are logged before the next run
        fetched = [(r.start or 0, r.end or 0) for r in hub.log[mark:] if r.path.endswith(HUGE)]
        fetched = [f for f in fetched if f[1] > f[0]]
        bad = [f for f in fetched if not inside(f, allowed)]
        assert not bad, f"run {kills} fetched recorded bytes again: {bad} (allowed {allowed})"
        assert not (root / "wan22" / SYNTH_ID).exists(), "never complete while partial"
        done = recorded_done(root)
        if done is None:  # killed before the first record, or after the file was finished
            finished = (root / ".staging" / SYNTH_ID / HUGE).is_file()
            allowed = [] if finished else [(0, HUGE_SIZE)]
        else:
            allowed = unfinished(done, HUGE_SIZE)
    assert kills >= KILLS - 2, f"only {kills} kills landed before the download finished"
    hub.rate_bps = None
    mark = len(hub.log)
    final = wan_ensure(env)
    _, err = final.communicate(timeout=240)
    assert final.returncode == 0, err[-3000:]
    fetched = [(r.start or 0, r.end or 0) for r in hub.log[mark:] if r.path.endswith(HUGE)]
    assert all(inside(f, allowed) for f in fetched), "the last run fetched recorded bytes again"
    assert sum(b - a for a, b in fetched) <= sum(b - a for a, b in allowed)
    marker = json.loads((root / "wan22" / SYNTH_ID / COMPLETE_MARKER).read_text())
    huge = next(f for f in marker["files"] if f["path"] == HUGE)
    assert huge == {"path": HUGE, "size": HUGE_SIZE, "sha256": expected_sha}
    assert (root / "wan22" / SYNTH_ID / HUGE).stat().st_size == HUGE_SIZE
    total_sent = hub.bytes_sent(HUGE)
    assert total_sent < HUGE_SIZE * 1.5, "resumes added little on top of one full transfer"


def test_four_processes_fetch_each_byte_range_once(tmp_path: Path, hub: HubServer) -> None:
    big = "transformer/diffusion_pytorch_model.safetensors"
    repo = add_repo(hub, big, 40 * MIB + 1)
    root = tmp_path / "models"
    env = hub_env(hub, root, hf_manifest(tmp_path), WAN_PART_SIZE="4MiB")
    procs = [wan_ensure(env) for _ in range(4)]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err[-2000:]
        results.append(json.loads(out)["results"][0])
    assert {r["state"] for r in results} == {"COMPLETE"}
    for path, f in repo.files.items():
        ranges = sorted((r.start or 0, r.end or 0) for r in hub.body_requests(path))
        covered = sum(b - a for a, b in ranges)
        assert covered == f.content.size, f"{path}: {ranges}"
        assert all(b1 <= a2 for (_, b1), (a2, _) in itertools.pairwise(ranges))
    assert len(hub.body_requests(big)) == 11  # 40 MiB + 1 byte in 4 MiB parts
    total = sum(f.content.size for f in repo.files.values())
    assert sum(r["bytes_transferred"] for r in results) == total, "one process moved the bytes"
