"""Real processes against the local Hub: kill -9 at random points, and four at once.

The server (in this process) generates the multi-GB file on the fly, so nothing is stored on its
side; its request log is the witness of what each process fetched.

The kill loop is 20 runs of: start a download of a model with a 2 GiB file, SIGKILL it once the
server has sent a random share of that file, let a new process resume it to completion, and check
(1) that the new process asked only for what the killed one left unfinished, each range once, and
(2) that the model is complete and verified: the store's sha256 against the Hub's, and the file
compared byte for byte with what the server generates. The kill points come from a seeded random
generator, one in each twentieth of 2-97 % of the file so every run kills early, midway and late;
the seed is printed (set ``KILL_LOOP_SEED`` to replay one). The models folder is on tmpfs when
there is room: 20 × 2 GiB fsynced to disk would add minutes and test the disk, not the resume.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import ROOT, SYNTH_ID
from tests.hfrepo import REPO, hf_manifest, hub_env
from tests.hubserver import HubRepo, HubServer, LoggedRequest, PatternContent
from wan_desktop.models.partials import PARTIAL_PREFIX, STATE_SUFFIX, plan_parts
from wan_desktop.models.paths import COMPLETE_MARKER

MIB = 1 << 20
GIB = 1 << 30
HUGE = "transformer/diffusion_pytorch_model-00001-of-00001.safetensors"
HUGE_SIZE = 2 * GIB + 12_345  # 2 GiB and a bit: parts never line up with the end
KILL_RUNS = 20
KILL_SPAN = (0.02, 0.97)  # of the big file's bytes sent when the kill comes
SEED_ENV = "KILL_LOOP_SEED"

Ranges = list[tuple[int, int]]


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


def unfinished(done: Ranges, size: int) -> Ranges:
    out, pos = [], 0
    for a, b in sorted(done):
        if a > pos:
            out.append((pos, a))
        pos = max(pos, b)
    if pos < size:
        out.append((pos, size))
    return out


def left_to_fetch(root: Path, repo: HubRepo) -> dict[str, Ranges]:
    """Per file, the byte ranges a killed run left unfinished, as its files on disk say."""
    staging = root / ".staging" / SYNTH_ID
    out: dict[str, Ranges] = {}
    for rel, f in repo.files.items():
        size = f.content.size
        dest = staging / rel
        partial = dest.with_name(PARTIAL_PREFIX + dest.name)
        record = partial.with_name(partial.name + STATE_SUFFIX)
        if record.is_file():  # parts: what the record counts as written is finished
            parts = json.loads(record.read_text())["parts"]
            out[rel] = unfinished([(a, a + d) for a, _, d in parts if d > 0], size)
        elif dest.is_file():  # fetched: at most hashed again, never fetched
            out[rel] = []
        elif partial.is_file():  # one part, appended in order: everything after its length
            out[rel] = [(partial.stat().st_size, size)] if partial.stat().st_size < size else []
        else:
            out[rel] = [(0, size)]
    return out


def file_requests(log: list[LoggedRequest], rel: str) -> list[LoggedRequest]:
    return [
        r for r in log if r.method == "GET" and r.start is not None and r.path.endswith("/" + rel)
    ]


def inside(rng: tuple[int, int], allowed: Ranges) -> bool:
    return any(a <= rng[0] and rng[1] <= b for a, b in allowed)


def overlap(a: Ranges, b: Ranges) -> int:
    return sum(max(0, min(y1, y2) - max(x1, x2)) for x1, y1 in a for x2, y2 in b)


def kill_points(rng: random.Random, runs: int) -> list[float]:
    """One share of the big file per run, one in each of ``runs`` slices of ``KILL_SPAN``."""
    lo, hi = KILL_SPAN
    step = (hi - lo) / runs
    points = [lo + (i + rng.random()) * step for i in range(runs)]
    rng.shuffle(points)
    return points


@pytest.fixture
def hub() -> Iterator[HubServer]:
    with HubServer() as server:
        yield server


@pytest.fixture
def fast_scratch(tmp_path: Path) -> Iterator[Path]:
    """A folder on tmpfs when one has room for the big file twice over, else ``tmp_path``."""
    shm = Path("/dev/shm")
    with contextlib.suppress(OSError):
        if shm.is_dir() and shutil.disk_usage(shm).free > 2 * HUGE_SIZE + GIB:
            folder = Path(tempfile.mkdtemp(prefix="wan-kill-", dir=shm))
            try:
                yield folder
            finally:
                shutil.rmtree(folder, ignore_errors=True)
            return
    yield tmp_path


@dataclass
class KillRun:
    share: float  # of the big file sent when the kill came
    recorded: int  # bytes of it the part record counted after the kill
    refetched: int  # bytes the resuming process fetched (all files)
    resent: int  # of those, bytes the killed process had been sent already
    seconds: float


@pytest.mark.slow
def test_kill_9_at_random_points_then_resume_fetches_only_unfinished_parts(
    tmp_path: Path, hub: HubServer, fast_scratch: Path
) -> None:
    seed = int(os.environ.get(SEED_ENV) or random.SystemRandom().randrange(1 << 32))
    print(f"kill loop seed {seed} (set {SEED_ENV}={seed} to replay)")
    repo = add_repo(hub, HUGE, HUGE_SIZE)
    huge = repo.files[HUGE].content
    assert isinstance(huge, PatternContent)
    expected = {rel: f.sha256 for rel, f in repo.files.items()}  # the big one: once, here
    manifest = hf_manifest(tmp_path)
    runs: list[KillRun] = []
    for i, share in enumerate(kill_points(random.Random(seed), KILL_RUNS)):
        where = f"seed {seed}, run {i + 1}, kill at {share:.1%}"
        t0 = time.monotonic()
        root = fast_scratch / f"run-{i}"
        env = hub_env(hub, root, manifest)
        # 1. A download, killed once the server has sent `share` of the big file.
        mark = len(hub.log)
        victim = wan_ensure(env)
        target = share * HUGE_SIZE
        while sum(r.sent for r in file_requests(hub.log[mark:], HUGE)) < target:
            assert victim.poll() is None, f"{where}: exited first: {victim.communicate()[1]}"
            time.sleep(0.005)
        victim.send_signal(signal.SIGKILL)
        victim.communicate()
        assert victim.returncode == -signal.SIGKILL, f"{where}: finished before the kill"
        hub.wait_idle()  # every request the dead process made is in the log
        sent_before = [
            (r.start or 0, (r.start or 0) + r.sent) for r in file_requests(hub.log[mark:], HUGE)
        ]
        allowed = left_to_fetch(root, repo)
        assert allowed[HUGE], f"{where}: the big file was done before the kill"
        assert not (root / "wan22" / SYNTH_ID).exists(), f"{where}: complete while partial"
        # 2. A new process resumes it to the end.
        mark = len(hub.log)
        resumed = wan_ensure(env)
        out, err = resumed.communicate(timeout=600)
        assert resumed.returncode == 0, f"{where}: {err[-3000:]}"
        assert json.loads(out)["results"][0]["state"] == "COMPLETE", where
        # 3. It asked only for what was unfinished, each range once.
        log = hub.log[mark:]
        refetched = 0
        for rel in repo.files:
            asked = sorted((r.start or 0, r.end or 0) for r in file_requests(log, rel))
            bad = [a for a in asked if not inside(a, allowed[rel])]
            assert not bad, f"{where}: {rel}: fetched {bad} again; unfinished was {allowed[rel]}"
            assert all(b1 <= a2 for (_, b1), (a2, _) in itertools.pairwise(asked)), where
            fetched = sum(r.sent for r in file_requests(log, rel))
            assert fetched <= sum(b - a for a, b in allowed[rel]), f"{where}: {rel}"
            refetched += fetched
        # 4. Complete and verified: the store's hashes, and the bytes themselves.
        folder = root / "wan22" / SYNTH_ID
        marker = json.loads((folder / COMPLETE_MARKER).read_text())
        assert {f["path"]: f["sha256"] for f in marker["files"]} == expected, where
        assert huge.first_difference(folder / HUGE) is None, f"{where}: the bytes differ"
        for rel, f in repo.files.items():
            assert (folder / rel).stat().st_size == f.content.size, f"{where}: {rel}"
        runs.append(
            KillRun(
                share=share,
                recorded=HUGE_SIZE - sum(b - a for a, b in allowed[HUGE]),
                refetched=refetched,
                resent=overlap(sent_before, allowed[HUGE]),
                seconds=time.monotonic() - t0,
            )
        )
        shutil.rmtree(root)
    print("share  recorded  refetched  of which resent  seconds")
    for r in runs:
        print(
            f"{r.share:5.1%}  {r.recorded / HUGE_SIZE:7.1%}  {r.refetched / MIB:7.0f} MiB"
            f"  {r.resent / MIB:10.1f} MiB  {r.seconds:6.1f}"
        )
    assert len(runs) == KILL_RUNS


def test_four_processes_fetch_each_byte_range_once(tmp_path: Path, hub: HubServer) -> None:
    big = "transformer/diffusion_pytorch_model.safetensors"
    repo = add_repo(hub, big, 40 * MIB + 1)
    root = tmp_path / "models"
    env = hub_env(hub, root, hf_manifest(tmp_path), WAN_PART_SIZE="4MiB")
    procs = [wan_ensure(env) for _ in range(4)]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, (out[-2000:], err[-2000:])
        results.append(json.loads(out)["results"][0])
    assert {r["state"] for r in results} == {"COMPLETE"}
    for path, f in repo.files.items():
        ranges = sorted((r.start or 0, r.end or 0) for r in hub.body_requests(path))
        covered = sum(b - a for a, b in ranges)
        assert covered == f.content.size, f"{path}: {ranges}"
        assert all(b1 <= a2 for (_, b1), (a2, _) in itertools.pairwise(ranges))
    parts = plan_parts(40 * MIB + 1, 4 * MIB, 4)  # as the engine cuts it with these settings
    assert sorted((r.start, r.end) for r in hub.body_requests(big)) == parts
    total = sum(f.content.size for f in repo.files.values())
    assert sum(r["bytes_transferred"] for r in results) == total, "one process moved the bytes"


def test_a_failed_request_records_its_bytes_before_the_retry(
    tmp_path: Path, hub: HubServer
) -> None:
    """The part record counts what a cut answer delivered while the retry is still under way,
    so a process killed then (here: during a retry the server never answers) resumes after it."""
    big = "transformer/diffusion_pytorch_model.safetensors"
    add_repo(hub, big, 3 * MIB + 5)  # three 1 MiB parts, fetched one after another
    hub.add_fault("drop", big, after_bytes=500_000)  # the first answer ends after 500 kB
    hub.add_fault("stall", big, after_bytes=0, seconds=60)  # the retry hangs
    root = tmp_path / "models"
    env = hub_env(
        hub,
        root,
        hf_manifest(tmp_path),
        WAN_PART_SIZE="1MiB",
        WAN_PARTS_PER_FILE="1",
        WAN_STALL_TIMEOUT="60",
    )
    proc = wan_ensure(env)
    try:
        deadline = time.monotonic() + 60
        while len(file_requests(hub.log, big)) < 2:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the retry never came"
            time.sleep(0.02)
        proc.kill()
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    first, retry = file_requests(hub.log, big)
    assert (first.start, first.sent) == (0, 500_000) and retry.start == 500_000
    assert left_to_fetch(root, hub.repos[REPO])[big] == [(500_000, 3 * MIB + 5)]
