"""Orchestrator benchmark: verified local ensure vs cp -r, and `wan models check` start-up.

    .venv/bin/python bench/bench_orchestrator.py [--size-mb 1024] [--repeat 3]

Everything is measured in the same run on the same files (page cache warm for all contenders):
  * cp -r of the model folder (no verification)
  * cp -r followed by sha256sum of every file (what a careful user would do by hand)
  * ModelStore.ensure from a local:// source, sha256 and size checked for every file
  * `wan models check --json` start-up, against a bare `python -c pass`
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.helpers import (  # noqa: E402
    SYNTH_ID,
    make_store,
    make_synth_folder,
    synth_model_entry,
    write_manifest,
)


def timed(fn: object) -> float:
    t0 = time.perf_counter()
    fn()  # type: ignore[operator]
    return time.perf_counter() - t0


def bench_ensure(size_mb: int, repeat: int) -> dict[str, float]:
    work = Path(tempfile.mkdtemp(prefix="wan-bench-", dir=os.environ.get("BENCH_DIR")))
    try:
        # A few large shards and many small files, like a diffusers repository.
        n_big = 4
        big = {
            f"transformer/diffusion_pytorch_model-{i:05d}-of-{n_big:05d}.safetensors": (
                size_mb << 20
            )
            // n_big
            for i in range(1, n_big + 1)
        }
        big |= {f"text_encoder/part-{i:03d}.json": 4096 for i in range(40)}
        synth = make_synth_folder(work / "mirror", big)
        manifest = write_manifest(
            work / "models.toml",
            {
                SYNTH_ID: synth_model_entry([f"local://{synth.path}"], synth.manifest_files()),
            },
        )
        files = [str(synth.path / p) for p in synth.files]
        total = synth.total()

        def cp() -> None:
            subprocess.run(["cp", "-r", str(synth.path), str(work / "cp")], check=True)

        def cp_and_hash() -> None:
            cp()
            copied = [str(work / "cp" / p) for p in synth.files]
            subprocess.run(["sha256sum", *copied], check=True, stdout=subprocess.DEVNULL)

        def ensure() -> None:
            make_store(work / "models", manifest).ensure(SYNTH_ID)

        def clean() -> None:
            shutil.rmtree(work / "cp", ignore_errors=True)
            shutil.rmtree(work / "models", ignore_errors=True)

        subprocess.run(["cat", *files], check=True, stdout=subprocess.DEVNULL)  # warm the cache
        results: dict[str, list[float]] = {"cp": [], "cp_sha256sum": [], "ensure": []}
        for _ in range(repeat):
            for name, fn in (("cp", cp), ("cp_sha256sum", cp_and_hash), ("ensure", ensure)):
                clean()
                subprocess.run(["sync"], check=True)
                results[name].append(timed(fn))
        clean()
        med = {k: statistics.median(v) for k, v in results.items()}
        return {
            "bytes": total,
            "cp_s": med["cp"],
            "cp_sha256sum_s": med["cp_sha256sum"],
            "ensure_s": med["ensure"],
            "ensure_mb_s": total / med["ensure"] / 2**20,
            "ratio_vs_cp": med["ensure"] / med["cp"],
            "ratio_vs_cp_sha256sum": med["ensure"] / med["cp_sha256sum"],
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)


def bench_startup(repeat: int) -> dict[str, float]:
    env = {**os.environ, "MODELS_ROOT": tempfile.mkdtemp(prefix="wan-bench-root-")}

    def run(args: list[str]) -> float:
        t0 = time.perf_counter()
        subprocess.run(args, check=True, stdout=subprocess.DEVNULL, env=env, cwd=ROOT)
        return time.perf_counter() - t0

    wan = [sys.executable, "-m", "wan_desktop.cli", "models", "check", "--json"]
    bare = [sys.executable, "-c", "pass"]
    run(wan)
    check = statistics.median(run(wan) for _ in range(repeat))
    base = statistics.median(run(bare) for _ in range(repeat))
    return {"check_s": check, "python_s": base, "ratio_vs_python": check / base}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--size-mb", type=int, default=1024)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    ens = bench_ensure(args.size_mb, args.repeat)
    start = bench_startup(max(5, args.repeat * 3))
    if args.json:
        print(json.dumps({"ensure": ens, "startup": start}, indent=2))
        return
    mib = ens["bytes"] / 2**20
    print(f"local ensure of a {mib:.0f} MiB model (median of {args.repeat}, sha256 verified):")
    print(f"  cp -r                 {ens['cp_s']:7.2f} s")
    print(f"  cp -r + sha256sum     {ens['cp_sha256sum_s']:7.2f} s")
    print(f"  wan ensure (verified) {ens['ensure_s']:7.2f} s   {ens['ensure_mb_s']:.0f} MiB/s")
    print(f"  ratio ensure / cp -r              {ens['ratio_vs_cp']:.2f}x")
    print(f"  ratio ensure / (cp -r + sha256sum) {ens['ratio_vs_cp_sha256sum']:.2f}x")
    print("start-up:")
    print(f"  wan models check      {start['check_s'] * 1000:7.0f} ms  (target < 500 ms)")
    print(f"  python -c pass        {start['python_s'] * 1000:7.0f} ms")
    print(f"  ratio                 {start['ratio_vs_python']:.2f}x")


if __name__ == "__main__":
    main()
