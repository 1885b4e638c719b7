"""GPU pool benchmark on this machine's CPUs: throughput of 2 workers vs 1, and step latency.

    .venv/bin/python bench/bench_pool.py [--jobs 8] [--rounds 3]
                                         [--resolution 320x192 --frames 17 --steps 16]

One Ray instance (CPU workers, one torch thread each) and the tiny T2V-A14B variant (built on
first use). The default job is the README's first video at 16 steps (≈ 1.8 s on a worker): a much
shorter one (160x96, 8 steps: 0.3 s) measures the fixed cost per job of Ray's and the server's
own processes, which share the same two cores here, more than the pool's scaling.
  * throughput: a pool of 1 worker and a pool of 2 workers, both started and warmed first (one
    job per worker: torch imported, model loaded), so the ratio is the steady state a server
    sees. Then --rounds rounds, each submitting --jobs jobs at once to one pool and then to the
    other, in alternating order (ABBA): on a machine other work shares, the load drifts, and a
    ratio taken within one round sees about the same load for both. Wall time from the first
    submit to the last completion; the ratio reported is the median of the rounds' ratios
  * latency: after the rounds, one more run on the 2-worker pool with a WebSocket client
    (subscribed to generation_progress) stamping each step's message on arrival; latency =
    arrival - the step's time on the worker (same clock: one machine), p50 and p99 over every
    step of every job. (Kept out of the timed rounds: its server and client use CPU that the
    1-worker rounds would not pay.)
Targets (issue 15): ratio >= 1.7x; p99 < 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import ray  # noqa: E402
import websockets  # noqa: E402

from bench.bench_api import ServerThread, ms, pct  # noqa: E402
from tests.engine_helpers import engine_settings, wait_job, wan_spec  # noqa: E402
from tests.helpers import REAL_MANIFEST  # noqa: E402
from wan_desktop.engine import Event, JobState, JobStep, simulated_profile  # noqa: E402
from wan_desktop.models.config import OrchestratorConfig  # noqa: E402
from wan_desktop.pool import PoolEngine  # noqa: E402

HARDWARE = simulated_profile(0, 16)
FINISHED = (JobState.completed, JobState.failed, JobState.cancelled, JobState.interrupted)


def make_pool(root: Path, workers: int) -> PoolEngine:
    models = OrchestratorConfig.from_env(
        {}, models_root=root / "models", manifest_path=REAL_MANIFEST, dev_mode=True
    )
    settings = engine_settings(root / f"pool-{workers}", mock=False, models=models)
    return PoolEngine(
        settings,
        workers=workers,
        hardware=HARDWARE,
        worker_hardware=HARDWARE,
        torch_threads=1,
    )


def run_all(pool: PoolEngine, specs: list[Any], stats: dict[str, float] | None = None) -> float:
    """Wall seconds for all jobs. ``stats``: the server process's CPU seconds, and how busy the
    workers were (the jobs' running time over wall time x workers: 1.0 = never idle)."""
    t0, c0, w0 = time.perf_counter(), time.process_time(), time.time()
    jobs = [pool.submit(s) for s in specs]
    done = [wait_job(pool, job.id, *FINISHED, timeout=600) for job in jobs]
    assert all(d.state is JobState.completed for d in done), [d.failure for d in done]
    wall = time.perf_counter() - t0
    if stats is not None:
        running = sum((d.finished_at or 0) - (d.started_at or 0) for d in done)
        stats["server_cpu"] = time.process_time() - c0
        stats["busy"] = running / ((time.time() - w0) * len(pool.workers()))
    return wall


async def listen(url: str, expected: int, arrivals: list[tuple[str, int, float]]) -> None:
    async with websockets.connect(url) as ws:
        await ws.recv()
        await ws.send(json.dumps({"type": "subscribe", "data": {"topic": "generation_progress"}}))
        await ws.recv()
        ready.set()
        while len(arrivals) < expected:
            msg = json.loads(await ws.recv())
            if msg["type"] == "generation_progress":
                d = msg["data"]
                arrivals.append((d["task_id"], d["current_step"], time.time()))


ready = threading.Event()


def latency_run(pool: PoolEngine, specs: list[Any], steps: int) -> dict[str, Any]:
    created: dict[tuple[str, int], float] = {}

    def on_event(event: Event) -> None:
        if isinstance(event, JobStep):
            created[(event.job_id, event.step)] = event.at

    sub = pool.subscribe(on_event, name="bench")
    arrivals: list[tuple[str, int, float]] = []
    try:
        with ServerThread(pool) as server:
            url = server.url.replace("http://", "ws://") + "/ws"
            ready.clear()
            listener = threading.Thread(
                target=lambda: asyncio.run(listen(url, len(specs) * steps, arrivals)),
                daemon=True,
            )
            listener.start()
            ready.wait(30)
            seconds = run_all(pool, specs)
            listener.join(60)
    finally:
        sub.close()
    lat = [t - created[(jid, step)] for jid, step, t in arrivals if (jid, step) in created]
    return {"seconds": seconds, "latency": lat}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--jobs", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--resolution", default="320x192")
    ap.add_argument("--frames", type=int, default=17)
    ap.add_argument("--steps", type=int, default=16)
    args = ap.parse_args()
    params = {
        "model": "T2V-A14B",
        "resolution": args.resolution,
        "frames": args.frames,
        "steps": args.steps,
    }
    load = os.getloadavg()[0]
    # Three logical CPUs: both pools exist at once (one CPU bundle per worker), one runs at a time.
    ray.init(num_cpus=3, include_dashboard=False, log_to_driver=False, configure_logging=False)
    rounds: list[dict[int, dict[str, float]]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="bench-pool-") as tmp:
            root = Path(tmp)
            pools = {1: make_pool(root, 1), 2: make_pool(root, 2)}
            try:
                for workers, pool in pools.items():  # every worker imports torch, loads once
                    run_all(pool, [wan_spec(**params, seed=100 + i) for i in range(workers)])
                for r in range(args.rounds):
                    got: dict[int, dict[str, float]] = {}
                    for workers in (1, 2) if r % 2 == 0 else (2, 1):
                        specs = [wan_spec(**params, seed=i) for i in range(args.jobs)]
                        stats: dict[str, float] = {}
                        seconds = run_all(pools[workers], specs, stats)
                        got[workers] = {"seconds": seconds, **stats}
                    rounds.append(got)
                specs = [wan_spec(**params, seed=50 + i) for i in range(args.jobs)]
                lat = latency_run(pools[2], specs, args.steps)["latency"]
            finally:
                for pool in pools.values():
                    pool.shutdown()
    finally:
        ray.shutdown()
    ratios = [g[1]["seconds"] / g[2]["seconds"] for g in rounds]
    ratio = statistics.median(ratios)
    server_ms = {
        w: 1000 * statistics.mean(g[w]["server_cpu"] for g in rounds) / args.jobs for w in (1, 2)
    }
    busy = {w: 100 * statistics.mean(g[w]["busy"] for g in rounds) for w in (1, 2)}
    print(
        f"load average {load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end "
        f"({os.cpu_count()} cores): the ratio needs two free cores; the server itself used "
        f"{server_ms[1]:.0f} ms CPU per job (1 worker), {server_ms[2]:.0f} ms (2 workers)"
    )
    print(
        f"{args.jobs} jobs ({args.resolution}, {args.frames} frames, {args.steps} steps, tiny "
        f"T2V-A14B), {len(rounds)} rounds: 1 worker "
        + ", ".join(f"{g[1]['seconds']:.1f}" for g in rounds)
        + " s, 2 workers "
        + ", ".join(f"{g[2]['seconds']:.1f}" for g in rounds)
        + " s: "
        + ", ".join(f"{x:.2f}x" for x in ratios)
        + f"; median {ratio:.2f}x throughput (target >= 1.7x); workers busy {busy[1]:.0f} % "
        f"and {busy[2]:.0f} % of the time"
    )
    print(
        f"worker step -> WebSocket client, {len(lat)} steps: {ms(lat)} "
        f"(target p99 < 50 ms; max {1000 * max(lat):.1f} ms)"
    )
    return 0 if ratio >= 1.7 and pct(lat, 0.99) < 0.05 else 1


if __name__ == "__main__":
    sys.exit(main())
