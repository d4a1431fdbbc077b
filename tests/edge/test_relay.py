"""The stream relay: one client write per upstream read, cut only at frame boundaries; one
keepalive timer; a client disconnect cancels the upstream; failures as in-stream errors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, MutableMapping
from typing import Any

import orjson
import pytest

from bytespike.auth.v1 import auth_pb2
from bytespike.router.v1 import router_pb2
from bytespike_common.errors import GatewayError
from bytespike_edge.call import CallContext
from bytespike_edge.exchange import JsonArrayFrames, PassthroughFrames, native_finish_reason
from bytespike_edge.relay import FrameSplitter, RelayResponse, frame_span, split_frames
from bytespike_edge.translate.ir import WireProtocol
from bytespike_edge.translate.registry import codec_for
from tests.edge.translate import fixtures

Message = MutableMapping[str, Any]


def _call() -> CallContext:
    return CallContext(
        request_id="req_1",
        client_protocol="openai",
        principal=auth_pb2.Principal(),
        model=router_pb2.Model(id="m"),
        deployment=router_pb2.Deployment(),
        provider=router_pb2.Provider(),
        stream=True,
    )


class Upstream:
    """The open upstream response: records its closing; `chunks` records cancellation."""

    def __init__(self) -> None:
        self.closed = asyncio.Event()
        self.cancelled = False

    async def aclose(self) -> None:
        self.closed.set()

    async def chunks(self, items: list[bytes | float | Exception]) -> AsyncIterator[bytes]:
        """Yields the bytes; a float is a silence of that many seconds, an exception raises."""
        try:
            for item in items:
                if isinstance(item, float):
                    await asyncio.sleep(item)
                elif isinstance(item, Exception):
                    raise item
                else:
                    yield item
        except asyncio.CancelledError:
            self.cancelled = True
            raise


class Echo:
    """A handler relaying blocks as they are, remembering each block it was given."""

    def __init__(self) -> None:
        self.blocks: list[bytes] = []

    def frames(self, block: bytes) -> bytes:
        self.blocks.append(block)
        return block

    def end(self) -> bytes:
        return b"data: [END]\n\n"

    def error(self, err: GatewayError) -> bytes:
        return b"data: " + orjson.dumps({"error": err.message}) + b"\n\n"

    def keepalive(self) -> bytes:
        return b": keepalive\n\n"


class Client:
    """The ASGI side: collects what is sent; `leave()` makes `receive` report a disconnect."""

    def __init__(self) -> None:
        self.sent: list[Message] = []
        self._gone = asyncio.Event()

    def leave(self) -> None:
        self._gone.set()

    async def receive(self) -> Message:
        await self._gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        self.sent.append(message)

    @property
    def bodies(self) -> list[bytes]:
        return [m["body"] for m in self.sent if m["type"] == "http.response.body"]


async def _relay(
    items: list[bytes | float | Exception],
    handler: Any = None,
    *,
    keepalive: float = 0.0,
    client: Client | None = None,
    call: CallContext | None = None,
) -> tuple[Client, Upstream, CallContext, list[CallContext]]:
    upstream, client, call = Upstream(), client or Client(), call or _call()
    done: list[CallContext] = []
    response = RelayResponse(
        upstream.chunks(items),
        upstream,
        call,
        handler=handler or Echo(),
        on_done=done.append,
        keepalive_interval=keepalive,
        headers={"x-request-id": call.request_id},
        media_type="text/event-stream",
    )
    await response({"type": "http"}, client.receive, client.send)
    await asyncio.wait_for(upstream.closed.wait(), 1)
    return client, upstream, call, done


async def test_each_read_is_one_write_cut_at_the_last_frame_boundary() -> None:
    handler = Echo()
    reads: list[bytes | float | Exception] = [
        b"data: a\n\ndata: b\n\ndata: c",
        b"1\n\ndata: d\n",
        b"\ndata: e\n\n",
        b"data: f",
    ]
    client, _, call, done = await _relay(reads, handler)
    start = client.sent[0]
    assert start["type"] == "http.response.start" and start["status"] == 200
    assert (b"x-request-id", b"req_1") in start["headers"]
    assert (b"content-type", b"text/event-stream; charset=utf-8") in start["headers"]
    assert not any(name == b"content-length" for name, _ in start["headers"])
    assert client.bodies == [
        b"data: a\n\ndata: b\n\n",
        b"data: c1\n\n",
        b"data: d\n\ndata: e\n\n",
        b"data: f\n\ndata: [END]\n\n",  # the unterminated tail, then the end, in one write
    ]
    assert [m["more_body"] for m in client.sent[1:]] == [True, True, True, False]
    # The handler only ever sees whole frames.
    assert all(block.endswith(b"\n\n") for block in handler.blocks)
    assert call.frames_relayed == 5 and call.first_byte_at is not None
    assert done == [call] and not call.client_disconnected


async def test_crlf_frames_are_cut_at_their_boundary_across_reads() -> None:
    client, *_ = await _relay([b"data: a\r\n\r\ndata: b\r\n", b"\r\ndata: c\r\n\r\n"])
    assert client.bodies[:2] == [b"data: a\r\n\r\n", b"data: b\r\n\r\ndata: c\r\n\r\n"]


def test_splitter_passes_a_read_ending_on_a_boundary_without_copying() -> None:
    splitter = FrameSplitter()
    read = b"data: a\n\ndata: b\n\n"
    assert splitter.feed(read) is read
    assert splitter.feed(b"data: c\n") == b""
    assert splitter.feed(b"\n") == b"data: c\n\n"
    assert splitter.close() == b""


def test_split_frames_keeps_every_byte_of_complete_frames() -> None:
    block = b": c\n\ndata: a\r\n\r\nevent: x\ndata: b\n\n"
    assert split_frames(block) == [b": c\n\n", b"data: a\r\n\r\n", b"event: x\ndata: b\n\n"]
    assert split_frames(b"data: a\n\ndata: partial") == [b"data: a\n\n"]


async def test_keepalives_fill_a_silence_from_one_timer(monkeypatch: pytest.MonkeyPatch) -> None:
    loop = asyncio.get_running_loop()
    tasks: list[Any] = []
    factory = loop.get_task_factory()

    def counting(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> Any:
        task = asyncio.Task(coro, loop=loop, **kwargs)
        tasks.append(coro)
        return task

    busy = [b"data: %d\n\n" % i for i in range(100)]
    loop.set_task_factory(counting)
    try:
        client, *_ = await _relay([*busy, 0.35, b"data: late\n\n"], keepalive=0.1)
    finally:
        loop.set_task_factory(factory)
    keepalives = client.bodies.count(b": keepalive\n\n")
    assert 2 <= keepalives <= 4
    assert client.bodies[-2:] == [b"data: late\n\n", b"data: [END]\n\n"]
    # No task per read: the disconnect listener and one per keepalive actually sent.
    relay_tasks = [t for t in tasks if t.__qualname__.startswith(("RelayResponse.", "Upstream."))]
    assert len(relay_tasks) == 1 + keepalives


async def test_no_keepalive_while_the_upstream_keeps_talking() -> None:
    items: list[bytes | float | Exception] = []
    for i in range(12):  # 0.6 s in all, never 0.25 s quiet
        items += [0.05, b"data: %d\n\n" % i]
    client, *_ = await _relay(items, keepalive=0.25)
    assert b": keepalive\n\n" not in client.bodies


async def test_client_disconnect_cancels_the_upstream_and_finishes_the_call() -> None:
    client = Client()
    asyncio.get_running_loop().call_later(0.05, client.leave)
    # Returns normally: the cancellation was the relay's own, not the server's.
    _, upstream, call, done = await _relay([b"data: a\n\n", 5.0, b"data: b\n\n"], client=client)
    assert upstream.cancelled
    assert call.client_disconnected and call.error_cause == "client_disconnected"
    assert done == [call]
    assert client.bodies == [b"data: a\n\n"]


async def test_a_cancellation_from_outside_still_propagates() -> None:
    upstream, client, call = Upstream(), Client(), _call()
    done: list[CallContext] = []
    response = RelayResponse(
        upstream.chunks([b"data: a\n\n", 5.0]),
        upstream,
        call,
        handler=Echo(),
        on_done=done.append,
        keepalive_interval=0.0,
        headers={},
        media_type="text/event-stream",
    )
    task = asyncio.ensure_future(response({"type": "http"}, client.receive, client.send))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert upstream.cancelled and call.client_disconnected and done == [call]


async def test_an_upstream_failure_midway_is_an_in_stream_error() -> None:
    client, _, call, done = await _relay([b"data: a\n\n", OSError("reset")])
    assert client.bodies[0] == b"data: a\n\n"
    assert b'"error"' in client.bodies[-1] and client.sent[-1]["more_body"] is False
    assert call.error_cause == "upstream_stream_broken" and done == [call]


async def test_an_oversized_frame_is_an_in_stream_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("bytespike_edge.relay.MAX_FRAME_BYTES", 64)
    client, _, call, _ = await _relay([b"data: " + b"x" * 100])
    assert b'"error"' in client.bodies[-1] and call.error_cause == "upstream_stream_broken"


def _openai_chunk(delta: dict[str, Any] | None, finish: str | None, usage: Any = None) -> bytes:
    body = {
        "id": "c",
        "object": "chat.completion.chunk",
        "choices": [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}],
        "usage": usage,
    }
    return b"data: " + orjson.dumps(body) + b"\n\n"


def _passthrough(call: CallContext, client_body: dict[str, Any]) -> PassthroughFrames:
    codec = codec_for(WireProtocol.OPENAI)
    return PassthroughFrames(
        WireProtocol.OPENAI,
        codec.usage_sniffer(client_body),
        lambda: codec.stream_encoder("m"),
        call,
    )


async def test_passthrough_sniffs_a_coalesced_read_without_reencoding(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    usage = {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9}
    content = [_openai_chunk({"content": w}, None) for w in ("Hel", "lo")]
    finish = _openai_chunk({}, "stop")
    usage_chunk = _openai_chunk(None, None, usage)
    read = b"".join([*content, finish, usage_chunk, b"data: [DONE]\n\n"])
    dumps: list[Any] = []
    real = orjson.dumps

    def counting(*args: Any, **kwargs: Any) -> bytes:
        dumps.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(orjson, "dumps", counting)
    call = _call()
    # The client did not ask for usage: the usage chunk the gateway requested is dropped.
    client, *_ = await _relay([read], _passthrough(call, {"stream": True}), call=call)
    monkeypatch.setattr(orjson, "dumps", real)
    assert client.bodies == [b"".join([*content, finish, b"data: [DONE]\n\n"]), b""]
    assert dumps == []
    assert call.finish_reason == "stop"
    assert call.usage is not None and (call.usage.input_tokens, call.usage.output_tokens) == (7, 2)


async def test_passthrough_relays_unmarked_reads_as_they_came() -> None:
    call = _call()
    reads: list[bytes | float | Exception] = [
        b"".join(_openai_chunk({"content": str(i)}, None) for i in range(5)),
        _openai_chunk({}, "length"),
    ]
    handler = _passthrough(call, {"stream": True, "stream_options": {"include_usage": True}})
    first = handler.frames(reads[0])  # type: ignore[arg-type]
    assert first is reads[0]
    client, *_ = await _relay(reads, handler, call=call)
    assert b"".join(client.bodies) == b"".join(reads)  # type: ignore[arg-type]
    assert call.finish_reason == "length"


def test_json_array_stream_splits_coalesced_frames() -> None:
    handler = JsonArrayFrames(Echo())
    out = handler.frames(b'data: {"a":1}\r\n\r\ndata: {"b":2}\n\n')
    assert out + handler.end() == b'[{"a":1},\r\n{"b":2},\r\n[END]]'


def _sse(frames: list[tuple[str | None, str]]) -> bytes:
    return b"".join(
        (b"event: " + event.encode() + b"\n" if event else b"")
        + b"data: "
        + data.encode()
        + b"\n\n"
        for event, data in frames
    )


STREAMS = {
    WireProtocol.OPENAI: fixtures.OPENAI_STREAM,
    WireProtocol.ANTHROPIC: fixtures.ANTHROPIC_STREAM,
    WireProtocol.GEMINI: fixtures.GEMINI_STREAM,
}


@pytest.mark.parametrize("protocol", list(STREAMS), ids=lambda p: p.value)
def test_passthrough_reads_what_parsing_every_frame_reads(protocol: WireProtocol) -> None:
    """Usage and finish reason from marked frames only, in one block or frame by frame, are
    what the sniffer and the finish parser find when given every frame."""
    codec = codec_for(protocol)
    client_body = {"stream": True, "stream_options": {"include_usage": True}}
    sniffer = codec.usage_sniffer(client_body)
    finish = ""
    for event, data in STREAMS[protocol]:
        sniffer.feed(event, data)
        if not finish and data != "[DONE]":
            finish = native_finish_reason(protocol, orjson.loads(data))
    stream = _sse(STREAMS[protocol])
    for blocks in ([stream], split_frames(stream)):
        call = _call()
        handler = PassthroughFrames(
            protocol, codec.usage_sniffer(client_body), lambda: codec.stream_encoder("m"), call
        )
        assert b"".join(handler.frames(block) for block in blocks) == stream
        assert call.usage == sniffer.usage and call.usage is not None
        assert call.finish_reason == finish and finish


def test_a_usage_object_is_found_however_it_is_spaced() -> None:
    call = _call()
    handler = _passthrough(call, {"stream": True, "stream_options": {"include_usage": True}})
    frame = b'data: {"choices":[],"usage" : {"prompt_tokens":3,"completion_tokens":1}}\n\n'
    assert handler.frames(b"data: {}\n\n" + frame) == b"data: {}\n\n" + frame
    assert call.usage is not None and call.usage.input_tokens == 3


def test_frame_span_finds_the_frame_around_a_position() -> None:
    block = b"data: a\n\ndata: bb\r\n\r\ndata: c\n\n"
    assert frame_span(block, block.index(b"a")) == (0, 9)
    assert frame_span(block, block.index(b"bb")) == (9, 21)
    assert frame_span(block, block.index(b"c")) == (21, len(block))


async def test_a_send_failing_on_a_closed_connection_is_a_disconnect() -> None:
    class Closed(Client):
        async def send(self, message: Message) -> None:
            if message["type"] == "http.response.body":
                raise ConnectionResetError
            await super().send(message)

    _, upstream, call, done = await _relay([b"data: a\n\n", 5.0], client=Closed())
    assert call.client_disconnected and done == [call] and upstream.closed.is_set()


async def test_a_keepalive_failing_on_a_closed_connection_is_a_disconnect() -> None:
    class Closed(Client):
        async def send(self, message: Message) -> None:
            if message.get("body") == b": keepalive\n\n":
                raise ConnectionResetError
            await super().send(message)

    _, upstream, call, done = await _relay([b"data: a\n\n", 5.0], keepalive=0.05, client=Closed())
    assert upstream.cancelled and call.client_disconnected and done == [call]


def test_gemini_parses_only_the_last_usage_of_a_block(monkeypatch: pytest.MonkeyPatch) -> None:
    codec = codec_for(WireProtocol.GEMINI)
    call = _call()
    handler = PassthroughFrames(
        WireProtocol.GEMINI, codec.usage_sniffer({}), lambda: codec.stream_encoder("m"), call
    )
    block = _sse(fixtures.GEMINI_STREAM)
    loads: list[Any] = []
    real = orjson.loads

    def counting(data: Any) -> Any:
        loads.append(data)
        return real(data)

    monkeypatch.setattr(orjson, "loads", counting)
    assert handler.frames(block) is block
    # The last frame holds both the finish reason and the final usage: it alone is parsed.
    assert {bytes(d, "utf-8") if isinstance(d, str) else d for d in loads} == {
        fixtures.GEMINI_STREAM[-1][1].encode()
    }
    assert call.finish_reason == "STOP" and call.usage is not None
    assert call.usage.output_tokens > 0
