"""The edge's HTTP protocol: a whole answer in one write, everything else as uvicorn does.

Each case runs the same ASGI app under `EdgeHttpProtocol` and under uvicorn's own
`HttpToolsProtocol` and compares the bytes that reach the transport: equal when joined,
fewer writes for the edge's (a whole answer in one, and what one turn of the loop wrote in
one: `bytespike_edge.deferred_writes`). The last cases run a real server on a socket.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from bytespike_common.devstack import free_port
from bytespike_edge.http_server import EdgeHttpProtocol

pytestmark = pytest.mark.timeout(20)
App = Callable[[dict[str, Any], Any, Any], Awaitable[None]]
JSON_BODY = b'{"answer":42}'


class RecordingTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(
            name, default
        )

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def exchange(
    protocol_class: type[HttpToolsProtocol], app: App, request: bytes
) -> RecordingTransport:
    """Feeds `request` to a fresh connection and waits until its response is complete."""
    config = uvicorn.Config(app, http=protocol_class, lifespan="off", log_config=None)
    config.load()
    protocol = protocol_class(config=config, server_state=ServerState(), app_state={})
    transport = RecordingTransport()
    protocol.connection_made(transport)
    protocol.data_received(request)
    for _ in range(200):
        await asyncio.sleep(0)
        if protocol.cycle is not None and protocol.cycle.response_complete:
            break
        if transport.closed:
            break
    else:
        raise AssertionError(f"no complete response; written: {transport.writes}")
    await asyncio.sleep(0)  # the edge's writes go out at the end of the loop's turn
    return transport


async def both(app: App, request: bytes) -> tuple[list[bytes], list[bytes]]:
    edge = await exchange(EdgeHttpProtocol, app, request)
    uvicorn_own = await exchange(HttpToolsProtocol, app, request)
    assert b"".join(edge.writes) == b"".join(uvicorn_own.writes)
    return edge.writes, uvicorn_own.writes


POST = b"POST /v1/chat/completions HTTP/1.1\r\nhost: edge\r\ncontent-length: 2\r\n\r\n{}"


async def json_answer(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await receive()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"13")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": JSON_BODY})


async def test_a_whole_answer_goes_out_in_one_write() -> None:
    edge, uvicorn_own = await both(json_answer, POST)
    assert len(uvicorn_own) == 2
    (only,) = edge
    assert only.startswith(b"HTTP/1.1 200 OK\r\n")
    assert only.endswith(b"\r\n\r\n" + JSON_BODY)


async def test_a_head_request_writes_the_head_alone() -> None:
    request = b"HEAD / HTTP/1.1\r\nhost: edge\r\n\r\n"
    (only,), _ = await both(json_answer, request)
    assert b"content-length: 13\r\n" in only
    assert only.endswith(b"\r\n\r\n")


async def test_no_content_is_one_write() -> None:
    async def no_content(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    (only,), _ = await both(no_content, POST)
    assert only.startswith(b"HTTP/1.1 204 No Content\r\n")


async def test_a_sized_body_in_parts_holds_the_head_for_the_first() -> None:
    async def in_parts(scope: dict[str, Any], receive: Any, send: Any) -> None:
        headers = [(b"content-length", b"6")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"abc", "more_body": True})
        await asyncio.sleep(0)  # the rest a turn of the loop later
        await send({"type": "http.response.body", "body": b"def"})

    edge, _ = await both(in_parts, POST)
    assert len(edge) == 2
    assert edge[0].endswith(b"\r\n\r\nabc")
    assert edge[1] == b"def"


async def test_the_writes_of_one_turn_go_out_together() -> None:
    async def in_one_turn(scope: dict[str, Any], receive: Any, send: Any) -> None:
        headers = [(b"content-length", b"6")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"abc", "more_body": True})
        await send({"type": "http.response.body", "body": b"def"})

    edge, uvicorn_own = await both(in_one_turn, POST)
    assert len(uvicorn_own) == 3
    (only,) = edge
    assert only.endswith(b"\r\n\r\nabcdef")


async def test_a_stream_writes_its_head_before_the_first_event() -> None:
    transports: list[RecordingTransport] = []
    head_before_event: list[bool] = []

    async def stream(scope: dict[str, Any], receive: Any, send: Any) -> None:
        headers = [(b"content-type", b"text/event-stream")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        # The first event comes a turn of the loop later at the soonest (the upstream's
        # read): by then the client must have the status line.
        await asyncio.sleep(0)
        head_before_event.append(transports[-1].writes[:1] != [])
        await send({"type": "http.response.body", "body": b"data: 1\n\n", "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    original = RecordingTransport.__init__

    def tracked(self: RecordingTransport) -> None:
        original(self)
        transports.append(self)

    RecordingTransport.__init__ = tracked  # type: ignore[method-assign]
    try:
        edge, uvicorn_own = await both(stream, POST)
    finally:
        RecordingTransport.__init__ = original  # type: ignore[method-assign]
    assert head_before_event == [True, True]  # the edge's protocol, then uvicorn's own
    assert edge[0] == uvicorn_own[0]
    assert b"transfer-encoding: chunked" in edge[0]
    # The event and the end of the stream, written in one turn, went out together.
    assert edge[1:] == [b"9\r\ndata: 1\n\n\r\n0\r\n\r\n"]


async def test_an_app_failing_after_its_start_answers_500_and_nothing_else() -> None:
    async def fails(scope: dict[str, Any], receive: Any, send: Any) -> None:
        headers = [(b"content-length", b"13")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        raise RuntimeError("a bug after the start")

    transport = await exchange(EdgeHttpProtocol, fails, POST)
    (only,) = transport.writes
    assert only.startswith(b"HTTP/1.1 500 Internal Server Error\r\n")
    assert only.endswith(b"Internal Server Error")
    assert b"200 OK" not in only


async def test_a_header_with_a_line_break_is_refused() -> None:
    async def injects(scope: dict[str, Any], receive: Any, send: Any) -> None:
        headers = [(b"x-note", b"a\r\nset-cookie: x"), (b"content-length", b"0")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b""})

    transport = await exchange(EdgeHttpProtocol, injects, POST)
    assert b"set-cookie" not in b"".join(transport.writes)
    assert b"".join(transport.writes).startswith(b"HTTP/1.1 500 ")


def _read_responses(sock: socket.socket, count: int) -> list[bytes]:
    """`count` responses with content-length framing, read off a blocking socket."""
    data, responses = b"", []
    while len(responses) < count:
        head_end = data.find(b"\r\n\r\n")
        if head_end >= 0:
            head = data[:head_end].decode()
            length = next(
                int(line.split(":", 1)[1])
                for line in head.split("\r\n")
                if line.lower().startswith("content-length:")
            )
            end = head_end + 4 + length
            if len(data) >= end:
                responses.append(data[:end])
                data = data[end:]
                continue
        chunk = sock.recv(65536)
        assert chunk, f"connection closed after {responses}"
        data += chunk
    return responses


async def test_keep_alive_and_pipelining_on_a_real_socket() -> None:
    async def echo_path(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await receive()
        body = scope["path"].encode()
        headers = [(b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    port = free_port()
    config = uvicorn.Config(
        echo_path, host="127.0.0.1", port=port, http=EdgeHttpProtocol, log_config=None
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        for _ in range(500):
            if server.started:
                break
            await asyncio.sleep(0.01)

        def talk() -> list[bytes]:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                sock.sendall(b"GET /one HTTP/1.1\r\nhost: edge\r\n\r\n")
                first = _read_responses(sock, 1)
                # Two requests in one segment: answered in order on the same connection.
                sock.sendall(
                    b"GET /two HTTP/1.1\r\nhost: edge\r\n\r\n"
                    b"GET /three HTTP/1.1\r\nhost: edge\r\n\r\n"
                )
                return first + _read_responses(sock, 2)

        answers = await asyncio.to_thread(talk)
    finally:
        server.should_exit = True
        await task
    assert [answer.rsplit(b"\r\n\r\n", 1)[1] for answer in answers] == [
        b"/one",
        b"/two",
        b"/three",
    ]
    assert all(answer.startswith(b"HTTP/1.1 200 OK\r\n") for answer in answers)
