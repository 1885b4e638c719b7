"""The VRAM planner's estimates for the real models, next to the published figures (FACTS.md).

    .venv/bin/python bench/bench_planner.py

No model is loaded: the estimates come from the manifest alone, as they do at submit time before
a model is downloaded. Simulated machines: an 80 GB H100 server (256 GB RAM) and a 24 GB
RTX 4090 desktop (64 GB RAM).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.helpers import REAL_MANIFEST  # noqa: E402
from wan_desktop.engine.hardware import simulated_profile  # noqa: E402
from wan_desktop.engine.model_facts import facts_from_manifest  # noqa: E402
from wan_desktop.engine.planner import JobShape, plan, weights_gb  # noqa: E402
from wan_desktop.models import load_manifest  # noqa: E402

H100 = simulated_profile(80, 256, name="H100", compute_capability=(9, 0))
RTX4090 = simulated_profile(24, 64, name="RTX 4090", compute_capability=(8, 9))


def main() -> None:
    m = load_manifest(REAL_MANIFEST)
    a14b, i2v, ti2v = (facts_from_manifest(m.get(x)) for x in ("T2V-A14B", "I2V-A14B", "TI2V-5B"))
    rows: list[tuple[str, str, str]] = []

    def gib(params: float, bytes_per: int = 2) -> float:
        return params * bytes_per / 1024**3

    rows.append(
        (
            "A14B bf16 weights",
            "≈ 64 GiB",
            f"{gib(sum(a14b.params.values())):.1f} GiB "
            f"(as loaded, VAE in fp32: {sum(weights_gb(a14b, 'bfloat16').values()):.1f})",
        )
    )
    rows.append(
        (
            "A14B fp8 weights",
            "≈ 32 GiB (all in fp8)",
            f"{sum(weights_gb(a14b, 'bfloat16', fp8=True).values()):.1f} GiB "
            "(experts in fp8; UMT5 bf16, VAE fp32)",
        )
    )
    rows.append(
        (
            "one A14B expert on the GPU",
            "≈ 26.6 GiB",
            f"{weights_gb(a14b, 'bfloat16')['transformer']:.1f} GiB",
        )
    )
    rows.append(
        (
            "TI2V-5B bf16 weights",
            "≈ 21 GiB",
            f"{gib(sum(ti2v.params.values())):.1f} GiB "
            f"(as loaded: {sum(weights_gb(ti2v, 'bfloat16').values()):.1f})",
        )
    )
    job = JobShape(1280, 720, 81, 40)
    gpu = min(
        c.vram_gb for c in plan(a14b, "bfloat16", job, H100).candidates if c.strategy == "gpu"
    )
    chosen = plan(a14b, "bfloat16", job, H100)
    rows.append(
        (
            "A14B, 720p, 81 frames, one GPU",
            "needs 80 GB (official code)",
            f"all on the GPU {gpu:.0f} GB: too much for 80 GB; picks {chosen.strategy} "
            f"({chosen.vram_gb:.0f} GB)",
        )
    )
    ti2v_job = JobShape(1280, 704, 121, 50)
    on24 = plan(ti2v, "bfloat16", ti2v_job, RTX4090)
    rows.append(
        (
            "TI2V-5B, 720p, 121 frames, 24 GB",
            "fits with offloading",
            f"{on24.strategy}, {on24.vram_gb:.1f} GB of {on24.vram_budget_gb:.1f} usable",
        )
    )
    rows.append(
        (
            "TI2V-5B, 5 s 720p video, RTX 4090",
            "under 9 min",
            f"{on24.minutes:.1f} min ({on24.strategy})",
        )
    )
    comfy = plan(i2v, "bfloat16", JobShape(640, 640, 81, 20, image=True), RTX4090)
    rows.append(
        (
            "I2V-A14B fp8, 640x640, 24 GB (ComfyUI)",
            "≈ 513–536 s",
            f"{comfy.strategy}, {comfy.vram_gb:.1f} GB, {comfy.minutes * 60:.0f} s "
            "(assuming 81 frames, 20 steps)",
        )
    )
    step = JobShape(832, 480, 81, 1)
    one = plan(a14b, "bfloat16", step, H100)
    eleven = plan(a14b, "bfloat16", JobShape(832, 480, 81, 11), H100)
    rows.append(
        (
            "14B step, 832x480, 81 frames, H100",
            "9.77 s (diffusers)",
            f"{(eleven.minutes - one.minutes) * 6:.2f} s (the calibration point)",
        )
    )
    width = max(len(r[0]) for r in rows)
    print(f"{'what':{width}} | published (FACTS.md) | planner")
    for what, published, ours in rows:
        print(f"{what:{width}} | {published} | {ours}")


if __name__ == "__main__":
    main()
