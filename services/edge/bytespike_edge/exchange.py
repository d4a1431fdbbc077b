"""Serving one generation request: any client protocol through any upstream protocol.

Same protocol in and out is a **passthrough**: the client's body is forwarded with only the
model rewritten (the OpenAI stream also asks for usage), and the answer is relayed as it
arrives while the protocol's sniffer reads usage from it — unknown and future fields
survive untouched, and no frame is re-encoded. Different protocols go through the IR: the
client codec decodes once (lazily, only if some deployment needs it), the upstream codec
encodes per attempt (failover may cross protocols), and the answer is decoded by the
upstream codec and re-encoded by the client codec, streams event by event.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

import orjson
from starlette.responses import Response

from bytespike.auth.v1 import auth_pb2
from bytespike.router.v1 import router_pb2
from bytespike_common.errors import GatewayError, UpstreamHTTPError
from bytespike_edge.call import CallContext
from bytespike_edge.failover import Attempts, Opened, Prepared
from bytespike_edge.gateway import Gateway, Target
from bytespike_edge.relay import (
    FrameHandler,
    RelayResponse,
    frame_fields,
    frame_span,
    split_frames,
)
from bytespike_edge.translate.codec import Codec, StreamDecoder, StreamEncoder, UsageSniffer
from bytespike_edge.translate.context import TranslationContext, parts_needing_fetch
from bytespike_edge.translate.ir import Finish, IRRequest, StreamError, UsageUpdate, WireProtocol
from bytespike_edge.translate.registry import codec_for
from bytespike_edge.translate.sse import SSEParser
from bytespike_edge.upstream.wire import request_headers, upstream_url

PROTOCOLS = {
    router_pb2.PROTOCOL_OPENAI: WireProtocol.OPENAI,
    router_pb2.PROTOCOL_ANTHROPIC: WireProtocol.ANTHROPIC,
    router_pb2.PROTOCOL_GEMINI: WireProtocol.GEMINI,
}
SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


def protocol_of(target: Target) -> WireProtocol:
    return PROTOCOLS[target.provider.protocol]


def native_finish_reason(protocol: WireProtocol, body: Any) -> str:
    """The vendor's own finish reason from a response body or stream chunk, if it has one."""
    if not isinstance(body, dict):
        return ""
    if protocol == WireProtocol.ANTHROPIC:
        delta = body.get("delta")
        reason = body.get("stop_reason") or (
            delta.get("stop_reason") if isinstance(delta, dict) else None
        )
    else:
        choices = body.get("choices" if protocol == WireProtocol.OPENAI else "candidates")
        first = choices[0] if isinstance(choices, list) and choices else {}
        key = "finish_reason" if protocol == WireProtocol.OPENAI else "finishReason"
        reason = first.get(key) if isinstance(first, dict) else None
    return reason if isinstance(reason, str) else ""


# What makes a passthrough frame worth parsing: a finish reason with a value, or a usage
# object (not `null`: with include_usage every OpenAI chunk carries `"usage":null`). The
# sniffers read usage only from such an object, so other frames pass unparsed.
_FINISH_MARKERS = {
    WireProtocol.OPENAI: re.compile(rb'"finish_reason"\s*:\s*"'),
    WireProtocol.ANTHROPIC: re.compile(rb'"stop_reason"\s*:\s*"'),
    WireProtocol.GEMINI: re.compile(rb'"finishReason"\s*:\s*"'),
}
_USAGE_MARKERS = {
    WireProtocol.OPENAI: re.compile(rb'"usage"\s*:\s*\{'),
    WireProtocol.ANTHROPIC: re.compile(rb'"usage"\s*:\s*\{'),
    WireProtocol.GEMINI: re.compile(rb'"usageMetadata"\s*:\s*\{'),
}
# Gemini chunks each carry the usage so far and its sniffer keeps the last one: of a block,
# only the last frame with usage needs parsing.
_LAST_USAGE_WINS = frozenset({WireProtocol.GEMINI})


@dataclass(slots=True)
class ClientRequest:
    """What a protocol route learned from the wire before the shared flow takes over."""

    protocol: WireProtocol
    request_id: str
    raw: bytes
    body: dict[str, Any]
    model: str
    stream: bool
    max_output_tokens: int
    # Extra headers for a same-vendor upstream (e.g. allow-listed `anthropic-beta`).
    forward_headers: Mapping[str, str]
    # Gemini `streamGenerateContent` without `?alt=sse`: one JSON array, streamed.
    json_array_stream: bool = False


class Exchange:
    def __init__(
        self,
        gateway: Gateway,
        client: ClientRequest,
        principal: auth_pb2.Principal,
        model: router_pb2.Model,
    ) -> None:
        self._gateway = gateway
        self._client = client
        self._principal = principal
        self._model = model
        self._codec: Codec = codec_for(client.protocol)
        self._ir: IRRequest | None = None

    @property
    def ctx(self) -> TranslationContext | None:
        return self._ir.ctx if self._ir is not None else None

    def ir(self) -> IRRequest:
        if self._ir is None:
            self._ir = self._codec.decode_request(self._client.body)
            # Gemini names the model and the stream flag in the URL, not the body.
            self._ir.model = self._client.model
            self._ir.stream = self._client.stream
            if self._model.max_output_tokens:
                self._ir.ctx.default_max_tokens = int(self._model.max_output_tokens)
        return self._ir

    def prepare(self, target: Target) -> Prepared:
        upstream = protocol_of(target)
        upstream_model = target.deployment.upstream_model
        headers = request_headers(target.provider, target.credential)
        if upstream == self._client.protocol:
            body = self._codec.rewrite_model(self._client.body, upstream_model)
            if upstream == WireProtocol.OPENAI and self._client.stream:
                # The gateway always needs usage to bill, whether or not the client asked.
                options = body.get("stream_options")
                body["stream_options"] = {
                    **(options if isinstance(options, dict) else {}),
                    "include_usage": True,
                }
            headers.update(self._client.forward_headers)
        else:
            ir = self.ir()
            body = codec_for(upstream).encode_request(ir, upstream_model)
        return Prepared(
            url=upstream_url(target.provider, upstream, upstream_model, self._client.stream),
            headers=headers,
            body=orjson.dumps(body),
        )

    def decode_error(
        self, target: Target, status: int, body: bytes, headers: Mapping[str, str]
    ) -> GatewayError:
        return codec_for(protocol_of(target)).decode_error(status, body, headers)

    def _headers(self, call: CallContext) -> dict[str, str]:
        headers = {"x-request-id": call.request_id}
        ctx = self.ctx
        if ctx is not None and ctx.warnings:
            # What translation approximated or dropped, so callers can see it.
            text = " ".join("; ".join(ctx.warnings).split())[:2000]
            headers["x-bytespike-warning"] = text.encode("ascii", "replace").decode()
        return headers

    def _answer(self, call: CallContext, content: bytes) -> Response:
        headers = self._headers(call)
        raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
        return JsonAnswer(content, raw)

    async def serve(self, call: CallContext, targets: list[Target]) -> Response:
        try:
            opened = await Attempts(self._gateway, call).open(
                targets, self.prepare, self.decode_error, stream=self._client.stream
            )
        except GatewayError as exc:
            call.status_code, call.error_cause = exc.status, exc.cause
            self._gateway.finish(call)
            raise
        except BaseException:
            call.error_cause = "internal"
            self._gateway.finish(call)
            raise
        call.status_code = 200
        if self._client.stream:
            return self._stream(opened, call)
        try:
            return await self._whole(opened, call)
        finally:
            self._gateway.finish(call)

    async def _whole(self, opened: Opened, call: CallContext) -> Response:
        response = opened.response
        try:
            content = await response.aread()
        finally:
            await response.aclose()
        call.mark_first_byte()
        upstream = protocol_of(opened.target)
        try:
            parsed = orjson.loads(content)
        except orjson.JSONDecodeError as exc:
            call.status_code, call.error_cause = 502, "upstream_malformed"
            raise UpstreamHTTPError(
                "The upstream returned a malformed response.", status=502
            ) from exc
        if upstream == self._client.protocol:
            call.usage = self._codec.sniff_usage(parsed)
            call.finish_reason = native_finish_reason(upstream, parsed)
            return self._answer(call, content)
        answer = codec_for(upstream).decode_response(parsed, self.ctx)
        call.usage = answer.usage
        call.finish_reason = answer.finish_reason.value
        encoded = self._codec.encode_response(answer, self._model.id, self.ctx)
        return self._answer(call, orjson.dumps(encoded))

    def _stream(self, opened: Opened, call: CallContext) -> Response:
        upstream = protocol_of(opened.target)
        encoder = partial(self._codec.stream_encoder, self._model.id, self.ctx)
        handler: FrameHandler
        if upstream == self._client.protocol:
            sniffer = self._codec.usage_sniffer(self._client.body)
            handler = PassthroughFrames(upstream, sniffer, encoder, call)
        else:
            decoder = codec_for(upstream).stream_decoder(self.ctx)
            handler = TranslatedFrames(decoder, encoder(), call)
        media_type = "text/event-stream"
        if self._client.json_array_stream:
            handler, media_type = JsonArrayFrames(handler), "application/json"
        return RelayResponse(
            opened.chunks,
            opened.response,
            call,
            handler=handler,
            on_done=self._gateway.finish,
            keepalive_interval=self._gateway.settings.stream_keepalive,
            headers={**SSE_HEADERS, **self._headers(call)},
            media_type=media_type,
        )


class JsonAnswer(Response):
    """A whole JSON answer: what `Response(content, 200, headers, media_type=
    "application/json")` is, headers in the same order (the given ones, then length and
    type), built without its generic header handling (~1.2 µs of every answer). It keeps
    and extends the list of headers it is given."""

    media_type = "application/json"

    def __init__(self, content: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        self.status_code = 200
        self.background = None
        self.body = content
        headers.append((b"content-length", b"%d" % len(content)))
        headers.append((b"content-type", b"application/json"))
        self.raw_headers = headers


class PassthroughFrames:
    """Relays frames untouched (or drops one the sniffer says the client did not ask for).

    Most frames carry neither usage nor a finish reason: a block of frames is searched for
    the markers and goes out as it came; only the frames holding a marker are parsed.
    """

    def __init__(
        self,
        protocol: WireProtocol,
        sniffer: UsageSniffer,
        encoder: Callable[[], StreamEncoder],
        call: CallContext,
    ) -> None:
        self._protocol = protocol
        self._finish = _FINISH_MARKERS[protocol]
        self._usage = _USAGE_MARKERS[protocol]
        self._last_usage_wins = protocol in _LAST_USAGE_WINS
        self._sniffer = sniffer
        # Only for a keepalive or an error frame: most streams never need one.
        self._new_encoder = encoder
        self._encoder: StreamEncoder | None = None
        self._call = call

    def _next_mark(self, block: bytes, pos: int) -> int:
        """Where the next marker at or after `pos` is; -1 if none."""
        if self._last_usage_wins:
            matches = list(self._usage.finditer(block, pos))
            found = matches[-1] if matches else None
        else:
            found = self._usage.search(block, pos)
        at = found.start() if found is not None else -1
        if not self._call.finish_reason:
            finish = self._finish.search(block, pos, at if at >= 0 else len(block))
            if finish is not None:
                at = finish.start()
        return at

    def frames(self, block: bytes) -> bytes:
        at = self._next_mark(block, 0)
        if at < 0:
            return block
        kept: list[bytes] = []
        copied = 0  # block[:copied] is in `kept` (or dropped)
        while at >= 0:
            start, end = frame_span(block, at)
            if not self._frame(block[start:end]):
                kept.append(block[copied:start])
                copied = end
            at = self._next_mark(block, end)
        if not copied:
            return block
        kept.append(block[copied:])
        return b"".join(kept)

    def _frame(self, frame: bytes) -> bool:
        """Reads usage and finish reason from one marked frame; False to drop it."""
        event, data = frame_fields(frame)
        if data is None:
            return True
        if not self._call.finish_reason and self._finish.search(frame):
            with contextlib.suppress(orjson.JSONDecodeError):
                self._call.finish_reason = native_finish_reason(self._protocol, orjson.loads(data))
        keep = self._sniffer.feed(event, data)
        usage = self._sniffer.usage
        if usage is not None:
            self._call.usage = usage
        return keep

    def end(self) -> bytes:
        return b""

    def _encoding(self) -> StreamEncoder:
        if self._encoder is None:
            self._encoder = self._new_encoder()
        return self._encoder

    def error(self, err: GatewayError) -> bytes:
        return self._encoding().error(err)

    def keepalive(self) -> bytes:
        return self._encoding().keepalive()


class TranslatedFrames:
    """Upstream frames → IR events → client frames, with usage and finish kept on the call."""

    def __init__(self, decoder: StreamDecoder, encoder: StreamEncoder, call: CallContext) -> None:
        self._parser = SSEParser()
        self._decoder = decoder
        self._encoder = encoder
        self._call = call

    def _encode(self, events: list[Any]) -> bytes:
        out = bytearray()
        for event in events:
            if isinstance(event, UsageUpdate):
                self._call.usage = event.usage
            elif isinstance(event, Finish):
                self._call.finish_reason = event.reason.value
                if event.usage is not None:
                    self._call.usage = event.usage
            elif isinstance(event, StreamError):
                self._call.error_cause = event.error.cause
            out += self._encoder.encode(event)
        usage = self._decoder.usage
        if usage is not None:
            self._call.usage = usage
        return bytes(out)

    def frames(self, block: bytes) -> bytes:
        events: list[Any] = []
        for sse in self._parser.feed(block):
            events += self._decoder.feed(sse.event, sse.data)
        return self._encode(events)

    def end(self) -> bytes:
        return self._encode(self._decoder.close())

    def error(self, err: GatewayError) -> bytes:
        return self._encoder.error(err)

    def keepalive(self) -> bytes:
        return self._encoder.keepalive()


class JsonArrayFrames:
    """Gemini's non-SSE stream: the same chunks as elements of one JSON array."""

    def __init__(self, inner: FrameHandler) -> None:
        self._inner = inner
        self._opened = False

    def _elements(self, sse: bytes) -> bytes:
        out = bytearray()
        for frame in split_frames(sse):
            _, data = frame_fields(frame)
            if data is None:
                continue
            out += b",\r\n" if self._opened else b"["
            self._opened = True
            out += data.encode()
        return bytes(out)

    def frames(self, block: bytes) -> bytes:
        return self._elements(self._inner.frames(block))

    def end(self) -> bytes:
        tail = self._elements(self._inner.end())
        return tail + (b"]" if self._opened else b"[]")

    def error(self, err: GatewayError) -> bytes:
        return self._elements(self._inner.error(err)) + b"]"

    def keepalive(self) -> bytes:
        # Whitespace is valid anywhere between JSON tokens.
        return b"\n"


async def serve_generation(
    gateway: Gateway, client: ClientRequest, principal: auth_pb2.Principal
) -> Response:
    """The shared flow every generation route ends in (after it authenticated the caller)."""
    model = gateway.resolve_model(client.model, principal)
    targets = gateway.targets(model)
    exchange = Exchange(gateway, client, principal, model)
    # Nearly always none: one loop, not two sets, to find out.
    foreign = {p for t in targets if (p := protocol_of(t)) != client.protocol}
    if foreign:
        # Validate up front: a request the IR cannot express fails before admission.
        ir = exchange.ir()
        needed = {id(p): p for up in foreign for p in parts_needing_fetch(ir, up)}
        if needed:
            await gateway.media.inline(list(needed.values()))
    call = await gateway.open_call(
        request_id=client.request_id,
        client_protocol=client.protocol.value,
        principal=principal,
        model=model,
        target=targets[0],
        stream=client.stream,
        request_bytes=len(client.raw),
        max_output_tokens=client.max_output_tokens,
    )
    return await exchange.serve(call, targets)
