"""A damaged job database: checked at start, moved aside, the newest backup restored, said aloud.

Each case damages a real store the way a broken disk or a stray tool would while the server was
stopped, then starts a real engine with the API on it: the history comes back from the backup made
at the last clean stop, the damaged file is kept beside it, and ``/health`` says degraded.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api_helpers import api_client
from tests.engine_helpers import engine_settings, mock_engine, wait_job, wan_spec
from tests.helpers import REAL_MANIFEST
from wan_desktop.engine import InvalidInputError, JobState
from wan_desktop.engine.jobstore import JobStore
from wan_desktop.engine.store_recovery import BACKUP_KEEP, backups

ROOT = Path(__file__).resolve().parents[1]
JOBS = 4
PAGE = 4096


def make_history(root: Path) -> list[str]:
    """Run a few jobs and pad the store with log lines so that it spans many pages."""
    eng = mock_engine(root)
    try:
        ids = []
        for i in range(JOBS):
            job = eng.submit(wan_spec(prompt=f"history job {i}", steps=1, frames=5))
            wait_job(eng, job.id, JobState.completed)
            ids.append(job.id)
        for n in range(1500):
            eng.store.add_log(ids[n % JOBS], "info", f"line {n} " + "x" * 200)
    finally:
        eng.shutdown()  # a clean stop leaves a backup of everything
    return ids


def db_path(root: Path) -> Path:
    return engine_settings(root).db_path


def overwrite(path: Path, offset: int, data: bytes) -> None:
    with path.open("r+b") as f:
        f.seek(offset)
        f.write(data)


def random_bytes(path: Path) -> None:
    path.write_bytes(os.urandom(path.stat().st_size))


def text_file(path: Path) -> None:
    path.write_text("these are my notes, saved over the wrong file\n" * 200)


def smashed_header(path: Path) -> None:
    overwrite(path, 0, os.urandom(100))


def half_truncated(path: Path) -> None:
    os.truncate(path, path.stat().st_size // 2)


def overwritten_pages(path: Path) -> None:
    pages = path.stat().st_size // PAGE
    overwrite(path, PAGE * (pages // 3), os.urandom(PAGE * 8))


def corrupt_last_pages(path: Path) -> None:
    size = path.stat().st_size
    overwrite(path, size - 3 * PAGE, os.urandom(3 * PAGE))


def zero_bytes(path: Path) -> None:
    os.truncate(path, 0)


DAMAGE: dict[str, Callable[[Path], None]] = {
    "random bytes": random_bytes,
    "a text file": text_file,
    "a smashed header": smashed_header,
    "half truncated": half_truncated,
    "overwritten pages": overwritten_pages,
    "corrupt last pages": corrupt_last_pages,
    "truncated to 0 bytes": zero_bytes,
}


def submit_body(prompt: str = "after the repair") -> dict[str, Any]:
    return {
        "model_type": "T2V-A14B",
        "prompt": prompt,
        "steps": 1,
        "num_frames": 5,
        "resolution": "854x480",
    }


@pytest.mark.parametrize("damage", list(DAMAGE), ids=list(DAMAGE))
def test_a_damaged_store_is_moved_aside_and_the_backup_restored(
    tmp_path: Path, damage: str
) -> None:
    ids = make_history(tmp_path)
    path = db_path(tmp_path)
    assert not path.with_name(path.name + "-wal").exists()  # a clean stop checkpointed it
    DAMAGE[damage](path)
    damaged = path.read_bytes()

    with api_client(tmp_path) as (client, eng):
        health = client.get("/health").json()
        assert health["status"] == "degraded", health
        assert health["job_store"]["ok"] is False
        assert "restored" in health["job_store"]["message"], health
        assert str(tmp_path) not in json.dumps(health)  # /health is open: no paths in it
        # The history is back, whole.
        listed = client.get("/api/v1/jobs", params={"items_per_page": 50}).json()
        assert sorted(j["job_id"] for j in listed["jobs"]) == sorted(ids), listed
        assert {j["status"] for j in listed["jobs"]} == {"completed"}
        assert len(eng.logs(ids[0])) > 300
        # The damaged file is kept, byte for byte.
        kept = list(path.parent.glob(path.name + ".damaged-*"))
        assert [p.read_bytes() for p in kept if not p.name.endswith(("-wal", "-shm"))] == [damaged]
        assert eng.store_health.moved_to in kept
        # And the store works again.
        r = client.post("/api/v1/generation/submit", json=submit_body())
        assert r.status_code == 200, r.text
        wait_job(eng, r.json()["task_id"], JobState.completed)

    # Said once: the next start finds a sound store and reports healthy.
    with api_client(tmp_path) as (client, _):
        assert client.get("/health").json()["status"] == "ok"
        assert client.get("/api/v1/jobs").json()["total_count"] == JOBS + 1


def test_without_a_backup_the_store_starts_empty_and_says_so(tmp_path: Path) -> None:
    make_history(tmp_path)
    path = db_path(tmp_path)
    for b in backups(engine_settings(tmp_path).db_backups_dir):
        b.unlink()
    random_bytes(path)
    alerts: list[Any] = []
    eng = mock_engine(tmp_path, start=False)
    eng.subscribe(alerts.append)
    eng.start()
    try:
        health = eng.store_health
        assert not health.ok and "starts empty" in health.summary
        assert health.moved_to is not None and health.moved_to.exists()
        assert eng.jobs() == []
        # The app is told (the desktop app shows engine alerts as notices; events arrive on the
        # bus's own thread).
        deadline = time.monotonic() + 30
        while not any(getattr(a, "kind", None) == "job_store" for a in alerts):
            assert time.monotonic() < deadline, alerts
            time.sleep(0.02)
    finally:
        eng.shutdown()


def test_backups_roll_and_a_damaged_backup_is_passed_over(tmp_path: Path) -> None:
    ids = make_history(tmp_path)
    settings = engine_settings(tmp_path)
    for i in range(BACKUP_KEEP + 2):
        store = JobStore(settings.db_path, backups_dir=settings.db_backups_dir)
        store.set_meta("n", str(i))
        store.generation += 1  # what every write of the engine does
        assert store.backup_if_changed() is not None
        store.close()
    kept = backups(settings.db_backups_dir)
    assert len(kept) == BACKUP_KEEP
    random_bytes(kept[0])  # the newest backup is damaged too
    random_bytes(settings.db_path)
    store = JobStore(settings.db_path, backups_dir=settings.db_backups_dir)
    try:
        assert store.health.restored_from == kept[1]
        assert sorted(j.id for j in store.list_jobs()) == sorted(ids)
    finally:
        store.close()


@contextmanager
def immutable(path: Path) -> Iterator[None]:
    """Write-protected even for root (tests run as root, for whom chmod protects nothing)."""
    subprocess.run(["chattr", "+i", str(path)], check=True)
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


def test_a_read_only_store_is_read_and_refuses_changes_with_503(tmp_path: Path) -> None:
    ids = make_history(tmp_path)
    path = db_path(tmp_path)
    before = path.read_bytes()
    with immutable(path), api_client(tmp_path) as (client, _):
        health = client.get("/health").json()
        assert health["status"] == "degraded" and health["job_store"]["read_only"] is True
        listed = client.get("/api/v1/jobs").json()
        assert sorted(j["job_id"] for j in listed["jobs"]) == sorted(ids)
        r = client.post("/api/v1/generation/submit", json=submit_body())
        assert r.status_code == 503, r.text
        body = r.json()
        assert body["code"] == "read_only" and "read-only" in body["detail"]
        assert body["suggestions"] and str(tmp_path) not in r.text
    assert path.read_bytes() == before


def test_damage_found_while_running_is_reported_and_recovered_at_the_next_start(
    tmp_path: Path,
) -> None:
    ids = make_history(tmp_path)
    path = db_path(tmp_path)
    with api_client(tmp_path) as (client, eng):
        assert client.get("/health").json()["status"] == "ok"
        # Another program smashes every page but the first while the server runs.
        size = path.stat().st_size
        overwrite(path, PAGE, os.urandom(size - PAGE))
        eng.store._db.execute("PRAGMA cache_size=0")  # no page read from memory
        r = client.get("/api/v1/jobs")
        assert r.status_code == 503 and r.json()["code"] == "damaged", r.text
        health = client.get("/health").json()
        assert health["status"] == "degraded" and "damaged" in health["job_store"]["message"]
    with api_client(tmp_path) as (client, _):
        health = client.get("/health").json()
        assert health["status"] == "degraded" and "restored" in health["job_store"]["message"]
        listed = client.get("/api/v1/jobs").json()
        assert sorted(j["job_id"] for j in listed["jobs"]) == sorted(ids)


def test_wan_serve_starts_on_a_damaged_store_and_says_degraded(tmp_path: Path) -> None:
    ids = make_history(tmp_path)
    random_bytes(db_path(tmp_path))
    env = {
        **os.environ,
        "WAN_DATA_DIR": str(tmp_path / "data"),
        "MODELS_ROOT": str(tmp_path / "models"),
        "WAN_MODELS_MANIFEST": str(REAL_MANIFEST),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "wan_desktop.cli", "serve", "--port", "0", "--mock"],
        cwd=ROOT,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        lines: list[str] = []
        while not lines or "Wan Desktop API at" not in lines[-1]:
            line = proc.stderr.readline()
            assert line, "".join(lines)
            lines.append(line)
        log = "".join(lines)
        assert "Traceback" not in log and "restored" in log, log
        url = lines[-1].split(" at ", 1)[1].split(" ", 1)[0].rstrip(";")
        health = httpx.get(f"{url}/health").json()
        assert health["status"] == "degraded"
        listed = httpx.get(f"{url}/api/v1/jobs").json()
        assert sorted(j["job_id"] for j in listed["jobs"]) == sorted(ids)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def plant_unreadable_rows(path: Path, template_id: str) -> list[str]:
    """Rows as an old version could write them: a prompt with a lone surrogate behind JSON's
    \\u escape, and a label of bytes that are not UTF-8."""
    db = sqlite3.connect(str(path), isolation_level=None)
    try:
        cols = [r[1] for r in db.execute("PRAGMA table_info(jobs)")]
        row = dict(
            zip(
                cols,
                db.execute("SELECT * FROM jobs WHERE id = ?", (template_id,)).fetchone(),
                strict=True,
            )
        )
        surrogate = {**row, "id": "a" * 32, "created_at": row["created_at"] + 1}
        params = json.loads(row["params"])
        params["prompt"] = "a fox \ud800 in snow"
        surrogate["params"] = json.dumps(params)  # ensure_ascii: stored as \ud800
        bad_bytes = {**row, "id": "b" * 32, "created_at": row["created_at"] + 2}
        for r in (surrogate, bad_bytes):
            db.execute(
                f"INSERT INTO jobs ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                [r[c] for c in cols],
            )
        db.execute("UPDATE jobs SET label = CAST(X'66ff6f78' AS TEXT) WHERE id = ?", ("b" * 32,))
    finally:
        db.close()
    return ["a" * 32, "b" * 32]


def test_a_row_that_cannot_be_read_is_skipped_and_reported_not_fatal(tmp_path: Path) -> None:
    ids = make_history(tmp_path)
    bad = plant_unreadable_rows(db_path(tmp_path), ids[0])
    with api_client(tmp_path) as (client, eng):
        for url in (
            "/api/v1/jobs",
            "/api/v1/queue",
            "/api/v1/queue/poll",
            "/api/v1/outputs",
            f"/api/v1/jobs/{ids[0]}",
            f"/api/v1/videos/jobs/{ids[0]}/status",
        ):
            r = client.get(url)
            assert r.status_code == 200, (url, r.text)
        listed = client.get("/api/v1/jobs").json()
        assert sorted(j["job_id"] for j in listed["jobs"]) == sorted(ids)
        health = client.get("/health").json()
        assert health["status"] == "degraded"
        assert health["job_store"]["unreadable_jobs"] == sorted(bad)
        r = client.get(f"/api/v1/jobs/{bad[0]}")
        assert r.status_code == 400 and "delete it" in r.json()["detail"], r.text
        # The engine keeps working beside them, and they can be deleted.
        job = eng.submit(wan_spec(prompt="still working", steps=1, frames=5))
        wait_job(eng, job.id, JobState.completed)
        for job_id in bad:
            assert client.delete(f"/api/v1/jobs/{job_id}").status_code == 200
        assert client.get("/health").json()["status"] == "ok"
        assert client.get("/api/v1/jobs").json()["total_count"] == JOBS + 1


def test_the_store_never_takes_text_it_could_not_give_back(tmp_path: Path) -> None:
    eng = mock_engine(tmp_path)
    try:
        with pytest.raises(InvalidInputError) as err:
            eng.submit(wan_spec(prompt="a fox \ud800"))
        assert "prompt" in err.value.errors
        assert eng.jobs() == [] and not eng.store.unreadable
    finally:
        eng.shutdown()


def test_a_read_only_data_folder_is_read_and_refuses_changes_with_503(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(data)], check=True)
    try:
        ids = make_history(tmp_path)
        subprocess.run(["mount", "-o", "remount,ro", str(data)], check=True)
        with api_client(tmp_path) as (client, eng):
            health = client.get("/health").json()
            assert health["status"] == "degraded" and health["job_store"]["read_only"] is True
            listed = client.get("/api/v1/jobs").json()
            assert sorted(j["job_id"] for j in listed["jobs"]) == sorted(ids)
            r = client.post("/api/v1/generation/submit", json=submit_body())
            assert r.status_code == 503 and r.json()["code"] == "read_only", r.text
            assert eng.store_health.moved_to is None  # nothing was moved: it is not damaged
    finally:
        subprocess.run(["umount", "-l", str(data)], check=True)


def test_the_app_shows_that_the_history_was_restored(qtbot: Any, tmp_path: Path) -> None:
    from tests.ui_helpers import make_window, private_config, studio_for, wait_until

    make_history(tmp_path)
    random_bytes(db_path(tmp_path))
    # As the app does: the engine starts once the window listens to it.
    engine = private_config(mock_engine(tmp_path, start=False), tmp_path / "config")
    with studio_for(engine, tmp_path / "config") as studio:
        window = make_window(qtbot, studio)
        engine.start()
        wait_until(
            qtbot, lambda: any(t.notice.title == "Job history" for t in window.toasts.toasts)
        )
        toast = next(t for t in window.toasts.toasts if t.notice.title == "Job history")
        assert toast.notice.kind == "error" and "restored" in toast.notice.message


def test_an_empty_new_store_is_not_mistaken_for_a_truncated_one(tmp_path: Path) -> None:
    settings = engine_settings(tmp_path)
    settings.db_path.parent.mkdir(parents=True)
    settings.db_path.touch()  # what SQLite leaves for an instant when it creates the file
    store = JobStore(settings.db_path, backups_dir=settings.db_backups_dir)
    try:
        assert store.health.ok and store.list_jobs() == []
        assert list(settings.db_path.parent.glob("*.damaged-*")) == []
    finally:
        store.close()


def test_engine_text_with_odd_characters_is_stored_readably(tmp_path: Path) -> None:
    eng = mock_engine(tmp_path)
    try:
        job = eng.submit(wan_spec(steps=1, frames=5))
        wait_job(eng, job.id, JobState.completed)
        # An error message that quotes something odd (a file name from another tool…).
        eng.store.update(job.id, stage_message="could not read 'a\udc80b'")
        eng.store.add_log(job.id, "error", "odd \ud800 text")
        assert eng.get(job.id).stage_message == "could not read 'a?b'"
        assert eng.logs(job.id)[-1]["message"] == "odd ? text"
        assert not eng.store.unreadable
    finally:
        eng.shutdown()


def test_wan_serve_explains_a_store_it_cannot_recover_without_a_traceback(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(data)], check=True)
    try:
        make_history(tmp_path)
        random_bytes(db_path(tmp_path))
        # Damaged, on a disk that cannot be written: it cannot be moved aside.
        subprocess.run(["mount", "-o", "remount,ro", str(data)], check=True)
        env = {
            **os.environ,
            "WAN_DATA_DIR": str(data),
            "MODELS_ROOT": str(tmp_path / "models"),
            "WAN_MODELS_MANIFEST": str(REAL_MANIFEST),
        }
        out = subprocess.run(
            [sys.executable, "-m", "wan_desktop.cli", "serve", "--port", "0", "--mock"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert out.returncode == 1, out.stderr
        assert "Traceback" not in out.stderr, out.stderr
        assert "could not be moved aside" in out.stderr and "move" in out.stderr, out.stderr
    finally:
        subprocess.run(["umount", "-l", str(data)], check=True)
