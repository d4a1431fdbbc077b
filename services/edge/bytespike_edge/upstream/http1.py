"""The edge's own upstream client: HTTP/1.1 keep-alive on `asyncio.Protocol` + httptools.

Why not aiohttp: per request, aiohttp builds a `ClientRequest`, a `ClientResponse`, a
payload object, a timer context and a `StreamReader`, writes the head and the body as two
buffers and runs the response through several layers of coroutines. Under the benchmark's
load that was ~20 % of the edge's CPU (docs/performance.md). This client does what the
edge needs and no more: one POST with a body that is already in memory, the request written
with one `transport.write`, the response parsed by httptools (llhttp, the parser uvicorn
uses) straight into a buffer the caller reads, no per-request task or timer object beyond
one `TimerHandle` per wait. One exchange on one connection is `http1_exchange.py`; this
module holds the connection pool and the client.

Semantics match `AiohttpUpstream` (tests/edge/test_upstream_clients.py runs the same cases
on every client): `connect` bounds the TCP (+TLS) connect, plus up to `POOL_WAIT` for a
free connection when `max_connections` are busy; `first_byte` bounds every wait for data
(the response head first, then each body read); `total` the whole exchange. Failures
surface as `UpstreamTimeout` / `UpstreamUnavailable`, before and after the head alike. No
cookie is ever kept. A body read to its end returns the connection to the pool; a response
closed midway closes its connection. A request that fails on a pooled connection the
server had already closed (no byte of answer came back) is retried once on a new one, as
Go's transport does: the server never read it.

Scope, deliberately: HTTP/1.1 only (ALPN offers nothing else), `http` and `https` origins
reached directly. Origins behind `HTTP(S)_PROXY` go through `AiohttpUpstream`, which
speaks CONNECT; `gzip` / `deflate` bodies are decoded (we ask for `identity`, a provider
header may not), other content codings fail the attempt.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import socket
import ssl
from collections.abc import Mapping
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from bytespike_common.errors import UpstreamTimeout, UpstreamUnavailable
from bytespike_edge.upstream.aiohttp_client import AiohttpUpstream
from bytespike_edge.upstream.client import Timeouts, UpstreamResponse
from bytespike_edge.upstream.http1_exchange import (
    Connection,
    Http1Response,
    Origin,
    StaleConnection,
    fail_message,
)
from bytespike_edge.upstream.proxies import EnvProxies

# Seconds a request may wait for a free connection when all `max_connections` are busy.
POOL_WAIT = 5.0
# A pooled connection idle longer than this is closed rather than reused (aiohttp's
# default): servers drop idle keep-alive connections, and a request must not race that.
IDLE_KEEPALIVE = 15.0
# Seconds a resolved address list is reused (aiohttp's `ttl_dns_cache` in the old client).
DNS_TTL = 300.0
# Distinct upstream URLs whose parsed form is kept (one per provider and model path).
MAX_TARGETS = 1024
# Headers the client writes itself; a caller's copy is dropped, never sent twice.
_OWN_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection"})


class _Target(NamedTuple):
    origin: Origin
    # `POST <path> HTTP/1.1\r\nhost: <host>\r\n`, shared by every request to this URL.
    head: str


class _Pool:
    """Keep-alive connections per origin, at most `limit` open in all."""

    def __init__(self, limit: int, tls: ssl.SSLContext | None) -> None:
        self._limit = limit
        self._open: set[Connection] = set()
        self._idle: dict[Origin, list[Connection]] = {}
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._addresses: dict[tuple[str, int], tuple[float, list[Any]]] = {}
        if tls is None:
            tls = ssl.create_default_context()
            tls.set_alpn_protocols(["http/1.1"])
        self._tls = tls

    async def acquire(self, origin: Origin, connect_timeout: float) -> Connection:
        loop = asyncio.get_running_loop()
        give_up: float | None = None
        while True:
            conn = self._take_idle(origin, loop.time())
            if conn is not None:
                return conn
            if len(self._open) < self._limit or self._evict_idle():
                return await self._connect(loop, origin, connect_timeout)
            if give_up is None:
                give_up = loop.time() + POOL_WAIT
            await self._wait_for_slot(loop, give_up)

    def _take_idle(self, origin: Origin, now: float) -> Connection | None:
        idle = self._idle.get(origin)
        while idle:
            conn = idle.pop()  # the most recently used: the least likely to be stale
            if now - conn.idle_since > IDLE_KEEPALIVE:
                conn.close()
                continue
            conn.reused = True
            return conn
        return None

    def _evict_idle(self) -> bool:
        """Frees a slot held by an idle connection to another origin, if there is one."""
        for idle in self._idle.values():
            if idle:
                idle[0].close()  # the longest idle
                return True
        return False

    async def _wait_for_slot(self, loop: asyncio.AbstractEventLoop, give_up: float) -> None:
        remaining = give_up - loop.time()
        if remaining <= 0:
            raise UpstreamTimeout("upstream timed out: no free connection in the pool")
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(remaining):
                await waiter
        except BaseException as exc:
            if waiter.done() and not waiter.cancelled():
                self._notify()  # a wake-up this request will not use goes to the next one
            if isinstance(exc, TimeoutError):
                raise UpstreamTimeout("upstream timed out: no free connection in the pool") from exc
            raise
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)

    def _notify(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def _connect(
        self, loop: asyncio.AbstractEventLoop, origin: Origin, timeout: float
    ) -> Connection:
        conn = Connection(self, origin)
        self._open.add(conn)  # holds the slot while connecting
        try:
            async with asyncio.timeout(timeout):
                await self._open_socket(loop, conn, origin)
        except BaseException as exc:
            self.forget(conn)
            if isinstance(exc, TimeoutError):
                raise UpstreamTimeout("upstream timed out: connect") from exc
            if isinstance(exc, OSError):  # ssl.SSLError and socket.gaierror are OSErrors
                raise UpstreamUnavailable(fail_message(exc)) from exc
            raise
        if conn.closed:  # the connection dropped between the handshake and now
            raise UpstreamUnavailable(fail_message(None))
        return conn

    async def _open_socket(
        self, loop: asyncio.AbstractEventLoop, conn: Connection, origin: Origin
    ) -> None:
        tls = self._tls if origin.https else None
        last: OSError = OSError(f"no address for {origin.host}")
        for family, _, proto, _, address in await self._resolve(loop, origin):
            try:
                await loop.create_connection(
                    lambda: conn,
                    address[0],
                    address[1],
                    family=family,
                    proto=proto,
                    ssl=tls,
                    server_hostname=origin.host if tls else None,
                )
                return
            except OSError as exc:
                last = exc
        raise last

    async def _resolve(self, loop: asyncio.AbstractEventLoop, origin: Origin) -> list[Any]:
        key = (origin.host, origin.port)
        now = loop.time()
        cached = self._addresses.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        found = await loop.getaddrinfo(origin.host, origin.port, type=socket.SOCK_STREAM)
        if len(self._addresses) >= MAX_TARGETS:
            self._addresses.clear()
        self._addresses[key] = (now + DNS_TTL, found)
        return found

    def release(self, conn: Connection) -> None:
        conn.idle_since = asyncio.get_running_loop().time()
        self._idle.setdefault(conn.origin, []).append(conn)
        self._notify()

    def forget(self, conn: Connection) -> None:
        """A connection closed (by us or the server): its slot is free."""
        if conn in self._open:
            self._open.discard(conn)
            idle = self._idle.get(conn.origin)
            if idle and conn in idle:
                idle.remove(conn)
            self._notify()

    def close(self) -> None:
        for conn in list(self._open):
            conn.close()


def _target(url: str) -> _Target:
    parts = urlsplit(url)
    https = parts.scheme == "https"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UpstreamUnavailable(f"unsupported upstream URL scheme: {parts.scheme}")
    port = parts.port or (443 if https else 80)
    host = parts.hostname
    authority = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        authority = f"{authority}:{parts.port}"
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return _Target(Origin(https, host, port), f"POST {path} HTTP/1.1\r\nhost: {authority}\r\n")


def _request_head(target: _Target, headers: Mapping[str, str], body: bytes) -> bytes:
    lines = [target.head]
    for name, value in headers.items():
        if name.lower() in _OWN_HEADERS:
            continue
        # Defence in depth: header values come from the route table and allow-listed
        # client headers the server already parsed, but a newline would split the request.
        if "\n" in value or "\r" in value or "\n" in name or "\r" in name:
            raise UpstreamUnavailable(f"refusing a header with a line break: {name}")
        lines.append(f"{name}: {value}\r\n")
    lines.append(f"content-length: {len(body)}\r\n\r\n")
    return "".join(lines).encode("utf-8")


class Http1Upstream:
    def __init__(
        self,
        max_connections: int,
        proxies: EnvProxies | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self._max_connections = max_connections
        self._proxies = proxies or EnvProxies()
        # `tls`: the system's trust store unless given (tests pass their own CA).
        self._pool = _Pool(max_connections, tls)
        self._targets: dict[str, _Target] = {}
        self._proxied: AiohttpUpstream | None = None

    async def send(
        self, url: str, headers: Mapping[str, str], body: bytes, timeouts: Timeouts
    ) -> UpstreamResponse:
        if self._proxies.for_url(url) is not None:
            return await self._via_proxy().send(url, headers, body, timeouts)
        target = self._targets.get(url)
        if target is None:
            if len(self._targets) >= MAX_TARGETS:
                self._targets.clear()
            target = self._targets[url] = _target(url)
        head = _request_head(target, headers, body)
        loop = asyncio.get_running_loop()
        deadline = None if timeouts.total is None else loop.time() + timeouts.total
        for retry in (False, True):
            conn = await self._pool.acquire(target.origin, timeouts.connect)
            response = Http1Response(loop, conn, timeouts.first_byte, deadline)
            try:
                conn.begin(response, head, body)
                await response._wait_head()
            except StaleConnection:
                if retry:
                    raise
                continue
            except BaseException:
                # Half an exchange (a timeout, a cancelled caller): the connection is done.
                conn.close()
                raise
            return response
        raise AssertionError("unreachable")  # pragma: no cover

    def _via_proxy(self) -> AiohttpUpstream:
        if self._proxied is None:
            self._proxied = AiohttpUpstream(self._max_connections, self._proxies)
        return self._proxied

    async def aclose(self) -> None:
        self._pool.close()
        if self._proxied is not None:
            await self._proxied.aclose()
        # Lets the transports finish closing before the loop goes away.
        await asyncio.sleep(0)
