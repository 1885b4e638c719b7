"""Full disks, on real small filesystems (a tmpfs of a few MB mounted by the test).

The outputs folder full: a job that cannot fit fails before it runs, and ENOSPC while encoding
fails the job the same way (``storage_full``, what to do), with no partial file left and no
command line or install path in what the API shows. The data folder full: submit answers 507
with the API's error shape.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from tests.api_helpers import api_client
from tests.engine_helpers import mock_engine, wait_job, wan_spec
from tests.helpers import REAL_MANIFEST, small_filesystem
from wan_desktop.engine import FailureCategory, JobState
from wan_desktop.engine.context import JobContext
from wan_desktop.engine.jobs import JobOutput
from wan_desktop.engine.params import WanParams
from wan_desktop.engine.pipelines.common import save_video
from wan_desktop.engine.pipelines.mock import MockPipeline
from wan_desktop.models import load_manifest

MB = 2**20


def fill(folder: Path, leave_bytes: int) -> Path:
    """Take all the free space of ``folder``'s disk but ``leave_bytes``."""
    filler = folder / "filler.bin"
    free = shutil.disk_usage(folder).free
    with filler.open("wb") as f:
        f.write(bytes(max(0, free - leave_bytes)))
    return filler


class NoisePipeline(MockPipeline):
    """The mock job, but its frames are noise: H.264 cannot shrink them, as with a real model's
    first steps. The video is written by the real save path (ffmpeg, thumbnail, sidecar). It
    gives no size estimate, so the disk fills while encoding, as when an estimate falls short."""

    def output_bytes(self, params: Any) -> int:
        return 0

    def run(self, ctx: JobContext) -> JobOutput:
        import numpy as np

        p = WanParams.from_dict(ctx.params)
        ctx.set_state(JobState.encoding)
        ctx.stage("saving", 0.95)
        frames = np.random.default_rng(p.seed).integers(0, 256, (p.frames, 272, 480, 3), np.uint8)
        return save_video(ctx, frames, p.fps, {"mock": True})


def no_secrets(text: str) -> None:
    assert "ffmpeg -" not in text and "FFMPEG COMMAND" not in text, text
    assert sys.prefix not in text and "site-packages" not in text, text
    assert "Errno 28" not in text and "Broken pipe" not in text, text


def test_a_job_that_cannot_fit_in_the_outputs_folder_fails_before_it_runs(tmp_path: Path) -> None:
    with (
        small_filesystem(tmp_path / "data" / "outputs", "8m") as outputs,
        api_client(tmp_path) as (c, eng),
    ):
        fill(outputs, 2 * MB)
        job = eng.submit(wan_spec(steps=3, frames=17))
        done = wait_job(eng, job.id, JobState.failed)
        assert done.failure is not None
        assert done.failure.category is FailureCategory.storage_full
        assert "MiB free" in done.failure.message and "needs about" in done.failure.message
        assert done.step is None  # no step ran
        status = c.get(f"/api/v1/videos/jobs/{job.id}/status").json()
        assert status["error"]["category"] == "storage_full", status
        assert any("Gallery" in s for s in status["error"]["suggestions"])
        assert sorted(p.name for p in outputs.iterdir()) == ["filler.bin"]
        # Room again: the same job runs.
        (outputs / "filler.bin").unlink()
        again = eng.submit(wan_spec(steps=3, frames=17))
        wait_job(eng, again.id, JobState.completed)


def test_enospc_while_encoding_fails_the_job_cleanly_and_leaves_no_partial_file(
    tmp_path: Path,
) -> None:
    manifest = load_manifest(REAL_MANIFEST)
    with (
        small_filesystem(tmp_path / "data" / "outputs", "2m") as outputs,
        api_client(tmp_path, engine=mock_engine(tmp_path, pipelines=[NoisePipeline(manifest)])) as (
            c,
            eng,
        ),
    ):
        try:
            # 33 noise frames of 480x272 take ~2.8 MB at CRF 18: more than the disk holds.
            job = eng.submit(wan_spec(steps=1, frames=33))
            done = wait_job(eng, job.id, JobState.failed, JobState.completed, timeout=120)
            assert done.failure is not None
            assert done.failure.category is FailureCategory.storage_full, done.failure
            assert done.failure.stage == "saving"
            status = c.get(f"/api/v1/videos/jobs/{job.id}/status").json()
            assert status["error"]["category"] == "storage_full"
            no_secrets(json.dumps(status))
            no_secrets(json.dumps(c.get(f"/api/v1/jobs/{job.id}/logs").json()))
            assert list(outputs.rglob("*.*")) == [], list(outputs.rglob("*"))
            assert shutil.disk_usage(outputs).free > 1.9 * MB  # the partial file is gone
        finally:
            eng.shutdown()


def submit_body() -> dict[str, Any]:
    return {
        "model_type": "T2V-A14B",
        "prompt": "a fox " + "in deep snow " * 20,
        "steps": 1,
        "num_frames": 5,
        "resolution": "854x480",
    }


def test_a_full_data_folder_answers_507_with_what_to_free(tmp_path: Path) -> None:
    with small_filesystem(tmp_path / "data", "16m") as data, api_client(tmp_path) as (c, eng):
        eng.pause()  # the jobs stay queued: only the store is written
        queued = c.post("/api/v1/generation/submit", json=submit_body())
        assert queued.status_code == 200, queued.text
        fill(data, 0)
        for _ in range(5):  # SQLite may still have room in pages it holds
            r = c.post("/api/v1/generation/submit", json=submit_body())
            if r.status_code != 200:
                break
        assert r.status_code == 507, r.text
        body = r.json()
        assert body["code"] == "storage_full" and "full" in body["detail"]
        assert any("free space" in s for s in body["suggestions"])
        assert str(tmp_path) not in r.text  # the answer may go to a remote client
        # The worker meets the full disk too: it waits instead of dying.
        eng.resume()
        time.sleep(2.0)
        assert eng._worker.is_alive()
        # Still serving, and room again makes submits and the waiting job work.
        (data / "filler.bin").unlink()
        assert c.get("/api/v1/jobs").status_code == 200
        assert c.post("/api/v1/generation/submit", json=submit_body()).status_code == 200
        wait_job(eng, queued.json()["task_id"], JobState.completed, timeout=120)


def test_a_running_job_can_be_cancelled_while_the_data_folder_is_full(tmp_path: Path) -> None:
    with small_filesystem(tmp_path / "data", "16m") as data:
        eng = mock_engine(tmp_path, step_s=0.2)
        try:
            job = eng.submit(wan_spec(steps=100, frames=5))
            wait_job(eng, job.id, JobState.running)
            fill(data, 0)
            eng.cancel(job.id)  # the disk is full: the cancel still reaches the job
            time.sleep(1.0)
            (data / "filler.bin").unlink()
            # Once the disk has room the job's end is recorded: not left "running" for ever.
            done = wait_job(eng, job.id, JobState.cancelled, JobState.failed, timeout=60)
            assert done.state is JobState.cancelled and done.failure is None, done
        finally:
            eng.shutdown()
