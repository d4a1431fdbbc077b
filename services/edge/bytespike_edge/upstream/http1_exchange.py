"""One HTTP/1.1 exchange on one keep-alive connection: the protocol, the parser, the answer.

`Connection` is the `asyncio.Protocol`: it writes a request's head and body with one
`transport.writelines` (sent at the end of the loop's turn with the turn's other writes:
`bytespike_edge.deferred_writes`) and feeds what comes back to httptools (llhttp, the
parser uvicorn uses), whose callbacks fill the `Http1Response` the caller reads from: no
task, no stream object, one `TimerHandle` per wait. The pool that owns connections is
`http1.py`.
"""

from __future__ import annotations

import asyncio
import collections
import zlib
from collections.abc import Mapping
from typing import Any, NamedTuple, Protocol, cast

import httptools
from multidict import CIMultiDict, CIMultiDictProxy

from bytespike_common.errors import UpstreamTimeout, UpstreamUnavailable
from bytespike_edge.deferred_writes import DeferredTransport

# Unread body bytes above which the socket stops being read until the caller catches up
# (a slow client of a fast stream must not buffer the whole answer here).
HIGH_WATER = 256 * 1024
# A response head larger than this is refused (llhttp itself sets no limit).
MAX_HEAD_BYTES = 64 * 1024
_NO_BODY_STATUS = frozenset({204, 304})


class Pool(Protocol):
    """What a connection tells its pool (`http1._Pool`)."""

    def release(self, conn: Connection) -> None:
        """The answer is complete and the connection can carry another request."""

    def forget(self, conn: Connection) -> None:
        """The connection is closed: its slot is free."""


class Origin(NamedTuple):
    https: bool
    host: str
    port: int


class StaleConnection(UpstreamUnavailable):
    """A pooled connection closed by the server before any byte of the answer: retryable."""


def fail_message(exc: BaseException | None) -> str:
    return f"upstream unreachable: {type(exc).__name__ if exc else 'connection closed'}"


class Http1Response:
    """An open upstream response: the head has arrived, the body is read as it comes."""

    __slots__ = (
        "_buffered",
        "_chunks",
        "_conn",
        "_deadline",
        "_decoder",
        "_done",
        "_error",
        "_headers",
        "_loop",
        "_raw_headers",
        "_read_timeout",
        "_waiter",
        "_whole",
        "status_code",
    )

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        conn: Connection,
        read_timeout: float,
        deadline: float | None,
    ) -> None:
        self._loop = loop
        self._conn: Connection | None = conn
        self._read_timeout = read_timeout
        self._deadline = deadline
        self._chunks: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._done = False
        self._whole = False
        self._error: Exception | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._decoder: Any = None
        self.status_code = 0
        self._raw_headers: list[tuple[bytes, bytes]] = []
        self._headers: Mapping[str, str] | None = None

    # -- fed by the connection --------------------------------------------------------------

    @property
    def headers(self) -> Mapping[str, str]:
        # Decoded on first use: a whole answer relayed as it came never needs them.
        if self._headers is None:
            self._headers = CIMultiDictProxy(
                CIMultiDict(
                    (name.decode("latin-1"), value.decode("latin-1"))
                    for name, value in self._raw_headers
                )
            )
        return self._headers

    def _head(self, status: int, raw_headers: list[tuple[bytes, bytes]], coding: str) -> None:
        if coding in ("gzip", "x-gzip"):
            self._decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif coding == "deflate":
            self._decoder = zlib.decompressobj()
        elif coding not in ("identity", ""):
            raise UpstreamUnavailable(f"upstream answered in an unsupported coding: {coding}")
        self.status_code = status
        self._raw_headers = raw_headers
        self._wake()

    def _feed(self, data: bytes) -> None:
        if self._decoder is not None:
            data = self._decoder.decompress(data)
            if not data:
                return
        self._chunks.append(data)
        self._buffered += len(data)
        if self._buffered > HIGH_WATER and self._conn is not None and not self._whole:
            self._conn.pause()
        self._wake()

    def _complete(self) -> None:
        if self._decoder is not None:
            tail = self._decoder.flush()
            if tail:
                self._chunks.append(tail)
        self._done = True
        self._conn = None
        self._wake()

    def _fail(self, error: Exception) -> None:
        if self._error is None:
            self._error = error
        self._conn = None
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- read by the caller -----------------------------------------------------------------

    async def _wait(self) -> None:
        """Until the connection has news, at most `first_byte` (and the total deadline)."""
        loop = self._loop
        waiter = self._waiter = loop.create_future()
        when = loop.time() + self._read_timeout
        if self._deadline is not None and self._deadline < when:
            when = self._deadline
        timer = loop.call_at(when, _time_out, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None

    async def _wait_head(self) -> None:
        while not self.status_code:
            if self._error is not None:
                raise self._error
            await self._wait()

    def _take(self) -> bytes:
        chunks = self._chunks
        chunk = chunks.popleft() if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self._buffered = 0
        if self._conn is not None:
            self._conn.resume()
        return chunk

    def aiter_bytes(self) -> Http1Response:
        return self

    def __aiter__(self) -> Http1Response:
        return self

    async def __anext__(self) -> bytes:
        while True:
            if self._chunks:
                return self._take()
            if self._error is not None:
                raise self._error
            if self._done:
                raise StopAsyncIteration
            await self._wait()

    async def aread(self) -> bytes:
        self._whole = True  # the caller takes it all at once: never pause the socket
        if self._conn is not None:
            self._conn.resume()
        while not self._done:
            if self._error is not None:
                raise self._error
            await self._wait()
        return self._take() if self._chunks else b""

    async def aclose(self) -> None:
        # A body not read to its end leaves unread bytes on the wire: never reuse that.
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


def _time_out(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(UpstreamTimeout("upstream timed out: no data in time"))


class Connection(asyncio.Protocol):
    """One keep-alive connection; `response` is the exchange it is carrying, if any."""

    def __init__(self, pool: Pool, origin: Origin) -> None:
        self.pool = pool
        self.origin = origin
        self.transport: asyncio.Transport | None = None
        self.response: Http1Response | None = None
        self.reused = False
        self.closed = False
        self.idle_since = 0.0
        self._parser = httptools.HttpResponseParser(self)
        self._paused = False
        # The message being parsed.
        self._raw_headers: list[tuple[bytes, bytes]] = []
        self._head_bytes = 0
        self._informational = False
        self._until_eof = False
        self._answered = False  # any byte of the current exchange's answer arrived

    # -- the exchange -----------------------------------------------------------------------

    def begin(self, response: Http1Response, head: bytes, body: bytes) -> None:
        assert self.transport is not None
        self.response = response
        self._answered = False
        # Head and body stay two buffers, uncopied: the deferred transport sends them in one
        # `writelines` at the end of the turn.
        self.transport.writelines((head, body))

    def pause(self) -> None:
        if not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        if self._paused and self.transport is not None and not self.closed:
            self._paused = False
            self.transport.resume_reading()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.transport is not None:
                self.transport.close()
            self.pool.forget(self)

    # -- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # The request goes out at the end of the loop's turn, with the turn's others.
        self.transport = DeferredTransport(cast(asyncio.Transport, transport))
        if self.closed:  # the pool was closed while this one was connecting
            transport.close()

    def data_received(self, data: bytes) -> None:
        self._answered = True
        if self.response is None:
            # Bytes nobody asked for (a pooled connection): the stream is out of step.
            self.close()
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._broken(UpstreamUnavailable("upstream switched protocols"))
        except httptools.HttpParserError as exc:
            # A callback's own exception arrives as the parser error's context.
            cause = exc.__context__
            error = cause if isinstance(cause, UpstreamUnavailable) else None
            self._broken(error or UpstreamUnavailable("upstream sent a malformed answer"))

    def connection_lost(self, exc: Exception | None) -> None:
        response, self.response = self.response, None
        if response is not None:
            if exc is None and self._until_eof and response.status_code:
                response._complete()  # a body delimited by the end of the connection
            elif self.reused and not self._answered:
                response._fail(StaleConnection(fail_message(exc)))
            else:
                response._fail(UpstreamUnavailable(fail_message(exc)))
        self.closed = True
        self.pool.forget(self)

    def _broken(self, error: Exception) -> None:
        response, self.response = self.response, None
        if response is not None:
            response._fail(error)
        self.close()

    # -- httptools callbacks ----------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.response is None:
            # A second answer to one request (or bytes after the last one).
            raise UpstreamUnavailable("upstream sent an answer nobody asked for")
        self._raw_headers = []
        self._head_bytes = 0
        self._until_eof = False

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_bytes += len(name) + len(value)
        if self._head_bytes > MAX_HEAD_BYTES:
            raise UpstreamUnavailable("upstream answer head too large")
        self._raw_headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if 100 <= status < 200:
            # `100 Continue` and friends: the real answer follows on the same connection.
            self._informational = True
            return
        # Only what framing and decoding need, straight from the raw pairs.
        sized = False
        transfer: bytes | None = None
        coding: bytes | None = None
        for raw_name, value in self._raw_headers:
            name = raw_name.lower()
            if name == b"content-length":
                sized = True
            elif name == b"transfer-encoding" and transfer is None:  # the first, as `get`
                transfer = value.lower()
            elif name == b"content-encoding" and coding is None:
                coding = value
        chunked = transfer is not None and b"chunked" in transfer
        self._until_eof = status not in _NO_BODY_STATUS and not sized and not chunked
        response = self.response
        if response is not None:
            encoding = coding.decode("latin-1").strip().lower() if coding else "identity"
            response._head(status, self._raw_headers, encoding)

    def on_body(self, body: bytes) -> None:
        response = self.response
        if response is not None:
            response._feed(body)

    def on_message_complete(self) -> None:
        if self._informational:
            self._informational = False
            return
        response, self.response = self.response, None
        if response is None:
            return
        response._complete()
        if self._parser.should_keep_alive() and not self.closed:
            self.pool.release(self)
        else:
            self.close()
