"""``wan serve --pool`` and ``wan pool status`` as a user runs them: real processes, real Ray.

The server starts its own Ray instance (one for this module) and must take it down when it stops.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tests.api_helpers import api_client
from tests.engine_helpers import wait_job, wan_spec
from tests.helpers import REAL_MANIFEST, ROOT
from wan_desktop.engine import JobState

pytest.importorskip("ray", reason="the pool extra (ray) is installed by setup.sh --dev")

WAN = (sys.executable, "-m", "wan_desktop.cli")


def wan(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*WAN, *args], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )


def test_wan_serve_pool_runs_jobs_on_workers_that_wan_pool_status_lists(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "WAN_DATA_DIR": str(tmp_path / "data"),
        "MODELS_ROOT": str(tmp_path / "models"),
        "WAN_MODELS_MANIFEST": str(REAL_MANIFEST),
        "WAN_HARDWARE_PROFILE": json.dumps(
            {"device": "cpu", "gpu_name": None, "vram_total_mb": 0, "ram_total_mb": 8192}
        ),
    }
    cmd = [*WAN, "serve", "--pool", "--workers", "2", "--mock", "--port", "0"]
    proc = subprocess.Popen(
        [*cmd, "--log-level", "warning"], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stderr is not None
        lines: list[str] = []
        while not lines or "Wan Desktop API at" not in lines[-1]:
            line = proc.stderr.readline()
            assert line, "the server stopped before serving:\n" + "".join(lines)
            lines.append(line)
        assert "pool of 2 Ray workers" in lines[-1], lines[-1]
        url = lines[-1].split(" at ", 1)[1].split(" ", 1)[0].rstrip(";")
        ray_processes = psutil.Process(proc.pid).children(recursive=True)
        assert ray_processes, "Ray runs beside the server"

        status = wan("pool", "status", "--url", url, "--json")
        assert status.returncode == 0, status.stderr
        workers = json.loads(status.stdout)["workers"]
        assert [(w["name"], w["state"]) for w in workers] == [
            ("worker-1", "idle"),
            ("worker-2", "idle"),
        ]
        assert all(w["node"] and w["device"] == "cpu" for w in workers)

        r = httpx.post(
            f"{url}/api/v1/generation/submit",
            json={
                "model_type": "T2V-A14B",
                "prompt": "a fox",
                "steps": 3,
                "num_frames": 5,
                "resolution": "854x480",
            },
        )
        assert r.status_code == 200, r.text
        jid = r.json()["task_id"]
        deadline = time.monotonic() + 60
        while (job := httpx.get(f"{url}/api/v1/jobs/{jid}").json())["status"] != "completed":
            assert time.monotonic() < deadline, job
            time.sleep(0.2)
        video = httpx.get(f"{url}/api/v1/outputs/{jid}/download")
        assert video.status_code == 200 and video.content[4:8] == b"ftyp", "an MP4 on the server"

        table = wan("pool", "status", "--url", url)
        assert table.returncode == 0, table.stderr
        assert "worker-1" in table.stdout and "worker-2" in table.stdout
        assert "2 workers, 0 busy" in table.stdout

        proc.send_signal(2)  # Ctrl-C: the server stops, and so does its Ray instance
        assert proc.wait(timeout=60) == 130
        rest = proc.stderr.read()
        assert "Traceback" not in rest, rest
        _, alive = psutil.wait_procs(ray_processes, timeout=30)
        assert not alive, [p.pid for p in alive]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_bad_pool_settings_and_an_unreachable_server_say_what_to_do() -> None:
    bad = wan("serve", "--pool", "--workers", "0", "--port", "0")
    assert bad.returncode == 2 and "--workers must be 1 or more" in bad.stderr, bad.stderr
    down = wan("pool", "status", "--url", "http://127.0.0.1:9", "--json")
    assert down.returncode == 1
    answer = json.loads(down.stdout)
    assert answer["ok"] is False and "wan serve --pool" in answer["error"]["fix"]


def test_a_server_without_a_pool_lists_its_one_local_worker(tmp_path: Path) -> None:
    with api_client(tmp_path, step_s=0.05) as (client, engine):
        (idle,) = client.get("/api/v1/system/workers").json()["workers"]
        assert idle["name"] == "local" and idle["state"] == "idle" and idle["current_job"] is None
        assert idle["device"] == "cpu" and idle["node"]
        job = engine.submit(wan_spec(steps=100))
        wait_job(engine, job.id, JobState.running)
        (busy,) = client.get("/api/v1/system/workers").json()["workers"]
        assert busy["state"] == "busy" and busy["current_job"] == job.id
        engine.cancel(job.id)


def test_the_app_connected_to_a_pool_server_offers_its_gpus_for_one_video(
    tmp_path: Path, qtbot: Any
) -> None:
    """The hello says how many GPUs one job may use: the Generate form of an app connected to
    ``wan serve --pool --workers 2`` offers two, and the server takes a two-GPU job."""
    from tests.api_helpers import WanServe
    from tests.remote_helpers import TOKEN, remote_engine
    from wan_desktop.ui.config import AppSettings, SettingsStore
    from wan_desktop.ui.panels.generate import GeneratePanel
    from wan_desktop.ui.state import Studio

    env = {"WAN_API_TOKEN": TOKEN, "WAN_DEV_MODE": "1"}
    with (
        WanServe(tmp_path / "server", "--pool", "--workers", "2", env=env) as server,
        remote_engine(server, tmp_path / "app") as engine,
    ):
        ray_processes = psutil.Process(server.proc.pid).children(recursive=True)
        assert engine.gpus_per_machine() == 2
        studio = Studio(engine, SettingsStore(tmp_path / "config"), AppSettings(welcomed=True))
        try:
            gen = GeneratePanel(studio)
            qtbot.addWidget(gen)
            assert not gen.gpus_field.isHidden(), "two workers of one machine: the choice is there"
            assert [gen.gpus.itemData(i) for i in range(gen.gpus.count())] == [1, 2]
            gen.select_model("T2V-A14B")
            gen.prompt.setPlainText("a kite over the dunes")
            gen.steps.setValue(2)
            gen.frames.setValue(5)
            gen.gpus.setCurrentIndex(gen.gpus.findData(2))
            job = gen.submit()
            assert job is not None and job.params["gpus"] == 2, gen.general_error.text()
        finally:
            studio.close()
        code, rest = server.stop(60)  # Ctrl-C: the server takes its Ray instance down
        assert code == 130 and "Traceback" not in rest, rest
        _, alive = psutil.wait_procs(ray_processes, timeout=30)
        assert not alive, [p.pid for p in alive]
