"""The GPU pool (``wan serve --pool``) on real Ray, with the tiny development variants.

One Ray instance for the module (``num_cpus=2, num_gpus=2``: Ray's fake GPUs on this CPU box, so
the workers are scheduled exactly as on a two-GPU machine and run on the CPU) and one pool of two
workers for every test: starting Ray costs seconds.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.api_helpers import api_client
from tests.engine_helpers import Recorder, engine_settings, wait_job
from tests.helpers import REAL_MANIFEST
from tests.test_api_ws import recv_until, subscribed
from tests.wan_helpers import decoded, real_engine, sidecar, small_spec
from wan_desktop.engine import (
    EngineError,
    EngineSettings,
    FailureCategory,
    InvalidInputError,
    JobStage,
    JobState,
    JobStateChanged,
    JobStep,
    ModelUnloaded,
    simulated_profile,
)
from wan_desktop.engine.workers import WorkerState
from wan_desktop.models.config import OrchestratorConfig
from wan_desktop.pool import PoolEngine
from wan_desktop.pool.worker import node_settings

ray = pytest.importorskip("ray", reason="the pool extra (ray) is installed by setup.sh --dev")
pytest.importorskip("diffusers")

HARDWARE = simulated_profile(0, 16)  # the same plan (strategy) on the workers as locally
FINISHED = (JobState.completed, JobState.failed, JobState.cancelled, JobState.interrupted)


def dev_settings(models_root: Path, data_root: Path) -> EngineSettings:
    models = OrchestratorConfig.from_env(
        {}, models_root=models_root, manifest_path=REAL_MANIFEST, dev_mode=True
    )
    return engine_settings(data_root, mock=False, models=models)


@pytest.fixture(scope="module")
def cluster() -> Iterator[None]:
    ray.init(
        num_cpus=2,
        num_gpus=2,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
    )
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def pool(
    cluster: None, tiny_models_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PoolEngine]:
    eng = PoolEngine(
        dev_settings(tiny_models_root, tmp_path_factory.mktemp("pool")),
        hardware=HARDWARE,
        worker_hardware=HARDWARE,
        torch_threads=1,
    )
    yield eng
    eng.shutdown()


def finished(eng: Any, job_id: str, timeout: float = 240) -> Any:
    return wait_job(eng, job_id, *FINISHED, timeout=timeout)


def test_a_worker_that_cannot_start_is_a_clear_error(cluster: None, tmp_path: Path) -> None:
    # First in the module: the shared pool does not hold the cluster's GPUs yet.
    with pytest.raises(EngineError, match="a pool worker did not start") as err:
        PoolEngine(
            dev_settings(tmp_path / "models", tmp_path / "data"),
            workers=1,
            hardware=HARDWARE,
            plugins=("wan_desktop.no_such_plugin",),
        )
    assert "no_such_plugin" in str(err.value)
    deadline = time.monotonic() + 60  # Ray frees a killed actor's GPU a moment later
    while ray.available_resources().get("GPU") != 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert ray.available_resources().get("GPU") == 2, "its actor is gone"


def test_a_one_worker_pool_offers_no_multi_gpu_job(cluster: None, tmp_path: Path) -> None:
    # Before the shared pool holds the cluster's GPUs.
    eng = PoolEngine(
        dev_settings(tmp_path / "models", tmp_path / "data"),
        workers=1,
        hardware=HARDWARE,
        worker_hardware=HARDWARE,
        torch_threads=1,
    )
    try:
        assert eng.gpus_per_machine() == 1
        with pytest.raises(InvalidInputError) as err:
            eng.submit(small_spec(gpus=2))
        assert err.value.errors["gpus"] == "is 2; this pool has at most 1 on one machine"
        (group,) = eng.placement_groups()
        assert ray.util.placement_group_table(group)["strategy"] == "STRICT_PACK"
    finally:
        eng.shutdown()
    deadline = time.monotonic() + 60  # its placement group gives the GPU back
    while ray.available_resources().get("GPU") != 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert ray.available_resources().get("GPU") == 2


def test_the_workers_of_a_machine_live_in_one_strict_pack_placement_group(
    pool: PoolEngine,
) -> None:
    (group,) = pool.placement_groups()
    table = ray.util.placement_group_table(group)
    assert table["strategy"] == "STRICT_PACK" and table["state"] == "CREATED"
    assert list(table["bundles"].values()) == [{"CPU": 1.0, "GPU": 1.0}] * 2
    assert len(set(table["bundles_to_node_id"].values())) == 1, "all bundles on one node"
    infos = [ray.get(pool.actor(w.name).info.remote(), timeout=60) for w in pool.workers()]
    assert {i["placement_group"] for i in infos} == {group.id.hex()}
    assert pool.gpus_per_machine() == 2


def test_one_worker_per_gpu_that_ray_sees(pool: PoolEngine) -> None:
    workers = pool.workers()
    assert [w.name for w in workers] == ["worker-1", "worker-2"]
    assert all(w.state is WorkerState.idle and w.device == "cpu" and w.node for w in workers)


def test_a_worker_on_another_node_keeps_its_models_where_that_node_says(tmp_path: Path) -> None:
    server = dev_settings(tmp_path / "server-models", tmp_path / "data")
    env = {"MODELS_ROOT": str(tmp_path / "node-models"), "WAN_LOCAL_MIRROR": str(tmp_path / "m")}
    same = node_settings(server, node="a", home="a", environ=env)
    assert same == server, "on the server's node the server's settings hold"
    other = node_settings(server, node="b", home="a", environ=env)
    assert other.models.models_root == tmp_path / "node-models"
    assert other.models.local_mirror == tmp_path / "m"
    assert other.outputs_dir == server.outputs_dir and other.models.dev_mode
    assert node_settings(server, node="b", home="a", environ={}) == server


def test_two_jobs_run_side_by_side_each_identical_to_the_local_engine(
    pool: PoolEngine, tiny_models_root: Path, tmp_path: Path
) -> None:
    import torch

    jobs = {
        "t2v": {"model": "T2V-A14B", "seed": 3, "prompt": "a heron in the reeds"},
        "ti2v": {"model": "TI2V-5B", "seed": 4, "prompt": "waves on a pebble beach"},
    }
    submitted = {k: pool.submit(small_spec(**p)) for k, p in jobs.items()}
    on_pool = {k: finished(pool, j.id) for k, j in submitted.items()}
    assert all(j.state is JobState.completed for j in on_pool.values()), [
        j.failure for j in on_pool.values()
    ]
    a, b = on_pool["t2v"], on_pool["ti2v"]
    assert a.started_at < b.finished_at and b.started_at < a.finished_at, "ran side by side"
    held = {w.loaded_model for w in pool.workers()}
    assert held == {"t2v-A14B@2.2.0 (tiny)", "ti2v-5B@2.2.0 (tiny)"}, "each kept its model warm"

    # The same jobs on the local engine, with the workers' one torch thread.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    local = real_engine(tiny_models_root, tmp_path, hardware=HARDWARE)
    try:
        for key, params in jobs.items():
            here = finished(local, local.submit(small_spec(**params)).id)
            assert here.state is JobState.completed, here.failure
            assert np.array_equal(decoded(here), decoded(on_pool[key])), key
            assert (
                sidecar(here)["memory"]["strategy"] == sidecar(on_pool[key])["memory"]["strategy"]
            )
    finally:
        local.shutdown()
        torch.set_num_threads(threads)

    # A job goes to the worker that holds its model warm: no load at all.
    again = finished(pool, pool.submit(small_spec(**{**jobs["ti2v"], "seed": 5})).id)
    assert again.state is JobState.completed, again.failure
    assert sidecar(again)["timings_s"]["warm"] is True
    assert Path(again.output.video).parent == pool.settings.outputs_dir, "the server keeps outputs"


def test_a_two_gpu_job_makes_the_frames_of_a_one_gpu_job(
    pool: PoolEngine, tiny_models_root: Path, tmp_path: Path
) -> None:
    params = {"model": "T2V-A14B", "seed": 7, "prompt": "a kite over the dunes"}
    with pytest.raises(InvalidInputError) as err:  # the tiny variant's 2 heads, 72 tokens
        pool.submit(small_spec(**params, gpus=4))
    assert err.value.errors["gpus"].endswith("use one of 1, 2")
    with pytest.raises(InvalidInputError) as err:  # 7 splits neither
        pool.submit(small_spec(**params, gpus=7))
    assert err.value.errors["gpus"].endswith("use one of 1, 2")
    with api_client(tmp_path, engine=pool) as (client, _):
        r = client.post(
            "/api/v1/generation/submit",
            json={"model_type": "T2V-A14B", "prompt": "a kite", "resolution": "854x480", "gpus": 3},
        )
    assert r.status_code == 422 and "use one of 1, 2" in r.text, r.text

    rec = Recorder(pool)
    try:
        two = finished(pool, pool.submit(small_spec(**params, gpus=2)).id)
        assert two.state is JobState.completed, two.failure
        assert [e.step for e in rec.of(JobStep, two.id)] == [1, 2, 3, 4], "rank 0 reports"
    finally:
        rec.sub.close()
    assert two.params["gpus"] == 2 and sidecar(two)["params"]["gpus"] == 2
    # The job records its degree and the plan of each of its GPUs.
    assert two.estimate["gpus"] == 2 and two.memory_plan["gpus"] == 2
    assert "per GPU, on each of 2 GPUs" in two.memory_plan["summary"]
    lines = [line["message"] for line in pool.logs(two.id)]
    assert any("Ulysses context parallelism of degree 2" in line for line in lines), lines
    deadline = time.monotonic() + 60  # the other rank finishes its copy of the job just after
    while pool.loaded_models() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert pool.loaded_models() == [], "a split model is not kept warm"
    one = finished(pool, pool.submit(small_spec(**params)).id)
    assert one.state is JobState.completed, one.failure
    assert np.array_equal(decoded(two), decoded(one))

    # Without a pool the job is refused at once: nothing is queued, no model loads.
    local = real_engine(tiny_models_root, tmp_path, hardware=HARDWARE)
    try:
        with pytest.raises(InvalidInputError) as err:
            local.submit(small_spec(**params, gpus=2))
        assert "wan serve --pool" in err.value.errors["gpus"]
        assert local.store.count() == 0 and local.loaded_models() == []
    finally:
        local.shutdown()


def test_pool_events_reach_a_websocket_client_in_order(pool: PoolEngine, tmp_path: Path) -> None:
    with api_client(tmp_path, engine=pool) as (client, _):
        answer = client.get("/api/v1/system/workers").json()
        assert answer["total"] == 2 and {w["name"] for w in answer["workers"]} == {
            "worker-1",
            "worker-2",
        }
        with client.websocket_connect("/ws") as ws:
            subscribed(ws, "generation_progress")
            r = client.post(
                "/api/v1/generation/submit",
                json={
                    "model_type": "T2V-A14B",
                    "prompt": "a lighthouse at night",
                    "steps": 6,
                    "num_frames": 9,
                    "resolution": "854x480",  # development mode makes it small
                    "seed": 9,
                },
            )
            assert r.status_code == 200, r.text
            jid = r.json()["task_id"]
            got = recv_until(
                ws,
                lambda m: m["type"] == "task_update" and m["data"]["status"] == "completed",
            )
    progress = [m["data"] for m in got if m["type"] == "generation_progress"]
    assert [p["current_step"] for p in progress] == [1, 2, 3, 4, 5, 6]
    assert all(p["task_id"] == jid for p in progress)
    statuses = [m["data"]["status"] for m in got if m["type"] == "task_update"]
    assert statuses[0] == "pending" and statuses[-1] == "completed"
    assert statuses.index("processing") < statuses.index("completed")
    stages = [m["data"]["stage"] for m in got if m["type"] == "detailed_generation_progress"]
    assert stages[0] == "initializing" and stages[-1] == "completed"
    assert stages.index("generating") < stages.index("saving")
    assert pool.get(jid).output is not None


def test_pool_events_reach_the_desktop_apps_bridge_in_order(pool: PoolEngine, qtbot: Any) -> None:
    from wan_desktop.ui.bridge import EngineBridge

    bridge = EngineBridge(pool)
    seen: list[tuple[str, Any]] = []
    bridge.job_changed.connect(lambda e: seen.append(("state", e.job.state)))
    bridge.job_stage.connect(lambda e: seen.append(("stage", e.stage)))
    bridge.job_step.connect(lambda e: seen.append(("step", e.step)))
    try:
        job = pool.submit(small_spec(steps=6, seed=21))
        qtbot.waitUntil(lambda: ("state", JobState.completed) in seen, timeout=240_000)
    finally:
        bridge.close()
    assert pool.get(job.id).state is JobState.completed
    states = [v for k, v in seen if k == "state"]
    order = list(JobState)
    assert states == sorted(states, key=order.index), "states never go back"
    assert states[0] is JobState.queued and states[-1] is JobState.completed
    steps = [v for k, v in seen if k == "step"]
    assert steps == sorted(set(steps)) and steps[-1] == 6, "newer steps may replace older ones"
    stages = [v for k, v in seen if k == "stage"]
    assert stages[0] == "initializing" and stages[-1] == "completed"
    first_step = next(i for i, (k, _) in enumerate(seen) if k == "step")
    assert seen.index(("stage", "generating")) < first_step < seen.index(("stage", "saving"))


def test_the_generate_form_offers_the_pools_gpus_for_one_video(
    pool: PoolEngine, qtbot: Any, tmp_path: Path
) -> None:
    from wan_desktop.ui.config import AppSettings, SettingsStore
    from wan_desktop.ui.panels.generate import GeneratePanel
    from wan_desktop.ui.state import Studio

    studio = Studio(pool, SettingsStore(tmp_path / "config"), AppSettings(welcomed=True))
    try:
        gen = GeneratePanel(studio)
        qtbot.addWidget(gen)
        assert not gen.gpus_field.isHidden(), "two workers of one machine: the choice is there"
        assert [gen.gpus.itemData(i) for i in range(gen.gpus.count())] == [1, 2]
        gen.select_model("T2V-A14B")
        gen.prompt.setPlainText("a kite over the dunes")
        gen.resolution.setCurrentText("854x480")  # development mode makes it small
        gen.steps.setValue(4)
        gen.frames.setValue(9)
        assert "gpus" not in gen.params(), "one GPU unless chosen"
        gen.gpus.setCurrentIndex(gen.gpus.findData(2))
        job = gen.submit()
        assert job is not None and job.params["gpus"] == 2
        done = finished(pool, job.id)
        assert done.state is JobState.completed, done.failure
    finally:
        studio.close()


def test_cancel_reaches_the_running_worker_within_one_step(pool: PoolEngine) -> None:
    rec = Recorder(pool)
    try:
        job = pool.submit(small_spec(steps=100, resolution="320x192", frames=17))
        rec.wait(lambda: len(rec.of(JobStep, job.id)) >= 2, timeout=240)
        pool.cancel(job.id)
        seen = len(rec.of(JobStep, job.id))
        final = finished(pool, job.id, timeout=60)
        assert final.state is JobState.cancelled and final.output is None
        assert len(rec.of(JobStep, job.id)) <= seen + 1
        assert final.step is not None and final.step < 100
    finally:
        rec.sub.close()


def test_unload_frees_the_models_of_every_worker(pool: PoolEngine) -> None:
    rec = Recorder(pool)
    try:
        for seed, model in ((31, "T2V-A14B"), (32, "TI2V-5B")):
            job = finished(pool, pool.submit(small_spec(model=model, seed=seed)).id)
            assert job.state is JobState.completed, job.failure
        assert pool.loaded_models()
        # Both jobs may have run on one worker (the second model then replaced the first):
        # what counts is what the unload itself frees.
        before = len(rec.of(ModelUnloaded))
        pool.unload()
        rec.wait(lambda: not pool.loaded_models(), timeout=60)
        assert all(w.loaded_model is None for w in pool.workers())
        assert {e.reason for e in rec.of(ModelUnloaded)[before:]} == {"requested"}
    finally:
        rec.sub.close()


def test_cancel_stops_every_rank_of_a_multi_gpu_job(pool: PoolEngine) -> None:
    rec = Recorder(pool)
    try:
        job = pool.submit(small_spec(steps=100, resolution="160x96", gpus=2, seed=41))
        rec.wait(lambda: len(rec.of(JobStep, job.id)) >= 2, timeout=240)
        team = [w.name for w in pool.workers() if w.current_job == job.id]
        assert len(team) == 2, "its team: the two workers of the one placement group"
        (group,) = pool.placement_groups()
        for name in team:
            info = ray.get(pool.actor(name).info.remote(), timeout=60)
            assert info["placement_group"] == group.id.hex()
        pool.cancel(job.id)
        assert finished(pool, job.id, timeout=60).state is JobState.cancelled
        deadline = time.monotonic() + 60  # well under the group's 120 s timeout
        while any(w.state is not WorkerState.idle for w in pool.workers()):
            assert time.monotonic() < deadline, pool.workers()
            time.sleep(0.1)
        after = finished(pool, pool.submit(small_spec(seed=42)).id)
        assert after.state is JobState.completed, after.failure
    finally:
        rec.sub.close()


def _kill_its_worker(pool: PoolEngine, rec: Recorder, job_id: str) -> str:
    rec.wait(lambda: len(rec.of(JobStep, job_id)) >= 2, timeout=240)
    (name,) = [w.name for w in pool.workers() if w.current_job == job_id]
    ray.kill(pool.actor(name), no_restart=False)  # its process dies; Ray starts it again
    return name


def test_a_killed_worker_interrupts_its_job_and_the_pool_recovers(pool: PoolEngine) -> None:
    rec = Recorder(pool)
    try:
        total = pool.store.count()
        job = pool.submit(small_spec(steps=100, resolution="160x96", seed=11))
        name = _kill_its_worker(pool, rec, job.id)
        lost = finished(pool, job.id, timeout=60)
        assert lost.state is JobState.interrupted
        assert lost.failure is not None and lost.failure.category is FailureCategory.interrupted
        assert name in lost.failure.message and lost.failure.suggestions == ("retry the job",)
        assert any("stopped while running" in line["message"] for line in pool.logs(job.id))

        # The retry policy decides: retried by hand here, it completes on a worker.
        again = finished(pool, pool.retry(job.id).id)
        assert again.state is JobState.completed, again.failure
        restarted = {w.name: w for w in pool.workers()}[name]
        deadline = time.monotonic() + 60
        while restarted.state is not WorkerState.idle and time.monotonic() < deadline:
            time.sleep(0.2)
            restarted = {w.name: w for w in pool.workers()}[name]
        assert restarted.state is WorkerState.idle and restarted.restarts == 1

        # With the setting on, the killed job goes back to the queue and completes.
        pool.settings = replace(pool.settings, retry_interrupted=True)
        try:
            requeued = pool.submit(small_spec(steps=100, resolution="160x96", seed=12))
            _kill_its_worker(pool, rec, requeued.id)
            done = finished(pool, requeued.id)
        finally:
            pool.settings = replace(pool.settings, retry_interrupted=False)
        assert done.state is JobState.completed, done.failure
        states = rec.states(requeued.id)
        assert JobState.queued in states[states.index(JobState.running) :], states
        assert any("re-queued" in line["message"] for line in pool.logs(requeued.id))
        assert [e.stage for e in rec.of(JobStage, requeued.id)].count("initializing") == 2
        assert pool.store.count() == total + 3, "every job is still in the store"
        assert sum(w.restarts for w in pool.workers()) == 2
        assert rec.of(JobStateChanged, requeued.id)[-1].job.output is not None
    finally:
        rec.sub.close()
