"""Explainer benchmark: a 4-scene low-quality video with 1 vs 2 renders at a time.

    .venv/bin/python bench/bench_explainer.py [--repeat 2] [--json]

Everything runs in this process on the real engine with the offline planner, the same job each
time, alternating the two settings (1, 2, 2, 1, …) so that machine load hits both alike:
  * wall time from submit to completed, with MAX_CONCURRENT_RENDERS=1 and =2 (median)
  * the share of wall time in each stage (from the stage events' timestamps)
  * the cost of the sandbox itself: start-up of a trivial `python -I` under each isolation mode
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.engine_helpers import Recorder, mock_engine, wait_job  # noqa: E402
from wan_desktop.engine import JobKind, JobSpec, JobStage, JobState  # noqa: E402
from wan_desktop.explainer import ExplainerPipeline, pipeline  # noqa: E402
from wan_desktop.explainer.sandbox import (  # noqa: E402
    _bwrap_args,
    _unshare_args,
    detect_isolation,
)
from wan_desktop.explainer.settings import ExplainerSettings, SandboxMode  # noqa: E402

JOB = {
    "topic": "How a rainbow forms",
    "context": (
        "Sunlight is a mix of colours. Raindrops bend the light as it enters them. "
        "Each colour bends by a different amount, so white light splits. "
        "The light reflects inside the drop and leaves towards the viewer."
    ),
    "quality": "low",
    "scene_count": 4,
}
STAGES = tuple(pipeline.STAGES)


def one_run(renders: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="wan-bench-explainer-") as tmp:
        settings = ExplainerSettings.from_env({}, max_concurrent_renders=renders)
        engine = mock_engine(Path(tmp), pipelines=[ExplainerPipeline(settings=settings)])
        rec = Recorder(engine)
        try:
            t0 = time.perf_counter()
            job = engine.submit(JobSpec(kind=JobKind.explainer, params=JOB))
            done = wait_job(engine, job.id, JobState.completed, JobState.failed, timeout=1800)
            wall = time.perf_counter() - t0
            rec.wait(lambda: any(e.stage == "completed" for e in rec.of(JobStage, job.id)))
        finally:
            engine.shutdown()
        if done.state is not JobState.completed:
            raise SystemExit(f"the job failed: {done.failure}")
        events = rec.of(JobStage, job.id)
        at = {e.stage: e.at for e in events}
        stage_s = {
            name: at[nxt] - at[name]
            for name, nxt in zip(STAGES, [*STAGES[1:], "completed"], strict=True)
        }
        assert done.output is not None
        return {
            "wall_s": wall,
            "stage_s": stage_s,
            "video_s": done.output.duration_s,
            "sandbox": str(detect_isolation().mode),
        }


def sandbox_startup(repeat: int) -> dict[str, float]:
    """Median seconds to start `python -I -c pass` plainly and under each isolation mode."""
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="wan-bench-sandbox-") as tmp:
        prefixes: dict[str, list[str]] = {"process": []}
        makers: dict[SandboxMode, Callable[[], list[str]]] = {
            SandboxMode.unshare: _unshare_args,
            SandboxMode.bwrap: lambda: _bwrap_args(Path(tmp), ()),
        }
        for mode, make in makers.items():
            try:
                detect_isolation(mode)
            except RuntimeError:
                continue
            prefixes[str(mode)] = make()
        for name, prefix in prefixes.items():
            times = []
            for _ in range(repeat):
                t0 = time.perf_counter()
                subprocess.run([*prefix, sys.executable, "-I", "-c", "pass"], check=True)
                times.append(time.perf_counter() - t0)
            out[name] = statistics.median(times)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--repeat", type=int, default=2, help="runs per setting")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    runs: dict[int, list[dict[str, Any]]] = {1: [], 2: []}
    order = [1, 2, 2, 1] * args.repeat
    for renders in order[: 2 * args.repeat]:
        runs[renders].append(one_run(renders))
    wall = {r: statistics.median(x["wall_s"] for x in v) for r, v in runs.items()}
    shares = {}
    for r, v in runs.items():
        total = sum(sum(x["stage_s"].values()) for x in v)
        shares[r] = {s: sum(x["stage_s"][s] for x in v) / total for s in STAGES}
    startup = sandbox_startup(10)
    result = {
        "wall_s": wall,
        "speedup_2_vs_1": wall[1] / wall[2],
        "stage_share": shares,
        "video_s": runs[1][0]["video_s"],
        "sandbox": runs[1][0]["sandbox"],
        "sandbox_startup_s": startup,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(
        f"4-scene low-quality explainer ({result['video_s']:.1f} s of video, offline planner, "
        f"sandbox {result['sandbox']}), median of {args.repeat}:"
    )
    print(f"  MAX_CONCURRENT_RENDERS=1  {wall[1]:6.1f} s")
    print(
        f"  MAX_CONCURRENT_RENDERS=2  {wall[2]:6.1f} s   ({result['speedup_2_vs_1']:.2f}x faster)"
    )
    print("share of wall time per stage (1 render / 2 renders at a time):")
    for s in STAGES:
        print(f"  {s:18s} {shares[1][s] * 100:5.1f} %   {shares[2][s] * 100:5.1f} %")
    print("sandbox start-up, `python -I -c pass` (median of 10):")
    base = startup["process"]
    for name, seconds in startup.items():
        print(f"  {name:8s} {seconds * 1000:6.0f} ms   (+{(seconds - base) * 1000:.0f} ms)")


if __name__ == "__main__":
    main()
