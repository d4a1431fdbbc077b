"""The edge's HTTP/1.1 protocol: uvicorn's httptools protocol, a whole answer in one write.

uvicorn writes a response's status line and headers the moment the app sends
`http.response.start`, and then each body message: a whole JSON answer goes out in two
`transport.write`s — two send syscalls here and, with TCP_NODELAY, two segments for the
client to read. `EdgeHttpProtocol` holds the head of a response whose length is declared
(`content-length`, or none at all as for 204) until its first body message and writes
the two together. A streamed answer (chunked) still writes its head at once, so a client
sees the status line as soon as a stream opens (at the end of the loop's turn, as every
write: the protocol writes through a `DeferredTransport`).

Everything else — parsing, keep-alive, pipelining, flow control, `Expect: 100-continue`,
graceful shutdown, the 500 for a failing app — is uvicorn's own; `send` below is
uvicorn 0.54's `RequestResponseCycle.send` with the head held. One difference: a head
that cannot go on the wire (a header value with a line break) is refused before anything
is written, so the client gets uvicorn's 500 where uvicorn would drop the connection.
`tests/edge/test_http_server.py` compares the bytes written with uvicorn's own protocol's
and runs keep-alive and pipelining on a real socket.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import cast

from uvicorn._types import ASGISendEvent
from uvicorn.protocols.http.httptools_impl import (
    HEADER_RE,
    HEADER_VALUE_RE,
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)
from uvicorn.protocols.utils import get_client_addr, get_path_with_query_string

from bytespike_edge.deferred_writes import DeferredTransport

# The last list of server default headers found valid (uvicorn makes a new one each second).
_checked_defaults: list[object] = [None]


def _check_headers(headers: Iterable[tuple[bytes, bytes]]) -> None:
    """Refuses a header that cannot go on the wire, as uvicorn does (before any write)."""
    for name, value in headers:
        if HEADER_RE.search(name):
            raise RuntimeError("Invalid HTTP header name.")
        if HEADER_VALUE_RE.search(value):
            raise RuntimeError("Invalid HTTP header value.")


class WholeAnswerCycle(RequestResponseCycle):
    """One request and its response; the head of a sized response waits for its body."""

    # The status line and headers of a sized response, held until its first body message.
    # While held, `response_started` stays False: an app failing before its body still gets
    # uvicorn's 500 in place of the head it never finished.
    held_head: bytes | None = None

    async def send(self, message: ASGISendEvent) -> None:
        if self.flow.write_paused and not self.disconnected:
            await self.flow.drain()
        if self.disconnected:
            return
        if not self.response_started and self.held_head is None:
            if message["type"] != "http.response.start":
                raise RuntimeError(
                    f"Expected ASGI message 'http.response.start', but got '{message['type']}'."
                )
            self.waiting_for_100_continue = False
            try:
                head = self._head(message["status"], message.get("headers", ()))
            except RuntimeError:
                # A header that cannot go on the wire: nothing was written, so a 500 can be.
                self.chunked_encoding, self.expected_content_length = None, 0
                raise
            if self.chunked_encoding:
                self.response_started = True
                self.transport.write(head)
            else:
                self.held_head = head
            return
        if self.response_complete:
            raise RuntimeError(
                f"Unexpected ASGI message '{message['type']}' sent, "
                "after response already completed."
            )
        if message["type"] != "http.response.body":
            raise RuntimeError(
                f"Expected ASGI message 'http.response.body', but got '{message['type']}'."
            )
        self.response_started = True
        body: bytes = message.get("body", b"")
        more_body = message.get("more_body", False)
        if self.scope["method"] == "HEAD":
            self.expected_content_length = 0
            data = b""
        elif self.chunked_encoding:
            data = b"%x\r\n%b\r\n" % (len(body), body) if body else b""
            if not more_body:
                data += b"0\r\n\r\n"
        else:
            if len(body) > self.expected_content_length:
                raise RuntimeError("Response content longer than Content-Length")
            self.expected_content_length -= len(body)
            data = body
        if self.held_head is not None:
            data, self.held_head = self.held_head + data, None
        if data:
            self.transport.write(data)
        if not more_body:
            if self.expected_content_length != 0:
                raise RuntimeError("Response content shorter than Content-Length")
            self.response_complete = True
            self.message_event.set()
            if not self.keep_alive:
                self.transport.close()
            self.on_response()

    def _head(self, status: int, headers: object) -> bytes:
        """The status line and headers; notes the framing and keep-alive as uvicorn does."""
        if self.access_log:
            self.access_logger.info(
                '%s - "%s %s HTTP/%s" %d',
                get_client_addr(self.scope),
                self.scope["method"],
                get_path_with_query_string(self.scope),
                self.scope["http_version"],
                status,
            )
        content = [STATUS_LINE[status]]
        has_connection_close = False
        defaults = self.default_headers
        # The server's own headers (date, server) are one list for every response of a
        # second: checked when it changes, not per response.
        if defaults is not _checked_defaults[0]:
            _check_headers(defaults)
            _checked_defaults[0] = defaults
        _check_headers(headers)  # type: ignore[arg-type]
        for raw_name, value in [*defaults, *headers]:  # type: ignore[misc]
            name = raw_name.lower()
            if name == b"content-length" and self.chunked_encoding is None:
                self.expected_content_length = int(value.decode())
                self.chunked_encoding = False
            elif name == b"transfer-encoding" and value.lower() == b"chunked":
                self.expected_content_length = 0
                self.chunked_encoding = True
            elif name == b"connection" and b"close" in [
                token.lower().strip() for token in value.split(b",")
            ]:
                self.keep_alive = False
                has_connection_close = True
            content += (name, b": ", value, b"\r\n")
        if not self.keep_alive and not has_connection_close:
            content.append(b"connection: close\r\n")
        if (
            self.chunked_encoding is None
            and self.scope["method"] != "HEAD"
            and status not in (204, 304)
        ):
            # Neither content-length nor transfer-encoding: the body is chunked.
            self.chunked_encoding = True
            content.append(b"transfer-encoding: chunked\r\n")
        content.append(b"\r\n")
        return b"".join(content)

    async def send_500_response(self) -> None:
        # The app failed after its (held) start: the 500 replaces what was never written.
        if self.held_head is not None:
            self.held_head = None
            self.chunked_encoding, self.expected_content_length = None, 0
        await super().send_500_response()


class EdgeHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol whose requests run as `WholeAnswerCycle`s, writing
    through a `DeferredTransport` (`bytespike_edge.deferred_writes`)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(DeferredTransport(cast(asyncio.Transport, transport)))

    def on_headers_complete(self) -> None:
        # uvicorn builds its own cycle class here; this runs it and swaps the class before
        # the request's task first runs (it is created, not started): the cycle's state is
        # the same object either way, only `send` differs.
        existing = self.cycle
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not existing and type(cycle) is RequestResponseCycle:
            cycle.__class__ = WholeAnswerCycle
