"""The one atomic file write (models/atomic.py): old or new, never half; no temp left behind."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.helpers import ROOT
from wan_desktop.models.atomic import TMP_PREFIX, atomic_path, atomic_write, atomic_write_json


def test_replaces_the_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    dest = tmp_path / "deep" / "settings.json"
    atomic_write_json(dest, {"a": 1})
    atomic_write(dest, "new text")
    assert dest.read_text() == "new text"
    assert [p.name for p in dest.parent.iterdir()] == ["settings.json"]


def test_a_private_file_is_never_readable_by_others(tmp_path: Path) -> None:
    old = os.umask(0o000)
    try:
        atomic_write(tmp_path / "token", "secret\n", mode=0o600)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "token").stat().st_mode) == 0o600


def test_a_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    dest = tmp_path / "video.mp4"
    dest.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_path(dest) as tmp:
        tmp.write_bytes(b"half of the ne")
        raise RuntimeError("encoder died")
    assert dest.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["video.mp4"]


def test_writers_at_once_never_share_a_temporary_or_mix_contents(tmp_path: Path) -> None:
    dest = tmp_path / "state.json"
    payloads = [bytes([65 + i]) * 200_000 for i in range(8)]
    errors: list[BaseException] = []

    def write(data: bytes) -> None:
        try:
            for _ in range(5):
                atomic_write(dest, data, durable=False)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(p,)) for p in payloads]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert dest.read_bytes() in payloads
    assert not list(tmp_path.glob(f"{TMP_PREFIX}*"))


WRITER = """
import sys
from pathlib import Path
from wan_desktop.models.atomic import atomic_write
dest = Path(sys.argv[1])
print("ready", flush=True)
n = 0
while True:
    n += 1
    atomic_write(dest, bytes([65 + n % 26]) * 4_000_000)
"""


def test_a_writer_killed_at_any_moment_leaves_a_whole_file(tmp_path: Path) -> None:
    dest = tmp_path / "jobs.json"
    dest.write_bytes(b"Z" * 4_000_000)
    for delay in (0.05, 0.2, 0.35):
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(dest)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        data = dest.read_bytes()
        assert len(data) == 4_000_000 and data == data[:1] * len(data), "never a torn file"
