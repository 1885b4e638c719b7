"""Step caching: each level against no cache, on every model, through the engine.

    .venv/bin/python bench/bench_speed.py [--resolution 320x192 --frames 9 --steps 16]

One process, the tiny development variants (built on first use), one engine with the model warm,
the same seed and prompt for every run. For each model (T2V-A14B, I2V-A14B with an image,
TI2V-5B) and each cache level: transformer calls and how many the cache skipped (counted by the
engine's hooks, from the job's sidecar), the CPU time spent inside the transformers' calls (a
skipped call still runs the first block; torch on one thread, timed with module hooks in the
calling thread's CPU clock: a busy shared machine stretches wall times of millisecond calls
many times over, and the job's SQLite writes and the VAE stay out of it), the job's wall time,
and the PSNR of the decoded video against the uncached one.

What the weights are: random (tiny variants, 2 layers, 2 heads). The figures show that each
level runs and skips calls on each architecture, and what that saves here; they say little about
quality. Random weights make the first block's residual move differently from a trained model's,
so how many calls a threshold skips and the PSNR are weak signals for the real models. On a
tiny model the VAE and the pipeline's own overhead weigh more than the transformer, so the time
saved is smaller than the share of calls skipped.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.wan_helpers import (  # noqa: E402
    decoded,
    forward_hook,
    real_engine,
    run_job,
    sidecar,
    write_image,
)
from wan_desktop.engine import JobState  # noqa: E402
from wan_desktop.engine.params import CHOICES  # noqa: E402

MODELS = ("T2V-A14B", "I2V-A14B", "TI2V-5B")


def psnr(a: Any, b: Any) -> float:
    """Peak signal-to-noise ratio of two uint8 videos, in dB (inf when identical)."""
    import numpy as np

    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


class TransformerClock:
    """CPU seconds of the calling thread inside every Wan transformer call while installed."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._started: float | None = None

    def __enter__(self) -> TransformerClock:
        import torch

        def after(module: Any, args: Any, output: Any) -> None:
            if type(module).__name__ == "WanTransformer3DModel" and self._started is not None:
                self.seconds += time.thread_time() - self._started
                self._started = None

        self._hooks = [
            forward_hook(self._start),
            torch.nn.modules.module.register_module_forward_hook(after),
        ]
        self._hooks[0].__enter__()
        return self

    def _start(self, module: Any, args: Any) -> None:
        self._started = time.thread_time()

    def __exit__(self, *exc: Any) -> None:
        self._hooks[0].__exit__(*exc)
        self._hooks[1].remove()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--resolution", default="320x192")
    ap.add_argument("--frames", type=int, default=9)
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--json", action="store_true", help="print the rows as JSON too")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)  # the calling thread's CPU clock then sees all the work
    shape = {"resolution": args.resolution, "frames": args.frames, "steps": args.steps}
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="wan-bench-speed-") as tmp:
        work = Path(tmp)
        image = str(write_image(work / "first.png", (160, 96), (200, 60, 30)))
        engine = real_engine(work / "models", work / "data")
        try:
            for model in MODELS:
                extra = {"image": image} if model != "T2V-A14B" else {}
                params = {"model": model, **shape, **extra, "seed": args.seed}
                base = None
                for level in CHOICES["cache"]:
                    t0 = time.monotonic()
                    with TransformerClock() as clock:
                        job = run_job(engine, timeout=600, cache=level, **params)
                    wall = time.monotonic() - t0
                    if job.state is not JobState.completed:
                        raise SystemExit(f"{model} {level}: {job.failure}")
                    meta = sidecar(job)
                    cache = meta["generation"]["accelerators"]["cache"]
                    video = decoded(job)
                    base = video if base is None else base
                    calls = cache.get("transformer_calls", 2 * args.steps)
                    rows.append(
                        {
                            "model": model,
                            "level": level,
                            "calls": calls,
                            "skipped": cache.get("skipped_calls", 0),
                            "transformer_cpu_s": round(clock.seconds, 3),
                            "job_wall_s": round(wall, 2),
                            "psnr_db": psnr(video, base),
                        }
                    )
        finally:
            engine.shutdown()
    print(
        f"tiny variants (random weights), {args.resolution}, {args.frames} frames, "
        f"{args.steps} steps, CFG on (2 transformer calls a step); PSNR of the decoded video "
        "against the same model's uncached one (random weights: a weak signal of quality)"
    )
    head = ("model", "level", "calls", "skipped", "transformer CPU s", "vs off", "job s", "PSNR dB")
    print(
        f"{head[0]:<9} {head[1]:<7} {head[2]:>5} {head[3]:>8} {head[4]:>17} {head[5]:>7} "
        f"{head[6]:>6} {head[7]:>8}"
    )
    off = {r["model"]: r["transformer_cpu_s"] for r in rows if r["level"] == CHOICES["cache"][0]}
    for r in rows:
        ratio = r["transformer_cpu_s"] / off[r["model"]] if off[r["model"]] else math.nan
        db = "inf" if math.isinf(r["psnr_db"]) else f"{r['psnr_db']:.1f}"
        print(
            f"{r['model']:<9} {r['level']:<7} {r['calls']:>5} {r['skipped']:>8} "
            f"{r['transformer_cpu_s']:>17.3f} {ratio:>6.2f}x {r['job_wall_s']:>6.2f} {db:>8}"
        )
    if args.json:
        print(json.dumps(rows, indent=2, default=str))


if __name__ == "__main__":
    main()
