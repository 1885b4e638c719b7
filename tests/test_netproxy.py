"""The benchmark's network stand-in (tests/netproxy.LinkProxy) shapes what it says it does.

Its figures carry the transfer benchmark's conditions, so the shaping is checked here: the
shared link, the per-connection cap and the round trips. Lower bounds are exact (the relay
sleeps); upper bounds are loose, for a loaded machine.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.netproxy import LinkProxy

MB = 1_000_000


@pytest.fixture
def echo_port() -> Iterator[int]:
    """A server on 127.0.0.1: for each line ``N`` it reads, it sends N bytes back."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        with conn, conn.makefile("rb") as lines:
            for line in lines:
                conn.sendall(b"x" * int(line))

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield srv.getsockname()[1]
    stop.set()
    srv.shutdown(socket.SHUT_RDWR)
    srv.close()
    t.join(5)


def ask(sock: socket.socket, n: int) -> None:
    sock.sendall(f"{n}\n".encode())
    got = 0
    while got < n:
        chunk = sock.recv(1 << 16)
        assert chunk, "relay closed early"
        got += len(chunk)


def timed_fetch(port: int, n: int) -> float:
    t0 = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port)) as s:
        ask(s, n)
    return time.perf_counter() - t0


def test_one_connection_is_held_to_its_cap(echo_port: int) -> None:
    with LinkProxy(echo_port, rate_bps=100 * MB, conn_bps=4 * MB) as link:
        took = timed_fetch(link.port, 2 * MB)
    assert 0.45 < took < 1.5  # 2 MB at 4 MB/s, the link being far faster


def test_connections_share_the_link(echo_port: int) -> None:
    with LinkProxy(echo_port, rate_bps=6 * MB, conn_bps=4 * MB) as link:
        t0 = time.perf_counter()
        with ThreadPoolExecutor(3) as pool:
            list(pool.map(lambda _: timed_fetch(link.port, 2 * MB), range(3)))
        took = time.perf_counter() - t0
        carried = link.measured_bps()
    # 6 MB through a 6 MB/s link: the link, not the three 4 MB/s caps, is the limit.
    assert 0.95 < took < 2.5
    assert 5 * MB < carried <= 6.1 * MB


def test_round_trips_cost_their_time(echo_port: int) -> None:
    with LinkProxy(echo_port, rate_bps=100 * MB, rtt_s=0.1) as link:
        t0 = time.perf_counter()
        with socket.create_connection(("127.0.0.1", link.port)) as s:
            ask(s, 10)
            first = time.perf_counter() - t0
            t1 = time.perf_counter()
            ask(s, 10)
            second = time.perf_counter() - t1
    assert 0.2 <= first < 0.6  # handshake and request: two round trips
    assert 0.1 <= second < 0.4  # a kept-alive connection: one


def test_without_shaping_options_it_is_a_plain_link(echo_port: int) -> None:
    with LinkProxy(echo_port, rate_bps=50 * MB) as link:
        took = timed_fetch(link.port, 5 * MB)
    assert 0.09 < took < 1.5
