"""A small HTTP/1.1 client for file transfers: pooled keep-alive connections, redirects, ranges.

Built on ``http.client`` rather than a general-purpose client because transfers are bound by how
few copies each byte takes: ``readinto`` a reused buffer moves ~3 GB/s here, where a
general-purpose streaming client managed ~250 MB/s per connection on the same machine. It does
only what sources need: GET/HEAD, redirects (dropping ``Authorization`` when the origin changes,
as browsers do), TLS with the system's or certifi's roots, an HTTPS proxy through CONNECT, and
errors whose text never carries a URL's query (where presigned URLs keep their signature).
"""

from __future__ import annotations

import contextlib
import json
import queue
import threading
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from ..redact import strip_query
from .http_errors import HttpError, RangeNotHonouredError, transport_error

if TYPE_CHECKING:
    # Imported where used: http.client and ssl cost ~40 ms, and `wan models check` never needs them.
    import http.client
    import ssl

    from ..config import OrchestratorConfig

REDIRECTS = (301, 302, 303, 307, 308)
TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
MAX_REDIRECTS = 5
CONNECT_TIMEOUT_S = 15.0
READ_BUFFER = 1 << 20
IDLE_PER_ORIGIN = 16
# A body slower than this (bytes a second) over a whole read-timeout window is stalled too: a
# server that trickles a few bytes now and then never stays silent long enough for the timeout.
# Far below any real link shared by a few dozen connections.
LOW_SPEED_BPS = 1024


@dataclass(frozen=True)
class Origin:
    scheme: str
    host: str
    port: int

    @classmethod
    def of(cls, url: str) -> Origin:
        u = urllib.parse.urlsplit(url)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise HttpError(f"not an http(s) URL: {strip_query(url)}")
        return cls(u.scheme, u.hostname, u.port or (443 if u.scheme == "https" else 80))


@dataclass
class Response:
    status: int
    headers: dict[str, str]  # lower-case names
    url: str  # after redirects
    _resp: http.client.HTTPResponse
    _conn: http.client.HTTPConnection
    _client: HttpClient
    _origin: Origin
    _reusable: bool = field(default=True)

    def readinto(self, buf: memoryview) -> int:
        import http.client

        try:
            n = self._resp.readinto(buf)
        except (OSError, http.client.HTTPException) as exc:
            self._reusable = False
            raise transport_error(exc, self.url) from None
        if n == 0 and len(buf) and self._resp.length:
            # End of stream before the declared Content-Length: the peer hung up mid-body.
            self._reusable = False
            raise HttpError(
                f"connection to {strip_query(self.url)} closed mid-body",
                transient=True,
                reason="connection",
            )
        return n

    def read_all(self, limit: int = 64 << 20) -> bytes:
        import http.client

        try:
            data = self._resp.read(limit + 1)
        except (OSError, http.client.HTTPException) as exc:
            self._reusable = False
            raise transport_error(exc, self.url) from None
        if len(data) > limit:
            self._reusable = False
            raise HttpError(f"answer from {strip_query(self.url)} is larger than {limit} bytes")
        return data

    def close(self) -> None:
        if self._reusable and self._resp.isclosed() and not self._resp.will_close:
            self._client._release(self._origin, self._conn)
        else:
            self._conn.close()


class _OneRecv:
    """A response's socket file whose ``readinto`` returns after at most one socket read.

    ``HTTPResponse.readinto`` fills the whole buffer, through as many socket reads as it takes:
    a body that trickles in (each read well within the socket timeout) would keep it there for
    hours, and the caller could never see that it crawls. Everything else (``read``,
    ``readline``, ``close``) is the file's own. Not used for chunked bodies, which need full
    reads.
    """

    def __init__(self, fp: Any) -> None:
        self._fp = fp

    def readinto(self, buf: Any) -> int:
        n: int = self._fp.readinto1(buf)
        return n

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fp, name)


class HttpClient:
    """Thread-safe; one per source. ``auth`` headers go only to ``auth_origin``."""

    def __init__(
        self,
        *,
        user_agent: str,
        read_timeout_s: float,
        auth_headers: Mapping[str, str] | None = None,
        auth_origin: str | None = None,
        proxies: Mapping[str, str] | None = None,
        no_proxy: str = "",
        low_speed_bps: float = LOW_SPEED_BPS,
    ) -> None:
        self.user_agent = user_agent
        self.read_timeout_s = read_timeout_s
        self.low_speed_bps = low_speed_bps
        self.auth_headers = dict(auth_headers or {})
        self.auth_origin = Origin.of(auth_origin) if auth_origin else None
        self.proxies = dict(proxies or {})
        self.no_proxy = [h.strip().lstrip(".").lower() for h in no_proxy.split(",") if h.strip()]
        self._idle: dict[Origin, queue.LifoQueue[http.client.HTTPConnection]] = {}
        self._lock = threading.Lock()
        self._ssl: ssl.SSLContext | None = None

    @classmethod
    def for_source(
        cls,
        config: OrchestratorConfig,
        kind: str,
        *,
        auth_headers: Mapping[str, str] | None = None,
        auth_origin: str | None = None,
    ) -> HttpClient:
        return cls(
            user_agent=f"wan-desktop (orchestrator; {kind} source)",
            read_timeout_s=config.stall_timeout_s,
            auth_headers=auth_headers,
            auth_origin=auth_origin,
            proxies=config.proxies,
            no_proxy=config.no_proxy,
        )

    # ------------------------------------------------------------------------- connections

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            import ssl

            ctx = ssl.create_default_context()
            with contextlib.suppress(ImportError, OSError):
                import certifi

                ctx.load_verify_locations(certifi.where())
            self._ssl = ctx
        return self._ssl

    def _proxy_for(self, origin: Origin) -> str | None:
        host = origin.host.lower()
        if host in ("127.0.0.1", "localhost", "::1") or any(
            host == h or host.endswith("." + h) for h in self.no_proxy
        ):
            return None
        return self.proxies.get(origin.scheme)

    def _connect(self, origin: Origin) -> http.client.HTTPConnection:
        import http.client

        proxy = self._proxy_for(origin)
        conn: http.client.HTTPConnection
        target_host, target_port = origin.host, origin.port
        if proxy:
            p = urllib.parse.urlsplit(proxy)
            target_host, target_port = p.hostname or "", p.port or 8080
        if origin.scheme == "https":
            conn = http.client.HTTPSConnection(
                target_host, target_port, timeout=CONNECT_TIMEOUT_S, context=self._ssl_context()
            )
        else:
            conn = http.client.HTTPConnection(target_host, target_port, timeout=CONNECT_TIMEOUT_S)
        if proxy and origin.scheme == "https":
            conn.set_tunnel(origin.host, origin.port)
        conn.connect()
        if conn.sock is not None:
            import socket

            conn.sock.settimeout(self.read_timeout_s)
            with contextlib.suppress(OSError):
                conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn

    def _acquire(self, origin: Origin) -> tuple[http.client.HTTPConnection, bool]:
        with self._lock:
            idle = self._idle.get(origin)
        if idle is not None:
            try:
                return idle.get_nowait(), True
            except queue.Empty:
                pass
        return self._connect(origin), False

    def _release(self, origin: Origin, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            idle = self._idle.setdefault(origin, queue.LifoQueue())
        if idle.qsize() < IDLE_PER_ORIGIN:
            idle.put(conn)
        else:
            conn.close()

    def close(self) -> None:
        with self._lock:
            pools, self._idle = list(self._idle.values()), {}
        for idle in pools:
            while True:
                try:
                    idle.get_nowait().close()
                except queue.Empty:
                    break

    # ---------------------------------------------------------------------------- requests

    def _send(
        self, method: str, url: str, headers: Mapping[str, str]
    ) -> tuple[http.client.HTTPResponse, http.client.HTTPConnection, Origin]:
        import http.client

        origin = Origin.of(url)
        u = urllib.parse.urlsplit(url)
        target = (u.path or "/") + (f"?{u.query}" if u.query else "")
        if self._proxy_for(origin) and origin.scheme == "http":
            target = url  # a plain-HTTP proxy takes the absolute URI
        hdrs = {"User-Agent": self.user_agent, "Accept-Encoding": "identity", **headers}
        if self.auth_origin == origin:
            hdrs.update(self.auth_headers)
        for attempt in (1, 2):
            try:
                conn, reused = self._acquire(origin)
            except (OSError, http.client.HTTPException) as exc:
                raise transport_error(exc, url) from None
            try:
                conn.request(method, target, headers=hdrs)
                return conn.getresponse(), conn, origin
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                # A kept-alive connection the server closed meanwhile: one fresh try.
                if reused and attempt == 1:
                    continue
                raise transport_error(exc, url) from None
        raise AssertionError("unreachable")

    @contextlib.contextmanager
    def open(
        self, url: str, *, method: str = "GET", headers: Mapping[str, str] | None = None
    ) -> Iterator[Response]:
        """The final response after redirects; error statuses raise :class:`HttpError`."""
        import http.client

        current = url
        for _ in range(MAX_REDIRECTS + 1):
            resp, conn, origin = self._send(method, current, headers or {})
            status = resp.status
            hdrs = {k.lower(): v for k, v in resp.getheaders()}
            if status in REDIRECTS and "location" in hdrs:
                with contextlib.suppress(OSError, http.client.HTTPException):
                    resp.read()
                Response(status, hdrs, current, resp, conn, self, origin).close()
                current = urllib.parse.urljoin(current, hdrs["location"])
                continue
            r = Response(status, hdrs, current, resp, conn, self, origin)
            if resp.fp is not None and not resp.chunked:
                resp.fp = cast(Any, _OneRecv(resp.fp))
            if status >= 400:
                try:
                    body = r.read_all(limit=64 * 1024)
                except HttpError:
                    body = b""
                r.close()
                raise HttpError(
                    f"{strip_query(current)} answered HTTP {status}",
                    status=status,
                    headers=hdrs,
                    body=body,
                    transient=status in TRANSIENT_STATUS,
                    reason="rate_limit" if status == 429 else f"status_{status // 100}xx",
                )
            try:
                yield r
            except BaseException:
                r._reusable = False
                raise
            finally:
                r.close()
            return
        raise HttpError(f"too many redirects from {strip_query(url)}")

    def get_json(self, url: str, *, headers: Mapping[str, str] | None = None) -> tuple[Any, Any]:
        """(document, headers) of a JSON GET."""
        with self.open(url, headers={"Accept": "application/json", **(headers or {})}) as r:
            data = r.read_all()
            hdrs = r.headers
        try:
            return json.loads(data), hdrs
        except ValueError:
            raise HttpError(f"{strip_query(url)} did not answer JSON") from None

    def read_range(
        self,
        url: str,
        start: int,
        end: int,
        write: Callable[[memoryview], None],
        *,
        headers: Mapping[str, str] | None = None,
        buffer: bytearray | None = None,
    ) -> int:
        """Stream bytes ``[start, end)`` of ``url`` into ``write``; returns the count delivered.

        Fewer bytes than asked means the server ended the body early (a truncated answer); the
        caller decides whether to ask again for the rest.
        """
        import time

        hdrs = {"Range": f"bytes={start}-{end - 1}", **(headers or {})}
        buf = buffer if buffer is not None else bytearray(READ_BUFFER)
        view = memoryview(buf)
        with self.open(url, headers=hdrs) as r:
            if r.status == 200 and start != 0:
                r._reusable = False
                raise RangeNotHonouredError(
                    f"{strip_query(url)} ignored a ranged request", status=200, headers=r.headers
                )
            if r.status == 206:
                got = r.headers.get("content-range", "")
                first = got.removeprefix("bytes ").split("-", 1)[0]
                if first.strip() != str(start):
                    r._reusable = False
                    raise HttpError(
                        f"{strip_query(url)} sent range {got!r} for bytes={start}-{end - 1}",
                        transient=True,
                        reason="bad_range",
                    )
            want = end - start
            delivered = 0
            window_t, window_bytes = time.monotonic(), 0
            crawling = False
            while delivered < want and not crawling:
                n = 0
                cap = min(len(buf), want - delivered)
                # Fill the buffer before writing: fewer, larger writes.
                try:
                    while n < cap:
                        k = r.readinto(view[n:cap])
                        if k == 0:
                            break
                        n += k
                        window_bytes += k
                        elapsed = time.monotonic() - window_t
                        if elapsed >= self.read_timeout_s:
                            if window_bytes < self.low_speed_bps * elapsed:
                                crawling = True
                                break
                            window_t, window_bytes = window_t + elapsed, 0
                except HttpError:
                    # The body ended early or stalled: what did arrive is kept, so the retry
                    # asks only for the rest.
                    if n:
                        write(view[:n])
                    raise
                if n == 0:
                    break
                write(view[:n])  # what did arrive is kept
                delivered += n
            if crawling:
                r._reusable = False
                raise HttpError(
                    f"{strip_query(url)} sent under {self.low_speed_bps:.0f} bytes/s for "
                    f"{self.read_timeout_s:g} s (stalled)",
                    transient=True,
                    reason="stall",
                )
            if delivered >= want and not r._resp.isclosed():
                # A server that sent more than asked (a 200 for the whole file): stop here.
                r._reusable = False
            return delivered
