"""Engine benchmark: overhead of a job through the engine, and how much a warm model saves.

    .venv/bin/python bench/bench_engine.py [--repeat 5] [--resolution 320x192 --frames 17 --steps 8]

Everything runs in one process on the tiny T2V-A14B variant (built on first use), same parameters:
  * warm model: submit → first denoising step for the first job (torch and diffusers imported
    and the model loaded on the way, as in a fresh app) and for the second job on the loaded
    model; then the same for a second model (imports done: loading only)
  * engine overhead: a whole job through the engine (queue, events, SQLite, MP4 + thumbnail +
    sidecar) vs the bare diffusers call followed by the same MP4 writer, warm on both sides,
    alternating, a new prompt each round (so the engine's prompt cache does not help), median
    and best of --repeat, wall and process CPU time (CPU time is what a busy machine distorts
    least)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
WAN = (sys.executable, "-m", "wan_desktop.cli")

from tests.engine_helpers import wan_spec  # noqa: E402
from tests.wan_helpers import direct_call, real_engine  # noqa: E402
from wan_desktop.engine import Engine, Event, JobState, JobStateChanged, JobStep  # noqa: E402


def submit_to_first_step(engine: Engine, params: dict[str, Any]) -> float:
    """Seconds from submit to the first denoising step (one job at a time runs here)."""
    stamp: list[float] = []
    seen = threading.Event()

    def on_event(event: Event) -> None:
        if isinstance(event, JobStep) and not stamp:
            stamp.append(event.at)
            seen.set()

    sub = engine.subscribe(on_event, name="bench")
    t0 = time.time()
    run(engine, params)
    seen.wait(10)
    sub.close()
    return stamp[0] - t0


def run(engine: Engine, params: dict[str, Any]) -> Any:
    """Submit and block until the job finishes, woken by its state event (no polling: a poll
    loop would cost CPU and skew the comparison)."""
    finished = threading.Event()
    ids: list[str] = []

    def on_event(event: Event) -> None:
        if isinstance(event, JobStateChanged) and event.job.finished and event.job.id in ids:
            finished.set()

    sub = engine.subscribe(on_event, name="bench-wait")
    try:
        job = engine.submit(wan_spec(**params))
        ids.append(job.id)
        while not finished.wait(1.0) and not engine.get(job.id).finished:
            pass
    finally:
        sub.close()
    job = engine.get(job.id)
    if job.state is not JobState.completed:
        raise SystemExit(f"job {job.id} {job.state}: {job.failure}")
    return job


def engine_job(engine: Engine, params: dict[str, Any]) -> tuple[float, float, float]:
    """(wall seconds, CPU seconds of the whole process, seconds of the diffusers call)."""
    t0, c0 = time.perf_counter(), time.process_time()
    done = run(engine, params)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    timings = json.loads(Path(done.output.sidecar).read_text())["timings_s"]
    return wall, cpu, timings["generate"] + timings["prompt"]


def bare_call(pipe: Any, params: dict[str, Any], out: Path) -> tuple[float, float, float]:
    """(wall seconds, CPU seconds, seconds of the diffusers call)."""
    from wan_desktop.engine.outputs import write_mp4

    t0, c0 = time.perf_counter(), time.process_time()
    frames = direct_call(pipe, params)
    call = time.perf_counter() - t0
    write_mp4(frames, out, params["fps"])
    return time.perf_counter() - t0, time.process_time() - c0, call


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--resolution", default="320x192")
    ap.add_argument("--frames", type=int, default=17)
    ap.add_argument("--steps", type=int, default=8)
    args = ap.parse_args()
    params = {
        "model": "T2V-A14B",
        "prompt": "a red fox running through fresh snow at dawn",
        "resolution": args.resolution,
        "frames": args.frames,
        "steps": args.steps,
        "seed": 42,
    }
    with tempfile.TemporaryDirectory(prefix="wan-bench-") as tmp:
        work = Path(tmp)
        # Build the tiny models in another process, so this one starts without torch.
        subprocess.run(
            [*WAN, "--dev", "models", "ensure", "--only", "T2V-A14B", "TI2V-5B", "--json"],
            env={**os.environ, "MODELS_ROOT": str(work / "models"), "PYTHONPATH": str(ROOT)},
            check=True,
            capture_output=True,
        )
        assert "torch" not in sys.modules
        engine = real_engine(work / "models", work / "data")
        try:
            cold = submit_to_first_step(engine, params)
            # Switching models: each job loads its model (imports done: loading only).
            other = {**params, "model": "TI2V-5B"}
            loads = [
                submit_to_first_step(engine, {**(other if i % 2 == 0 else params), "seed": i})
                for i in range(args.repeat // 2 * 2)
            ]
            # Then the same model again and again, each with a new prompt (the prompt cache
            # does not flatter them).
            warm = [
                submit_to_first_step(engine, {**params, "prompt": f"a heron, take {i}"})
                for i in range(args.repeat)
            ]
            load, hot = statistics.median(loads), statistics.median(warm)
            print(f"submit → first step, median (seconds); {args.repeat} runs")
            print(f"  first job, fresh process (imports + load): {cold:.3f}")
            print(f"  first job of a model (load only):          {load:.3f}")
            print(
                f"  next job on the loaded model:              {hot:.3f}  "
                f"({hot / cold:.1%} of the first, {hot / load:.1%} of a load)"
            )

            submit_to_first_step(engine, params)  # back to T2V, warm
            job = engine.jobs(limit=1)[0]
            from wan_desktop.engine.pipelines import wan_load

            pipe = wan_load.load_pipeline(engine.models.model_path("T2V-A14B"), "float32")
            p = dict(job.params)
            bare_call(pipe, p, work / "warmup.mp4")
            ours: list[tuple[float, float, float]] = []
            bare: list[tuple[float, float, float]] = []
            for i in range(args.repeat):
                # A new prompt each time: the engine's prompt cache must not win the race.
                prompt = f"{params['prompt']}, take {i}"
                ours.append(engine_job(engine, {**params, "prompt": prompt, "seed": p["seed"]}))
                bare.append(bare_call(pipe, {**p, "prompt": prompt}, work / f"bare{i}.mp4"))
            print(
                f"job {p['width']}x{p['height']}, {p['frames']} frames, {p['steps']} steps, "
                f"{args.repeat} runs each, alternating (load average {os.getloadavg()[0]:.1f} "
                f"on {os.cpu_count()} cores)"
            )
            for label, pick in (("median", statistics.median), ("best", min)):
                for k, what in enumerate(("wall", "CPU")):
                    o, b = pick(x[k] for x in ours), pick(x[k] for x in bare)
                    print(
                        f"  {label:6} {what:4}: bare diffusers call + MP4 {b:.3f} s, "
                        f"through the engine {o:.3f} s ({o / b:.3f}x)"
                    )
            inside = statistics.median(x[0] - x[2] for x in ours)
            around = statistics.median(x[0] - x[2] for x in bare)
            print(
                f"  around the diffusers call (median): bare {around:.3f} s (the MP4), "
                f"engine {inside:.3f} s (queue, events, SQLite, MP4, thumbnail, sidecar)"
            )
        finally:
            engine.shutdown()


if __name__ == "__main__":
    main()
