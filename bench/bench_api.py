"""API benchmark: GET /api/v1/queue with a long history, and WebSocket step latency.

    .venv/bin/python bench/bench_api.py [--jobs 1000] [--requests 300] [--clients 20]
                                        [--slow 100] [--seconds 15] [--only-attack]

A real uvicorn on 127.0.0.1 (the embedded server, on its own loop thread) over a mock engine.
  * GET /api/v1/queue with N finished jobs in the history: p50/p99 over keep-alive requests,
    against GET /health on the same server (the HTTP floor), and against rebuilding every task
    from the store without the cache (what a naive handler does), in-process.
  * WebSocket: from a JobStep event's creation on the engine's worker thread to its
    generation_progress message arriving at each client, with 1 client (baseline) and with 20,
    while a job runs.
  * Under attack: p50/p99 of GET /health and GET /api/v1/queue while, from other processes, one
    client floods the WebSocket with get_status frames and never reads (reconnecting each time it
    is closed) and 100 slow clients hold sockets (half trickle header bytes, half stay idle; each
    reconnects when the server closes it). Target p99 < 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import socket
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import websockets  # noqa: E402

from tests.engine_helpers import mock_engine, wait_job, wan_spec  # noqa: E402
from wan_desktop.api.server import EmbeddedServer  # noqa: E402
from wan_desktop.engine import Engine, JobState, JobStep  # noqa: E402
from wan_desktop.engine.jobs import JobOutput  # noqa: E402


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def ms(values: list[float]) -> str:
    return f"p50 {1000 * pct(values, 0.5):.2f} ms, p99 {1000 * pct(values, 0.99):.2f} ms"


class ServerThread:
    """The embedded server on its own event loop, like the desktop app runs it."""

    def __init__(self, engine: Engine) -> None:
        self.loop = asyncio.new_event_loop()
        self.server = EmbeddedServer(engine, port=0)
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> EmbeddedServer:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(30)
        return self.server

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def fill_history(engine: Engine, n: int) -> None:
    """N finished jobs shaped like real ones (params, estimate, output), newest last."""
    template = engine.submit(wan_spec(steps=30))
    engine.delete(engine.cancel(template.id).id)
    now = time.time() - n
    for i in range(n):
        jid = uuid.uuid4().hex
        engine.store.insert(
            replace(
                template,
                id=jid,
                state=JobState.completed if i % 10 else JobState.failed,
                params={**template.params, "prompt": f"job {i}: a fox running through snow"},
                created_at=now + i,
                started_at=now + i + 0.1,
                finished_at=now + i + 0.9,
                updated_at=now + i + 0.9,
                progress=1.0,
                stages_completed=("initializing", "loading_model", "generating", "saving"),
                output=JobOutput(
                    video=f"/data/outputs/{jid}.mp4",
                    thumbnail=f"/data/outputs/thumbnails/{jid}.jpg",
                    sidecar=f"/data/outputs/{jid}.json",
                    duration_s=5.0,
                    width=1280,
                    height=720,
                    frames=81,
                    fps=16,
                    size_bytes=4_000_000,
                ),
            )
        )


def bench_queue(root: Path, jobs: int, requests: int) -> dict[str, Any]:
    engine = mock_engine(root, start=False)
    fill_history(engine, jobs)
    try:
        with ServerThread(engine) as server, httpx.Client(base_url=server.url) as http:
            for _ in range(20):  # warm-up (and fills the task cache once)
                assert len(http.get("/api/v1/queue").json()["tasks"]) == jobs
            floor, queue = [], []
            for _ in range(requests):
                t0 = time.perf_counter()
                http.get("/health")
                floor.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                r = http.get("/api/v1/queue")
                queue.append(time.perf_counter() - t0)
                assert r.status_code == 200
            mapper = server.app.state.ctx.mapper
            naive = []
            for _ in range(max(10, requests // 10)):
                t0 = time.perf_counter()
                [mapper.task(j) for j in engine.jobs()]
                naive.append(time.perf_counter() - t0)
    finally:
        engine.shutdown()
    return {"queue": queue, "health": floor, "naive": naive}


async def ws_round(server: EmbeddedServer, engine: Engine, clients: int, steps: int) -> list[float]:
    created: dict[int, float] = {}
    ready = threading.Event()

    def on_event(event: Any) -> None:
        if isinstance(event, JobStep):
            created[event.step] = event.at

    sub = engine.subscribe(on_event, name="bench")
    url = server.url.replace("http://", "ws://") + "/ws"
    conns = [await websockets.connect(url) for _ in range(clients)]
    arrivals: list[tuple[int, float]] = []
    try:
        for ws in conns:
            await ws.recv()
            await ws.send(
                json.dumps({"type": "subscribe", "data": {"topic": "generation_progress"}})
            )
            await ws.recv()

        async def listen(ws: Any) -> None:
            while True:
                msg = json.loads(await ws.recv())
                if msg["type"] == "generation_progress":
                    arrivals.append((msg["data"]["current_step"], time.time()))
                    if msg["data"]["current_step"] == steps:
                        return

        listeners = [asyncio.create_task(listen(ws)) for ws in conns]
        ready.set()
        job = engine.submit(wan_spec(steps=steps, frames=5))
        await asyncio.wait_for(asyncio.gather(*listeners), 120)
        await asyncio.to_thread(wait_job, engine, job.id, JobState.completed)
    finally:
        for ws in conns:
            await ws.close()
        sub.close()
    return [t - created[step] for step, t in arrivals]


def bench_ws(root: Path, clients: int, steps: int) -> dict[str, list[float]]:
    engine = mock_engine(root, step_s=0.02)
    try:
        with ServerThread(engine) as server:
            one = asyncio.run(ws_round(server, engine, 1, steps))
            many = asyncio.run(ws_round(server, engine, clients, steps))
    finally:
        engine.shutdown()
    return {"one": one, "many": many}


def flood(url: str, stop: Any, counts: Any) -> None:
    """Another process: get_status frames as fast as it can, never reading; reconnects when
    closed."""
    from websockets.exceptions import ConnectionClosed, InvalidHandshake
    from websockets.sync.client import connect as ws_connect

    frame = json.dumps({"type": "get_status", "data": {}})
    while not stop.is_set():
        try:
            with ws_connect(url, open_timeout=10) as ws:
                while not stop.is_set():
                    ws.send(frame)
                    counts[0] += 1
        except (ConnectionClosed, InvalidHandshake, OSError):
            counts[1] += 1  # closed by the server


def hold_slow_sockets(port: int, n: int, stop: Any, counts: Any) -> None:
    """Another process: ``n`` sockets, half trickling header bytes, half idle; reopened when the
    server closes one."""

    def open_one(i: int) -> socket.socket:
        s = socket.create_connection(("127.0.0.1", port))
        s.setblocking(False)
        if i % 2 == 0:
            s.send(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        return s

    socks = [open_one(i) for i in range(n)]
    while not stop.is_set():
        for i, s in enumerate(socks):
            try:
                if s.recv(4096) == b"":
                    raise ConnectionResetError
            except BlockingIOError:
                pass  # still open
            except OSError:
                s.close()
                counts[2] += 1
                socks[i] = open_one(i)
                continue
            if i % 2 == 0:
                with contextlib.suppress(OSError):
                    s.send(b"a")
        stop.wait(0.5)
    for s in socks:
        s.close()


def bench_attack(root: Path, jobs: int, requests: int, slow: int, seconds: float) -> dict[str, Any]:
    engine = mock_engine(root, start=False)
    fill_history(engine, jobs)
    ctx = multiprocessing.get_context("spawn")
    stop = ctx.Event()
    counts = ctx.Array("l", 3)  # frames sent, flood disconnects, slow sockets closed
    try:
        with ServerThread(engine) as server, httpx.Client(base_url=server.url) as http:

            def measure(seconds: float = 0.0) -> dict[str, list[float]]:
                out: dict[str, list[float]] = {"health": [], "queue": []}
                t_end = time.monotonic() + seconds
                while len(out["health"]) < requests or time.monotonic() < t_end:
                    for name, url in (("health", "/health"), ("queue", "/api/v1/queue")):
                        t0 = time.perf_counter()
                        r = http.get(url)
                        out[name].append(time.perf_counter() - t0)
                        assert r.status_code == 200
                return out

            for _ in range(20):
                http.get("/api/v1/queue")
            quiet = measure()
            ws_url = server.url.replace("http://", "ws://") + "/ws"
            procs = [
                ctx.Process(target=flood, args=(ws_url, stop, counts), daemon=True),
                ctx.Process(
                    target=hold_slow_sockets, args=(server.port, slow, stop, counts), daemon=True
                ),
            ]
            for p in procs:
                p.start()
            time.sleep(3.0)  # both at work
            started = time.monotonic()
            loaded = measure(seconds)
            took = time.monotonic() - started
            stop.set()
            for p in procs:
                p.join(15)
                if p.is_alive():
                    p.kill()
    finally:
        engine.shutdown()
    return {
        "quiet": quiet,
        "loaded": loaded,
        "frames": counts[0],
        "flood_closed": counts[1],
        "slow_closed": counts[2],
        "seconds": took,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--jobs", type=int, default=1000)
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--slow", type=int, default=100, help="slow sockets held during the attack")
    ap.add_argument(
        "--seconds",
        type=float,
        default=15.0,
        help="how long to measure under attack (past the 10 s request timeout)",
    )
    ap.add_argument(
        "--only-attack", action="store_true", help="run only the under-attack measurement"
    )
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        a = bench_attack(Path(tmp) / "a", args.jobs, args.requests, args.slow, args.seconds)
        print_attack(a, args)
        if args.only_attack:
            return 0
        q = bench_queue(Path(tmp) / "q", args.jobs, args.requests)
        w = bench_ws(Path(tmp) / "w", args.clients, args.steps)
    print(f"GET /api/v1/queue, {args.jobs} jobs in history: {ms(q['queue'])} (target p99 < 20 ms)")
    print(f"GET /health on the same server (HTTP floor):   {ms(q['health'])}")
    print(
        f"rebuilding all {args.jobs} tasks without the cache (in-process): "
        f"{ms(q['naive'])}; cached handler p50 is "
        f"{pct(q['queue'], 0.5) / pct(q['naive'], 0.5):.2f}x of it"
    )
    print(f"WebSocket step -> client, 1 client:    {ms(w['one'])} ({len(w['one'])} messages)")
    print(
        f"WebSocket step -> client, {args.clients} clients: {ms(w['many'])} "
        f"({len(w['many'])} messages; p99 {pct(w['many'], 0.99) / pct(w['one'], 0.99):.1f}x of 1 "
        "client; target p99 < 20 ms)"
    )
    return 0


def print_attack(a: dict[str, Any], args: argparse.Namespace) -> None:
    for name, url in (("health", "/health"), ("queue", "/api/v1/queue")):
        print(
            f"GET {url} under attack: {ms(a['loaded'][name])} (quiet: {ms(a['quiet'][name])}; "
            "target p99 < 50 ms)"
        )
    print(
        f"  attack over {a['seconds']:.1f} s of measuring: 1 WebSocket flooder sent "
        f"{a['frames']} frames and was closed {a['flood_closed']} times; {args.slow} slow "
        f"sockets, {a['slow_closed']} closed by the request timeout; {args.jobs} jobs in history"
    )


if __name__ == "__main__":
    sys.exit(main())
