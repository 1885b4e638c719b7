"""Transfer benchmark: our ensure against huggingface_hub and boto3, and what hashing costs.

    .venv/bin/python bench/bench_transfers.py [--size-mb 1536] [--repeat 3] [--json]

All contenders run in the same session on the same files, each as a fresh process (so start-up
counts for everyone), with the server's files in the page cache:
  * From the local Hub-compatible server (tests/hubserver.py, 127.0.0.1): a repository of a few
    large shards and many small files. ``huggingface_hub.snapshot_download`` (HF_ENDPOINT set to
    the server, no Xet) vs ``wan models ensure`` (sha256 of every file verified), and our ensure
    with hashing switched off (the cost of verification).
  * From SeaweedFS (a real S3 server on 127.0.0.1): boto3 ``download_file`` of every object with
    a tuned ``TransferConfig`` (no verification) vs our ensure from ``s3://`` (verified).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.helpers import SYNTH_ID, synth_model_entry, write_manifest  # noqa: E402
from tests.hubserver import DiskContent, HubServer  # noqa: E402
from tests.seaweedfs import SeaweedS3  # noqa: E402

REPO = "bench/Synth-Diffusers"
MIB = 1 << 20

OURS = """
import os, sys
from pathlib import Path
from wan_desktop.models.config import OrchestratorConfig
from wan_desktop.models.store import ModelStore
cfg = OrchestratorConfig.from_env(verify_sha256=sys.argv[1] == "1")
ModelStore(cfg).ensure(sys.argv[2])
"""

SNAPSHOT = """
import sys
from huggingface_hub import snapshot_download
snapshot_download(sys.argv[1], revision="main", local_dir=sys.argv[2], cache_dir=sys.argv[3],
                  allow_patterns=sys.argv[4].split(","), max_workers=8)
"""

BOTO = """
import json, os, sys
from concurrent.futures import ThreadPoolExecutor
import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
c = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name="us-east-1",
                 config=Config(signature_version="s3v4", s3={"addressing_style": "path"},
                               max_pool_connections=32))
tc = TransferConfig(multipart_threshold=16 * 2**20, multipart_chunksize=32 * 2**20,
                    max_concurrency=8, use_threads=True)
bucket, prefix, dest = sys.argv[1], sys.argv[2], sys.argv[3]
keys = json.loads(sys.argv[4])
def get(rel):
    out = os.path.join(dest, rel)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    c.download_file(bucket, f"{prefix}/{rel}", out, Config=tc)
# Large objects one at a time (each split 8 ways), small ones 8 at a time.
for rel in [k for k, s in keys.items() if s >= 16 * 2**20]:
    get(rel)
with ThreadPoolExecutor(8) as pool:
    list(pool.map(get, [k for k, s in keys.items() if s < 16 * 2**20]))
"""


def make_files(folder: Path, total_mb: int) -> dict[str, int]:
    """A diffusers-like folder: 3 large shards (+ index) and many small files."""
    rng = random.Random(1)
    big_total = total_mb * MIB * 95 // 100
    files: dict[str, int] = {}
    for i in range(1, 4):
        files[f"transformer/diffusion_pytorch_model-{i:05d}-of-00003.safetensors"] = big_total // 3
    for i in range(60):
        files[f"text_encoder/extra-{i:03d}.bin"] = rng.randint(200_000, 2_000_000)
    for i in range(40):
        files[f"tokenizer/part-{i:03d}.json"] = rng.randint(200, 20_000)
    chunk = rng.randbytes(8 * MIB)
    for rel, size in files.items():
        p = folder / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        with p.open("wb") as fh:
            left = size
            while left:
                n = min(left, len(chunk))
                head = min(n, 4096)  # every piece differs a little: no two files are equal
                fh.write(rng.randbytes(head) + chunk[head:n])
                left -= n
    index = {
        "weight_map": {
            f"w{i}": Path(r).name for i, r in enumerate(files) if r.endswith(".safetensors")
        }
    }
    (folder / "transformer/diffusion_pytorch_model.safetensors.index.json").write_text(
        json.dumps(index)
    )
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "WanPipeline"}))
    return {
        p.relative_to(folder).as_posix(): p.stat().st_size for p in folder.rglob("*") if p.is_file()
    }


CPU_SECONDS: dict[str, list[float]] = {}


def run(code: str, *args: str, env: dict[str, str]) -> float:
    """Wall seconds of one contender's process; its CPU seconds go to ``CPU_SECONDS``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code, *args], check=True, env=env, cwd=ROOT)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    CPU_SECONDS.setdefault(code, []).append(cpu)
    return wall


def median_of(repeat: int, fn: Callable[[], float], clean: Callable[[], None]) -> float:
    times = []
    for _ in range(repeat):
        clean()
        subprocess.run(["sync"], check=True)
        times.append(fn())
    clean()
    return statistics.median(times)


def cpu_of(code: str, last: int) -> float:
    """Median client CPU seconds (user + sys) of the last ``last`` runs of ``code``."""
    return statistics.median(CPU_SECONDS[code][-last:])


def bench_hub(work: Path, size_mb: int, repeat: int) -> dict[str, float]:
    src = work / "repo"
    files = make_files(src, size_mb)
    total = sum(files.values())
    patterns = ["model_index.json", "transformer/*", "text_encoder/*", "tokenizer/*"]
    entry = synth_model_entry([f"hf://{REPO}@main"])
    entry["allow_patterns"] = patterns
    manifest = write_manifest(work / "models.toml", {SYNTH_ID: entry})
    with HubServer() as hub:
        repo = hub.add_repo(REPO)
        for rel in files:
            repo.add(rel, DiskContent(src / rel), lfs=files[rel] > 10_000)
        for f in repo.files.values():
            _ = f.sha256  # the server's metadata, computed before the clock starts
        base = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "WAN_"))}
        env = {
            **base,
            "HF_ENDPOINT": hub.url,
            "HF_HUB_DISABLE_XET": "1",
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_DISABLE_PROGRESS_BARS": "1",
            "MODELS_ROOT": str(work / "models"),
            "WAN_MODELS_MANIFEST": str(manifest),
            "WAN_CONFIG_DIR": str(work / "config"),
            "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring",
        }
        out = work / "out"

        def clean() -> None:
            shutil.rmtree(out, ignore_errors=True)
            shutil.rmtree(work / "models", ignore_errors=True)

        args = (REPO, str(out / "snap"), str(out / "cache"), ",".join(patterns))
        snap = median_of(repeat, lambda: run(SNAPSHOT, *args, env=env), clean)
        snap_cpu = cpu_of(SNAPSHOT, repeat)
        ours = median_of(repeat, lambda: run(OURS, "1", SYNTH_ID, env=env), clean)
        ours_cpu = cpu_of(OURS, repeat)
        nohash = median_of(repeat, lambda: run(OURS, "0", SYNTH_ID, env=env), clean)
        nohash_cpu = cpu_of(OURS, repeat)
    return {
        "snapshot_download_cpu_s": snap_cpu,
        "ensure_verified_cpu_s": ours_cpu,
        "ensure_unverified_cpu_s": nohash_cpu,
        "bytes": total,
        "files": len(files),
        "snapshot_download_s": snap,
        "ensure_verified_s": ours,
        "ensure_unverified_s": nohash,
        "speedup_vs_snapshot_download": snap / ours,
        "verification_overhead": ours / nohash - 1,
    }


def bench_s3(work: Path, size_mb: int, repeat: int) -> dict[str, float]:
    src = work / "s3src"
    files = make_files(src, size_mb)
    total = sum(files.values())
    with SeaweedS3(work / "seaweed") as s3:
        client = s3.client()
        client.create_bucket(Bucket="bench")
        for rel in files:
            client.upload_file(str(src / rel), "bench", f"m/{rel}")
        from wan_desktop.models.integrity import sha256_file

        marker = {
            "files": [
                {"path": r, "size": s, "sha256": sha256_file(src / r)[0]} for r, s in files.items()
            ]
        }
        client.put_object(Bucket="bench", Key="m/.wan-complete.json", Body=json.dumps(marker))
        entry = synth_model_entry(["s3://bench/m"])
        entry["allow_patterns"] = ["*"]
        manifest = write_manifest(work / "s3models.toml", {SYNTH_ID: entry})
        base = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "WAN_"))}
        env = {
            **base,
            **s3.env(),
            "MODELS_ROOT": str(work / "models"),
            "WAN_MODELS_MANIFEST": str(manifest),
            "WAN_CONFIG_DIR": str(work / "config"),
        }
        out = work / "out"

        def clean() -> None:
            shutil.rmtree(out, ignore_errors=True)
            shutil.rmtree(work / "models", ignore_errors=True)

        boto = median_of(
            repeat, lambda: run(BOTO, "bench", "m", str(out), json.dumps(files), env=env), clean
        )
        boto_cpu = cpu_of(BOTO, repeat)
        ours = median_of(repeat, lambda: run(OURS, "1", SYNTH_ID, env=env), clean)
        ours_cpu = cpu_of(OURS, repeat)
        nohash = median_of(repeat, lambda: run(OURS, "0", SYNTH_ID, env=env), clean)
        nohash_cpu = cpu_of(OURS, repeat)
    return {
        "boto3_cpu_s": boto_cpu,
        "ensure_verified_cpu_s": ours_cpu,
        "ensure_unverified_cpu_s": nohash_cpu,
        "bytes": total,
        "boto3_download_file_s": boto,
        "ensure_verified_s": ours,
        "ensure_unverified_s": nohash,
        "speedup_vs_boto3": boto / ours,
        "speedup_vs_boto3_unverified": boto / nohash,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--size-mb", type=int, default=1536)
    ap.add_argument("--s3-size-mb", type=int, default=1024)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="wan-bench-", dir=os.environ.get("BENCH_DIR")))
    try:
        hub = bench_hub(work / "hub", args.size_mb, args.repeat)
        s3 = bench_s3(work / "s3", args.s3_size_mb, args.repeat)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps({"hub": hub, "s3": s3}, indent=2))
        return
    mb = hub["bytes"] / 1e6
    print(f"local Hub server, {mb:.0f} MB in {hub['files']:.0f} files (median of {args.repeat}):")
    print("  (wall time; client CPU user+sys in brackets)")
    print(
        f"  huggingface_hub.snapshot_download   {hub['snapshot_download_s']:6.2f} s"
        f"  [{hub['snapshot_download_cpu_s']:.2f} s]"
    )
    print(
        f"  wan ensure, sha256 verified         {hub['ensure_verified_s']:6.2f} s"
        f"  [{hub['ensure_verified_cpu_s']:.2f} s]"
    )
    print(
        f"  wan ensure, hashing off             {hub['ensure_unverified_s']:6.2f} s"
        f"  [{hub['ensure_unverified_cpu_s']:.2f} s]"
    )
    print(f"  speed-up vs snapshot_download       {hub['speedup_vs_snapshot_download']:.2f}x")
    print(f"  verification overhead               {hub['verification_overhead']:+.0%}")
    unverified = hub["snapshot_download_s"] / hub["ensure_unverified_s"]
    print(f"  speed-up vs snapshot_download, hashing off {unverified:.2f}x")
    print(f"SeaweedFS, {s3['bytes'] / 1e6:.0f} MB:")
    print(
        f"  boto3 download_file (TransferConfig) {s3['boto3_download_file_s']:6.2f} s"
        f"  [{s3['boto3_cpu_s']:.2f} s]"
    )
    print(
        f"  wan ensure, sha256 verified          {s3['ensure_verified_s']:6.2f} s"
        f"  [{s3['ensure_verified_cpu_s']:.2f} s]"
    )
    print(
        f"  wan ensure, hashing off              {s3['ensure_unverified_s']:6.2f} s"
        f"  [{s3['ensure_unverified_cpu_s']:.2f} s]"
    )
    print(f"  speed-up vs boto3                    {s3['speedup_vs_boto3']:.2f}x")
    print(f"  speed-up vs boto3, hashing off       {s3['speedup_vs_boto3_unverified']:.2f}x")
    print(f"load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
