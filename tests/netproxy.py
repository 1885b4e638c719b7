"""Network stand-ins on 127.0.0.1: a link of a given speed, and an HTTP forward proxy.

``LinkProxy`` relays TCP to a local server and makes every connection through it share one
link of ``rate_bps`` bytes per second towards the client (a token bucket without burst credit),
so a benchmark can put a realistic download link in front of a loopback server and apply it
equally to every contender. Optionally it adds a round-trip time (half of it each way, one more
for a new connection's handshake) and caps each connection at ``conn_bps``: over a long path a
single TCP stream is held well under the link by loss and its window (the reason download
accelerators open several), and a request costs a round trip however small it is.
``CutProxy`` drops a connection after so many bytes (a download that must resume).
``ForwardProxy`` is what ``HTTP_PROXY``/``HTTPS_PROXY`` point at:
it takes absolute-URI requests and ``CONNECT`` tunnels, resolves host names through its own
table (so a client that bypassed it could not reach the fake host at all) and logs what it saw.
"""

from __future__ import annotations

import contextlib
import queue
import socket
import threading
import time
from dataclasses import dataclass
from typing import Self

CHUNK = 64 * 1024
# Chunks a delayed pipe has on their way before it stops reading (back-pressure on the sender).
IN_FLIGHT = 256


class _Link:
    """One shared link: each chunk takes its turn and ``n / rate`` seconds of it."""

    def __init__(self, rate_bps: float) -> None:
        self.rate_bps = rate_bps
        self._free_at = 0.0
        self._lock = threading.Lock()
        self.bytes = 0
        self.busy_from: float | None = None
        self.busy_to = 0.0

    def reserve(self, n: int) -> float:
        """Book ``n`` bytes on the link; the time they have passed it."""
        with self._lock:
            start = max(time.monotonic(), self._free_at)  # an idle link saves up no credit
            self._free_at = start + n / self.rate_bps
            done = self._free_at
            self.bytes += n
            if self.busy_from is None:
                self.busy_from = start
            self.busy_to = done
        return done

    def take(self, n: int) -> None:
        _sleep_until(self.reserve(n))


def _sleep_until(t: float) -> None:
    delay = t - time.monotonic()
    if delay > 0:
        time.sleep(delay)


class Relay:
    """Accepts on 127.0.0.1 and pipes each connection both ways; subclasses pick the upstream."""

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(128)
        self.port: int = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Self:
        self._spawn(self._accept)
        return self

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)  # wakes the accept(); close() alone does not
        self._sock.close()
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
            c.close()
        for t in list(self._threads):
            t.join(5)

    def _spawn(self, target: object, *args: object) -> None:
        t = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        t.start()
        with self._lock:
            self._threads.append(t)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with self._lock:
                self._conns.append(conn)
            self._spawn(self._serve, conn)

    def _serve(self, conn: socket.socket) -> None:
        raise NotImplementedError

    def _upstream(self, conn: socket.socket, port: int) -> socket.socket | None:
        """A connection to the local ``port`` for ``conn``, closed with it by ``stop``; None
        (``conn`` closed) when nothing listens there."""
        try:
            upstream = socket.create_connection(("127.0.0.1", port))
        except OSError:
            conn.close()
            return None
        with self._lock:
            self._conns.append(upstream)
        return upstream

    def _pipe_both(
        self, client: socket.socket, upstream: socket.socket, link: _Link | None
    ) -> None:
        """For an upstream not opened by ``_upstream``."""
        with self._lock:
            self._conns.append(upstream)
        self._spawn(_pipe, client, upstream, None)
        _pipe(upstream, client, link)


def _pipe(src: socket.socket, dst: socket.socket, link: _Link | None) -> None:
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    try:
        while True:
            n = src.recv_into(buf)
            if not n:
                break
            if link is not None:
                link.take(n)
            dst.sendall(view[:n])
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


class LinkProxy(Relay):
    """127.0.0.1 TCP relay to ``target_port``; downstream bytes share one ``rate_bps`` link.

    ``rtt_s`` delays every byte by half of it in each direction (and a new connection's first
    bytes by a further round trip, its handshake); ``conn_bps`` caps each connection's download;
    ``up_bps`` shapes what each connection sends up (an upload over a home line).
    """

    def __init__(
        self,
        target_port: int,
        *,
        rate_bps: float,
        rtt_s: float = 0.0,
        conn_bps: float | None = None,
        up_bps: float | None = None,
    ) -> None:
        super().__init__()
        self.target_port = target_port
        self.link = _Link(rate_bps)
        self.rtt_s = rtt_s
        self.conn_bps = conn_bps
        self.up_bps = up_bps

    def measured_bps(self) -> float:
        """Bytes per second the link carried while it was busy (checks the shaping)."""
        link = self.link
        if link.busy_from is None or link.busy_to <= link.busy_from:
            return 0.0
        return link.bytes / (link.busy_to - link.busy_from)

    def _serve(self, conn: socket.socket) -> None:
        upstream = self._upstream(conn, self.target_port)
        if upstream is None:
            return
        for s in (conn, upstream):
            with contextlib.suppress(OSError):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        up = _Link(self.up_bps) if self.up_bps is not None else None
        if not self.rtt_s and self.conn_bps is None:
            self._spawn(_pipe, conn, upstream, up)
            _pipe(upstream, conn, self.link)
            return
        one_way = self.rtt_s / 2
        self._spawn(_pipe_delayed, conn, upstream, up, one_way, self.rtt_s)
        cap = _Link(self.conn_bps) if self.conn_bps else None
        _pipe_delayed(upstream, conn, self.link, one_way, 0.0, cap)


class CutProxy(Relay):
    """127.0.0.1 TCP relay to ``target_port`` that drops the link: each of the first ``cuts``
    connections (with ``marker``: of those carrying a request that contains it) is closed both
    ways once ``cut_after`` bytes went down to the client (as when a Wi-Fi link or a VPN drops
    mid-download). Later connections pass whole. ``frozen`` swallows bytes both ways and closes
    nothing: a dead link that nobody closed (a sleeping router, say)."""

    def __init__(
        self, target_port: int, *, cut_after: int, cuts: int = 1, marker: bytes | None = None
    ) -> None:
        super().__init__()
        self.target_port = target_port
        self.cut_after = cut_after
        self.cuts_left = cuts
        self.marker = marker
        self.cut = 0  # connections cut so far
        self.frozen = False

    def _take_cut(self) -> bool:
        with self._lock:
            cut = self.cuts_left > 0
            self.cuts_left -= 1 if cut else 0
        return cut

    def _serve(self, conn: socket.socket) -> None:
        upstream = self._upstream(conn, self.target_port)
        if upstream is None:
            return
        state = {"armed": self.marker is None and self._take_cut(), "sent": 0}
        self._spawn(self._pipe, conn, upstream, True, state)
        self._pipe(upstream, conn, False, state)

    def _pipe(
        self, src: socket.socket, dst: socket.socket, up: bool, state: dict[str, int]
    ) -> None:
        try:
            while data := src.recv(CHUNK):
                if self.frozen:
                    continue
                marked = up and self.marker is not None and self.marker in data
                if marked and not state["armed"] and self._take_cut():
                    state["armed"] = True
                if not up and state["armed"]:
                    room = self.cut_after - state["sent"]
                    if len(data) >= room:
                        dst.sendall(data[:room])
                        with self._lock:
                            self.cut += 1
                        state["armed"] = False
                        raise OSError("cut")
                    state["sent"] += len(data)
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()


def _pipe_delayed(
    src: socket.socket,
    dst: socket.socket,
    link: _Link | None,
    delay_s: float,
    first_extra_s: float,
    cap: _Link | None = None,
) -> None:
    """Like :func:`_pipe`, but bytes are read no faster than ``cap`` and ``link`` let them
    through, and each chunk is sent on ``delay_s`` after it passed (the first ``first_extra_s``
    later still). At most ``IN_FLIGHT`` chunks are on their way at once, like a TCP window."""
    on_the_way: queue.Queue[tuple[float, bytes] | None] = queue.Queue(IN_FLIGHT)

    def send() -> None:
        try:
            while (item := on_the_way.get()) is not None:
                _sleep_until(item[0])
                dst.sendall(item[1])
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)

    threading.Thread(target=send, daemon=True).start()
    extra = first_extra_s
    try:
        while data := src.recv(CHUNK):
            # Both booked from now: the connection's own pace and its share of the link; the
            # chunk has passed when both say so (a connection under its cap loses nothing).
            passed = max(
                cap.reserve(len(data)) if cap is not None else 0.0,
                link.reserve(len(data)) if link is not None else 0.0,
            )
            _sleep_until(passed)
            on_the_way.put((time.monotonic() + delay_s + extra, data))
            extra = 0.0
    except OSError:
        pass
    finally:
        on_the_way.put(None)


@dataclass
class ProxiedRequest:
    method: str
    target: str  # absolute URI, or host:port for CONNECT
    authorization: str | None = None


class ForwardProxy(Relay):
    """An HTTP proxy for ``hosts`` (``name`` or ``name:port`` → a 127.0.0.1 port); others: 502."""

    def __init__(self, hosts: dict[str, int]) -> None:
        super().__init__()
        self.hosts = hosts
        self.log: list[ProxiedRequest] = []

    def _serve(self, conn: socket.socket) -> None:
        # One request per connection is enough for a client that falls back to a new one.
        head = b""
        with contextlib.suppress(OSError):
            conn.settimeout(10)
            while b"\r\n\r\n" not in head and len(head) < 65536:
                data = conn.recv(65536)
                if not data:
                    break
                head += data
            conn.settimeout(None)
        header, _, rest = head.partition(b"\r\n\r\n")
        lines = header.decode("latin-1").split("\r\n")
        try:
            method, target, version = lines[0].split(" ", 2)
        except ValueError:
            conn.close()
            return
        fields = {
            k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])
        }
        with self._lock:
            self.log.append(ProxiedRequest(method, target, fields.get("authorization")))
        if method == "CONNECT":
            host, _, port = target.rpartition(":")
            upstream = self._open(host, int(port or 443))
            if upstream is None:
                self._refuse(conn, version)
                return
            conn.sendall(f"{version} 200 Connection established\r\n\r\n".encode())
            self._pipe_both(conn, upstream, None)
            return
        if not target.startswith("http://"):
            self._refuse(conn, version)
            return
        hostport, _, path = target.removeprefix("http://").partition("/")
        host, _, port = hostport.partition(":")
        upstream = self._open(host, int(port or 80))
        if upstream is None:
            self._refuse(conn, version)
            return
        # Forward in origin form, one request per connection: the answer says so to the client.
        kept = [ln for ln in lines[1:] if not ln.lower().startswith(("connection:", "proxy-"))]
        request = "\r\n".join([f"{method} /{path} {version}", *kept, "Connection: close", "", ""])
        upstream.sendall(request.encode("latin-1") + rest)
        answer = b""
        with contextlib.suppress(OSError):
            while b"\r\n\r\n" not in answer and len(answer) < 65536:
                data = upstream.recv(65536)
                if not data:
                    break
                answer += data
        head, sep, body = answer.partition(b"\r\n\r\n")
        conn.sendall(head + b"\r\nConnection: close" + sep + body)
        self._pipe_both(conn, upstream, None)

    def _open(self, host: str, port: int) -> socket.socket | None:
        local = self.hosts.get(f"{host}:{port}", self.hosts.get(host))
        if local is None:
            return None
        try:
            return socket.create_connection(("127.0.0.1", local))
        except OSError:
            return None

    @staticmethod
    def _refuse(conn: socket.socket, version: str) -> None:
        with contextlib.suppress(OSError):
            conn.sendall(f"{version} 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n".encode())
        conn.close()
