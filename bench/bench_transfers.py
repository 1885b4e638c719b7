"""Transfer benchmark: our ensure against huggingface_hub and boto3, and what hashing costs.

    .venv/bin/python bench/bench_transfers.py [--size-mb 1536] [--s3-size-mb 1024] [--repeat 3]
        [--link MBIT[,rtt=MS][,conn=MBIT] ...] [--no-loopback] [--skip-hub] [--skip-s3] [--json]

Every contender runs as a fresh process (start-up counts for everyone) on the same files, its
repeats interleaved with the others' so that a change in the machine's load hits all alike, and
the servers' files are in the page cache. Each contender runs under every condition:

  * loopback: the servers on 127.0.0.1 with nothing in between. On a small machine this measures
    CPU: client and server share the cores, and sha256 (~2.6 s per GB on a core without SHA
    instructions) is more work than moving the bytes.
  * links (``--link``, repeatable): every byte from the server passes a relay on 127.0.0.1
    (``tests/netproxy.LinkProxy``) that gives all connections together ``MBIT`` megabits per
    second, the same for every contender. ``rtt=MS`` adds a round trip to every request (and
    one more to a new connection); ``conn=MBIT`` caps each connection, as loss and TCP windows
    do over a long path: users of the Hub report ~40 MB/s for one connection on links several
    times faster (huggingface_hub issue 2658), which is what parallel ranges are for. Default:
    a plain 1 Gbit/s link (the link is the only limit: nobody can beat it, and the hashing
    hides behind it), and the same with 40 ms and 200 or 400 Mbit/s per connection.

Sources:
  * the local Hub-compatible server (``tests/hubserver.py``): a repository of a few large shards
    and many small files. ``huggingface_hub.snapshot_download`` (no Xet, 8 workers) vs
    ``wan models ensure`` (sha256 of every file verified, every file fsynced), and our ensure with
    hashing off (the cost of verification).
  * SeaweedFS (a real S3 server): boto3 ``download_file`` of every object, no verification, in two
    set-ups: the shape of ours (4 files at a time, each in 4 concurrent 32 MiB ranges) and a tuned
    one (one large object at a time in 8 concurrent 32 MiB ranges, then the small ones 8 at a
    time); the faster of the two is the baseline. Against our ensure from ``s3://``.
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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.helpers import SYNTH_ID, synth_model_entry, write_manifest  # noqa: E402
from tests.hubserver import DiskContent, HubServer  # noqa: E402
from tests.netproxy import LinkProxy  # noqa: E402
from tests.seaweedfs import SeaweedS3  # noqa: E402

REPO = "bench/Synth-Diffusers"
MIB = 1 << 20

OURS = """
import sys
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
bucket, prefix, dest, shape = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
keys = json.loads(sys.argv[5])
def get(rel, tc):
    out = os.path.join(dest, rel)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    c.download_file(bucket, f"{prefix}/{rel}", out, Config=tc)
largest_first = sorted(keys, key=lambda k: -keys[k])
if shape == "ours":  # 4 objects at a time, each in 4 concurrent 32 MiB ranges
    tc = TransferConfig(multipart_threshold=32 * 2**20, multipart_chunksize=32 * 2**20,
                        max_concurrency=4)
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda k: get(k, tc), largest_first))
else:  # large objects one at a time in 8 concurrent 32 MiB ranges, then the small 8 at a time
    tc = TransferConfig(multipart_threshold=16 * 2**20, multipart_chunksize=32 * 2**20,
                        max_concurrency=8)
    for rel in [k for k in largest_first if keys[k] >= 16 * 2**20]:
        get(rel, tc)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda k: get(k, tc), [k for k in largest_first if keys[k] < 16 * 2**20]))
"""


@dataclass(frozen=True)
class Contender:
    name: str
    code: str
    args: tuple[str, ...]


@dataclass
class Result:
    wall_s: float  # median
    cpu_s: float  # median client CPU (user + sys)
    walls: list[float]


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


def run_once(c: Contender, env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU seconds (user + sys) of one contender's process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", c.code, *c.args], check=True, env=env, cwd=ROOT)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def measure(
    contenders: list[Contender], env: dict[str, str], repeat: int, clean: Callable[[], None]
) -> dict[str, Result]:
    """Each contender ``repeat`` times, rounds interleaved; medians."""
    walls: dict[str, list[float]] = {c.name: [] for c in contenders}
    cpus: dict[str, list[float]] = {c.name: [] for c in contenders}
    for _ in range(repeat):
        for c in contenders:
            clean()
            subprocess.run(["sync"], check=True)  # no one pays for another's dirty pages
            wall, cpu = run_once(c, env)
            walls[c.name].append(wall)
            cpus[c.name].append(cpu)
    clean()
    return {
        n: Result(statistics.median(walls[n]), statistics.median(cpus[n]), walls[n]) for n in walls
    }


@dataclass(frozen=True)
class Link:
    """A network condition: ``mbit`` for all connections together, optionally a round trip
    and a cap on each connection (``--link 1000,rtt=40,conn=200``)."""

    mbit: float
    rtt_ms: float = 0.0
    conn_mbit: float | None = None

    @classmethod
    def parse(cls, text: str) -> Link:
        head, *opts = text.split(",")
        fields: dict[str, float] = {}
        for opt in opts:
            key, _, value = opt.partition("=")
            if key not in ("rtt", "conn") or not value:
                raise argparse.ArgumentTypeError(f"unknown link option {opt!r} (rtt=MS, conn=MBIT)")
            fields[key] = float(value)
        return cls(float(head), fields.get("rtt", 0.0), fields.get("conn"))

    @property
    def label(self) -> str:
        text = f"{self.mbit:g} Mbit/s link"
        if self.rtt_ms:
            text += f", {self.rtt_ms:g} ms RTT"
        if self.conn_mbit:
            text += f", {self.conn_mbit:g} Mbit/s per connection"
        return text


DEFAULT_LINKS = [Link(1000.0), Link(1000.0, 40.0, 200.0), Link(1000.0, 40.0, 400.0)]


@contextmanager
def shaped(port: int, link: Link | None) -> Iterator[str | None]:
    """The URL to reach ``port`` through ``link`` (None: loopback, direct)."""
    if link is None:
        yield None
        return
    conn = link.conn_mbit * 1e6 / 8 if link.conn_mbit else None
    with LinkProxy(
        port, rate_bps=link.mbit * 1e6 / 8, rtt_s=link.rtt_ms / 1000, conn_bps=conn
    ) as relay:
        yield relay.endpoint


def conditions(links: list[Link], loopback: bool) -> list[tuple[str, Link | None]]:
    return [*([("loopback", None)] if loopback else []), *((k.label, k) for k in links)]


def bench_hub(
    work: Path, size_mb: int, repeat: int, conds: list[tuple[str, Link | None]]
) -> dict[str, Any]:
    src = work / "repo"
    files = make_files(src, size_mb)
    patterns = ["model_index.json", "transformer/*", "text_encoder/*", "tokenizer/*"]
    entry = synth_model_entry([f"hf://{REPO}@main"])
    entry["allow_patterns"] = patterns
    manifest = write_manifest(work / "models.toml", {SYNTH_ID: entry})
    out = work / "out"

    def clean() -> None:
        shutil.rmtree(out, ignore_errors=True)
        shutil.rmtree(work / "models", ignore_errors=True)

    contenders = [
        Contender(
            "snapshot_download",
            SNAPSHOT,
            (REPO, str(out / "snap"), str(out / "cache"), ",".join(patterns)),
        ),
        Contender("ensure_verified", OURS, ("1", SYNTH_ID)),
        Contender("ensure_unverified", OURS, ("0", SYNTH_ID)),
    ]
    report: dict[str, Any] = {"bytes": sum(files.values()), "files": len(files)}
    with HubServer() as hub:
        repo = hub.add_repo(REPO)
        for rel in files:
            repo.add(rel, DiskContent(src / rel), lfs=files[rel] > 10_000)
        for f in repo.files.values():
            _ = f.sha256  # the server's metadata, computed before the clock starts
        direct = hub.url
        for label, link in conds:
            with shaped(hub.port, link) as via:
                hub.url = via or direct  # the tree's "next page" links go the same way
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
                load0 = os.getloadavg()[0]
                res = measure(contenders, env, repeat, clean)
                report[label] = summarize(res, load0) | {
                    "speedup_vs_snapshot_download": res["snapshot_download"].wall_s
                    / res["ensure_verified"].wall_s,
                    "verification_overhead": res["ensure_verified"].wall_s
                    / res["ensure_unverified"].wall_s
                    - 1,
                }
        hub.url = direct
    return report


def bench_s3(
    work: Path, size_mb: int, repeat: int, conds: list[tuple[str, Link | None]]
) -> dict[str, Any]:
    src = work / "s3src"
    files = make_files(src, size_mb)
    out = work / "out"

    def clean() -> None:
        shutil.rmtree(out, ignore_errors=True)
        shutil.rmtree(work / "models", ignore_errors=True)

    contenders = [
        Contender("boto3_our_shape", BOTO, ("bench", "m", str(out), "ours", json.dumps(files))),
        Contender("boto3_tuned", BOTO, ("bench", "m", str(out), "tuned", json.dumps(files))),
        Contender("ensure_verified", OURS, ("1", SYNTH_ID)),
        Contender("ensure_unverified", OURS, ("0", SYNTH_ID)),
    ]
    report: dict[str, Any] = {"bytes": sum(files.values()), "files": len(files)}
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
        for label, link in conds:
            with shaped(s3.port, link) as via:
                base = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "WAN_"))}
                env = {
                    **base,
                    **s3.env(),
                    "AWS_ENDPOINT_URL": via or s3.endpoint,
                    "MODELS_ROOT": str(work / "models"),
                    "WAN_MODELS_MANIFEST": str(manifest),
                    "WAN_CONFIG_DIR": str(work / "config"),
                }
                load0 = os.getloadavg()[0]
                res = measure(contenders, env, repeat, clean)
                boto = min(res["boto3_our_shape"].wall_s, res["boto3_tuned"].wall_s)
                report[label] = summarize(res, load0) | {
                    "speedup_vs_boto3": boto / res["ensure_verified"].wall_s,
                    "speedup_vs_boto3_unverified": boto / res["ensure_unverified"].wall_s,
                    "verification_overhead": res["ensure_verified"].wall_s
                    / res["ensure_unverified"].wall_s
                    - 1,
                }
    return report


def summarize(res: dict[str, Result], load0: float) -> dict[str, Any]:
    return {
        "load_average": [round(load0, 1), round(os.getloadavg()[0], 1)],
        **{
            name: {"wall_s": r.wall_s, "cpu_s": r.cpu_s, "walls_s": [round(w, 2) for w in r.walls]}
            for name, r in res.items()
        },
    }


LABELS = {
    "snapshot_download": "huggingface_hub.snapshot_download",
    "boto3_our_shape": "boto3 download_file, our shape (4 x 4)",
    "boto3_tuned": "boto3 download_file, tuned (1 x 8)",
    "ensure_verified": "wan ensure, sha256 verified",
    "ensure_unverified": "wan ensure, hashing off",
}


def show(title: str, report: dict[str, Any], ratios: list[tuple[str, str]], repeat: int) -> None:
    size = report["bytes"] / 1e6
    print(f"{title}, {size:.0f} MB in {report['files']} files (median of {repeat}):")
    for label, part in report.items():
        if not isinstance(part, dict):
            continue
        lo, hi = part["load_average"]
        print(f"  {label} (load average {lo:.1f} -> {hi:.1f} on {os.cpu_count()} cores)")
        for name, text in LABELS.items():
            if name in part:
                r = part[name]
                rate = size / r["wall_s"]
                print(
                    f"    {text:42s} {r['wall_s']:6.2f} s  [{r['cpu_s']:5.2f} s CPU]"
                    f"  {rate:5.0f} MB/s  runs {r['walls_s']}"
                )
        for key, text in ratios:
            value = part[key]
            print(
                f"    {text:42s} {value:+.0%}"
                if "overhead" in key
                else f"    {text:42s} {value:.2f}x"
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--size-mb", type=int, default=1536)
    ap.add_argument("--s3-size-mb", type=int, default=1024)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument(
        "--link",
        type=Link.parse,
        action="append",
        help="MBIT[,rtt=MS][,conn=MBIT], repeatable; default: "
        + " and ".join(f"'{k.label}'" for k in DEFAULT_LINKS),
    )
    ap.add_argument("--no-loopback", action="store_true", help="only the --link conditions")
    ap.add_argument("--skip-s3", action="store_true")
    ap.add_argument("--skip-hub", action="store_true")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    conds = conditions(args.link or DEFAULT_LINKS, loopback=not args.no_loopback)
    work = Path(tempfile.mkdtemp(prefix="wan-bench-", dir=os.environ.get("BENCH_DIR")))
    try:
        hub = None if args.skip_hub else bench_hub(work / "hub", args.size_mb, args.repeat, conds)
        s3 = None if args.skip_s3 else bench_s3(work / "s3", args.s3_size_mb, args.repeat, conds)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps({"hub": hub, "s3": s3}, indent=2))
        return
    if hub is not None:
        show(
            "local Hub server",
            hub,
            [
                ("speedup_vs_snapshot_download", "verified: speed-up vs snapshot_download"),
                ("verification_overhead", "verification overhead (verified vs off)"),
            ],
            args.repeat,
        )
    if s3 is not None:
        show(
            "SeaweedFS",
            s3,
            [
                ("speedup_vs_boto3", "verified: speed-up vs the faster boto3"),
                ("speedup_vs_boto3_unverified", "hashing off: speed-up vs the faster boto3"),
                ("verification_overhead", "verification overhead (verified vs off)"),
            ],
            args.repeat,
        )


if __name__ == "__main__":
    main()
