"""Remote-engine benchmark: the program-facing surface of ``wan serve`` against its baselines.

    .venv/bin/python bench/bench_remote.py [--jobs 8] [--size-mb 200] [--mbit 1000] [--repeat 3]
        [--history 1000] [--json]

Ratios in one run, on this machine (client and server share the cores):

  * submit → first step event: a mock job (the same 50 ms steps) submitted over
    ``POST /api/v1/engine/jobs`` to a ``wan --dev serve --mock`` subprocess on 127.0.0.1, its first
    ``JobStep`` read from ``/api/v1/engine/events``, against the same job submitted to an engine
    in this process and its first step taken from the bus (what the desktop app does locally).
    Target: remote ≤ local + 100 ms (medians).
  * reconnect after a server restart: the server (``--history`` finished jobs, 20 queued, queue
    paused) is killed (-9) and started again on the same port; from the moment it listens, the
    client's stream reconnect (``after=N``, the old epoch: answered ``gap``) and refetch of the
    queue, the recent jobs and the engine state until the client's view equals the server's.
    Against the same refetch from a server that never went away.
  * result download: a ``--size-mb`` result through a relay on 127.0.0.1 that shapes the link
    (``tests/netproxy.LinkProxy`` in its own process, ``--mbit`` for all connections), streamed
    to a file with httpx as a client does, and the same with the link dropped once half-way
    (``CutProxy``) and resumed with ``Range`` + ``If-Range``; against ``curl`` of the same URL
    through the same link. Target: ≥ 0.95× curl's speed. Also on loopback (no relay): CPU-bound.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from websockets.sync.client import connect  # noqa: E402

from bench.bench_api import fill_history  # noqa: E402
from tests.api_helpers import WanServe  # noqa: E402
from tests.engine_helpers import mock_engine, wait_job, wan_spec  # noqa: E402
from wan_desktop.engine import Event, Job, JobState, JobStep  # noqa: E402
from wan_desktop.engine.jobs import JobKind, JobSpec  # noqa: E402
from wan_desktop.engine.wire import event_from_wire, from_wire, to_wire  # noqa: E402

TOKEN = "bench-remote-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ENGINE = "/api/v1/engine"
MIB = 1 << 20
STEP_S = 0.05  # the mock pipeline's step in wan serve; the local engine gets the same
PARAMS = {"model": "T2V-A14B", "prompt": "a fox", "resolution": "320x192", "steps": 3, "frames": 5}


def serve(root: Path, *args: str) -> WanServe:
    return WanServe(
        root,
        "--log-level",
        "warning",
        *args,
        env={"WAN_API_TOKEN": TOKEN, "WAN_DEV_MODE": "1"},
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def med(values: list[float]) -> float:
    return statistics.median(values)


# ----------------------------------------------------------------------- submit → first step


def first_step_local(root: Path, jobs: int) -> list[float]:
    engine = mock_engine(root, step_s=STEP_S)
    first: dict[str, float] = {}
    got = threading.Event()

    def on_event(e: Event) -> None:
        if isinstance(e, JobStep) and e.job_id not in first:
            first[e.job_id] = time.perf_counter()
            got.set()

    engine.subscribe(on_event, name="bench")
    out = []
    try:
        for _ in range(jobs + 1):  # the first warms up (imports, encoder)
            got.clear()
            t0 = time.perf_counter()
            job = engine.submit(wan_spec(**PARAMS))
            got.wait(30)
            out.append(first[job.id] - t0)
            wait_job(engine, job.id, JobState.completed)
    finally:
        engine.shutdown()
    return out[1:]


def first_step_remote(server: WanServe, jobs: int) -> list[float]:
    ws_url = server.url.replace("http://", "ws://") + f"{ENGINE}/events"
    first: dict[str, float] = {}
    done: dict[str, threading.Event] = {}
    lock = threading.Lock()
    spec = to_wire(JobSpec(kind=JobKind.wan, params=PARAMS))
    out = []
    with connect(ws_url, additional_headers=AUTH) as ws, httpx.Client(headers=AUTH) as c:
        ws.recv(timeout=30)  # hello

        def read() -> None:
            try:
                while True:
                    m = json.loads(ws.recv())
                    if m["type"] != "event":
                        continue
                    now = time.perf_counter()
                    e = event_from_wire(m["event"])
                    with lock:
                        if isinstance(e, JobStep) and e.job_id not in first:
                            first[e.job_id] = now
                        job = getattr(e, "job", None)
                        if job is not None and job.finished:
                            done.setdefault(job.id, threading.Event()).set()
            except Exception:
                return

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        for _ in range(jobs + 1):
            t0 = time.perf_counter()
            job = from_wire(Job, c.post(f"{server.url}{ENGINE}/jobs", json=spec).json())
            with lock:
                ev = done.setdefault(job.id, threading.Event())
            ev.wait(30)
            out.append(first[job.id] - t0)
    return out[1:]


# ------------------------------------------------------------------ reconnect after restart


def prepare_history(root: Path, history: int) -> None:
    engine = mock_engine(root)
    try:
        engine.pause()  # the queued jobs stay queued (and the history's template is cancelled)
        fill_history(engine, history)
        for i in range(20):
            engine.submit(wan_spec(**{**PARAMS, "prompt": f"queued {i}"}))
    finally:
        engine.shutdown()


def view(url: str, c: httpx.Client) -> tuple[list[Any], list[Any], dict[str, Any]]:
    """What the app shows: the queue, the 200 most recent jobs, the engine's state."""
    queue = c.get(f"{url}{ENGINE}/queue").json()
    recent = c.get(f"{url}{ENGINE}/jobs", params={"limit": 200}).json()
    state = c.get(f"{url}{ENGINE}/state").json()
    return [from_wire(Job, j) for j in queue], [from_wire(Job, j) for j in recent], state


def reconnect(root: Path, history: int, repeat: int) -> dict[str, Any]:
    prepare_history(root, history)
    port = free_port()
    server = serve(root, "--port", str(port))
    warm, after_restart, restarts = [], [], []
    try:
        with httpx.Client(headers=AUTH, timeout=30) as c:
            for _ in range(repeat):
                ws_url = server.url.replace("http://", "ws://") + f"{ENGINE}/events"
                with connect(ws_url, additional_headers=AUTH) as ws:
                    hello = json.loads(ws.recv(timeout=30))
                t0 = time.perf_counter()
                before = view(server.url, c)
                warm.append(time.perf_counter() - t0)
                os.kill(server.proc.pid, signal.SIGKILL)
                server.proc.wait(30)
                server.__exit__()
                t_spawn = time.perf_counter()
                server = serve(root, "--port", str(port))
                t_listen = time.perf_counter()
                restarts.append(t_listen - t_spawn)
                query = f"?after={hello['seq']}&epoch={hello['epoch']}"
                with connect(ws_url + query, additional_headers=AUTH) as ws:
                    again = json.loads(ws.recv(timeout=30))
                    assert again["replay"] == "gap", again
                    now = view(server.url, c)
                after_restart.append(time.perf_counter() - t_listen)
                assert [j.id for j in now[0]] == [j.id for j in before[0]], "queue differs"
                assert [j.id for j in now[1]] == [j.id for j in before[1]], "history differs"
                assert now[2]["paused"] is True
        server.stop()
    finally:
        server.__exit__()
    return {
        "warm_refetch_s": med(warm),
        "restart_to_listening_s": med(restarts),
        "after_restart_s": med(after_restart),
        "ratio": med(after_restart) / med(warm),
    }


# ---------------------------------------------------------------------------- downloads


def make_result(server: WanServe, size_mb: int) -> tuple[str, Path]:
    """A finished job whose video is ``size_mb`` of random bytes (a mock job, its file swapped)."""
    with httpx.Client(headers=AUTH, timeout=60) as c:
        spec = to_wire(JobSpec(kind=JobKind.wan, params=PARAMS))
        c.post(f"{server.url}{ENGINE}/queue/resume")
        job = from_wire(Job, c.post(f"{server.url}{ENGINE}/jobs", json=spec).json())
        while not job.finished:
            time.sleep(0.1)
            job = from_wire(Job, c.get(f"{server.url}{ENGINE}/jobs/{job.id}").json())
    assert job.output is not None, job
    video = Path(job.output.video)
    with video.open("wb") as f:
        for _ in range(size_mb):
            f.write(os.urandom(MIB))
    return job.id, video


def download(c: httpx.Client, url: str, dest: Path) -> float:
    """Stream ``url`` to ``dest`` as a client does (its connection pool made once, like the
    app's), resuming with Range + If-Range after a drop."""
    t0 = time.perf_counter()
    etag = None
    with dest.open("wb") as out:
        while True:
            headers: dict[str, str] = {}
            if out.tell() and etag:
                headers = {"Range": f"bytes={out.tell()}-", "If-Range": etag}
            try:
                with c.stream("GET", url, headers=headers) as r:
                    if r.status_code == 200:
                        out.seek(0)
                        out.truncate()
                    elif r.status_code != 206:
                        raise RuntimeError(f"{r.status_code}: {r.read()[:200]!r}")
                    etag = r.headers.get("etag")
                    for chunk in r.iter_raw():
                        out.write(chunk)
                return time.perf_counter() - t0
            except httpx.TransportError:
                continue  # dropped: resume where the file ends


def curl(url: str, dest: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run(
        ["curl", "-sS", "--fail", "-o", str(dest), "-H", f"Authorization: Bearer {TOKEN}", url],
        check=True,
    )
    return time.perf_counter() - t0


RELAY = """
import sys
sys.path.insert(0, sys.argv[1])
from tests.netproxy import CutProxy, LinkProxy
kind, port, arg = sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
relay = LinkProxy(port, rate_bps=arg) if kind == "link" else CutProxy(port, cut_after=int(arg))
relay.start()
print(relay.port, flush=True)
sys.stdin.read()  # until the benchmark closes it
relay.stop()
"""


@contextmanager
def relay(kind: str, port: int, arg: float) -> Iterator[str]:
    """A relay in its own process (a relay in this one would share the GIL with the client)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", RELAY, str(ROOT), kind, str(port), str(arg)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        yield f"http://127.0.0.1:{int(proc.stdout.readline())}"
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(30)


def downloads(server: WanServe, work: Path, size_mb: int, mbit: float, repeat: int) -> Any:
    job_id, video = make_result(server, size_mb)
    port = int(server.url.rsplit(":", 1)[1])
    path = f"{ENGINE}/jobs/{job_id}/files/video"
    size = video.stat().st_size
    results: dict[str, dict[str, list[float]]] = {}
    with relay("link", port, mbit * 1e6 / 8) as link, httpx.Client(headers=AUTH, timeout=60) as c:
        link_port = int(link.rsplit(":", 1)[1])
        for _ in range(repeat):  # interleaved: a change in load hits every contender alike
            for cond, base in (("loopback", server.url), ("link", link)):
                r = results.setdefault(cond, {"ours": [], "curl": [], "ours_dropped": []})
                dest = work / "download.bin"
                r["curl"].append(curl(base + path, dest))
                assert dest.stat().st_size == size
                r["ours"].append(download(c, base + path, dest))
                assert dest.stat().st_size == size
                if cond == "link":
                    with relay("cut", link_port, size // 2) as cut:
                        r["ours_dropped"].append(download(c, cut + path, dest))
                    with dest.open("rb") as a, video.open("rb") as b:
                        while (x := a.read(8 * MIB)) or b.read(1):
                            assert x == b.read(len(x)), "the resumed file differs"
                dest.unlink()
    out = {}
    for cond, r in results.items():
        out[cond] = {k: med(v) for k, v in r.items() if v}
        out[cond]["speed_vs_curl"] = out[cond]["curl"] / out[cond]["ours"]
        if r["ours_dropped"]:
            out[cond]["dropped_speed_vs_curl"] = out[cond]["curl"] / out[cond]["ours_dropped"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--jobs", type=int, default=8)
    ap.add_argument("--size-mb", type=int, default=200)
    ap.add_argument("--mbit", type=float, default=1000.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--history", type=int, default=1000)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="wan-bench-remote-", dir=os.environ.get("BENCH_DIR")))
    report: dict[str, Any] = {"load_before": os.getloadavg()[0]}
    try:
        local = first_step_local(work / "local", args.jobs)
        with serve(work / "remote") as server:
            remote = first_step_remote(server, args.jobs)
            report["downloads"] = downloads(server, work, args.size_mb, args.mbit, args.repeat)
            server.stop()
        report["first_step"] = {
            "local_s": med(local),
            "remote_s": med(remote),
            "added_ms": 1000 * (med(remote) - med(local)),
        }
        report["reconnect"] = reconnect(work / "restart", args.history, args.repeat)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report["load_after"] = os.getloadavg()[0]
    if args.json:
        print(json.dumps(report, indent=2))
        return
    fs, rc, dl = report["first_step"], report["reconnect"], report["downloads"]
    print(f"machine load {report['load_before']:.1f} → {report['load_after']:.1f}")
    print(
        f"submit → first step: remote {1000 * fs['remote_s']:.0f} ms vs local "
        f"{1000 * fs['local_s']:.0f} ms: +{fs['added_ms']:.0f} ms (target ≤ +100 ms)"
    )
    print(
        f"reconnect after a restart ({args.history} jobs in history, 20 queued): consistent view "
        f"{1000 * rc['after_restart_s']:.0f} ms after the server listens (restart to listening "
        f"{rc['restart_to_listening_s']:.2f} s) vs the same refetch warm "
        f"{1000 * rc['warm_refetch_s']:.0f} ms: {rc['ratio']:.2f}×"
    )
    for cond, r in dl.items():
        label = "loopback" if cond == "loopback" else f"{args.mbit:g} Mbit/s link"
        mbs = args.size_mb * MIB / 1e6
        line = (
            f"{args.size_mb} MB result, {label}: ours {r['ours']:.2f} s "
            f"({mbs / r['ours']:.0f} MB/s) vs curl {r['curl']:.2f} s: "
            f"{r['speed_vs_curl']:.2f}× (target ≥ 0.95×)"
        )
        if "ours_dropped" in r:
            line += (
                f"; dropped half-way and resumed {r['ours_dropped']:.2f} s: "
                f"{r['dropped_speed_vs_curl']:.2f}×"
            )
        print(line)


if __name__ == "__main__":
    main()
