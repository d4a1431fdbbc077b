"""Anthropic Messages streams: upstream events → IR, IR → client events (reference §2.4, §8).

Client-side order is message_start → (content_block_start, deltas, content_block_stop)* →
message_delta → message_stop; every frame carries an `event:` line, because the anthropic
SDK skips frames without one (§9 item 20).
"""

from __future__ import annotations

from typing import Any

import orjson

from bytespike_common.errors import ErrorKind, GatewayError
from bytespike_edge.translate import usage as usage_map
from bytespike_edge.translate.anthropic.errors import error_body, error_from_object
from bytespike_edge.translate.anthropic.response import (
    STOP_REASONS,
    decode_block,
    message_id,
    stop_reason,
)
from bytespike_edge.translate.context import TranslationContext, tag_signature
from bytespike_edge.translate.errors import upstream_error
from bytespike_edge.translate.ir import (
    JSON,
    BlockStart,
    BlockStop,
    Finish,
    FinishReason,
    MessageStart,
    RedactedThinkingPart,
    Signature,
    SignatureDelta,
    StreamError,
    StreamEvent,
    TextDelta,
    TextPart,
    ThinkingDelta,
    ThinkingPart,
    ToolArgsDelta,
    ToolCallPart,
    Usage,
    UsageUpdate,
    WireProtocol,
    finish_with_tools,
)
from bytespike_edge.translate.sse import frame

A = WireProtocol.ANTHROPIC
PING = frame({"type": "ping"}, "ping")


class StreamDecoder:
    """Anthropic upstream SSE → IR events. Server-tool blocks are skipped and the rest
    re-indexed, so IR indexes stay contiguous."""

    def __init__(self, ctx: TranslationContext | None = None) -> None:
        self._ctx = ctx or TranslationContext(client=A)
        self._index: dict[int, int] = {}
        self._next = 0
        self._usage = Usage()
        self._reason = FinishReason.END_TURN
        self._stop_sequence: str | None = None
        self._tool_calls = False
        self._done = False

    @property
    def usage(self) -> Usage | None:
        return self._usage

    def feed(self, event: str | None, data: str) -> list[StreamEvent]:
        if self._done:
            return []
        try:
            payload = orjson.loads(data)
        except orjson.JSONDecodeError:
            return self._fail("malformed event from the Anthropic upstream")
        if not isinstance(payload, dict):
            return []
        kind = payload.get("type", event)
        if kind == "message_start":
            return self._start(payload.get("message"))
        if kind == "content_block_start":
            return self._block_start(payload)
        if kind == "content_block_delta":
            return self._delta(payload)
        if kind == "content_block_stop":
            index = self._index.get(_int(payload.get("index")))
            return [] if index is None else [BlockStop(index)]
        if kind == "message_delta":
            return self._message_delta(payload)
        if kind == "message_stop":
            self._done = True
            reason = finish_with_tools(self._reason, self._tool_calls)
            return [Finish(reason, self._usage, self._stop_sequence)]
        if kind == "error":
            self._done = True
            return [StreamError(error_from_object(payload.get("error"), None))]
        return []

    def close(self) -> list[StreamEvent]:
        if self._done:
            return []
        return self._fail("the Anthropic stream ended before message_stop")

    def _fail(self, message: str) -> list[StreamEvent]:
        self._done = True
        return [StreamError(upstream_error(502, message, kind=ErrorKind.INTERNAL))]

    def _start(self, message: Any) -> list[StreamEvent]:
        message = message if isinstance(message, dict) else {}
        raw = message.get("usage")
        self._usage = usage_map.from_anthropic(raw) if isinstance(raw, dict) else Usage()
        return [
            MessageStart(str(message.get("id") or ""), str(message.get("model") or ""), self._usage)
        ]

    def _block_start(self, payload: JSON) -> list[StreamEvent]:
        block = payload.get("content_block")
        part = decode_block(block, self._ctx)
        if not isinstance(part, TextPart | ThinkingPart | ToolCallPart | RedactedThinkingPart):
            return []
        index = self._next
        self._next += 1
        self._index[_int(payload.get("index"))] = index
        events: list[StreamEvent] = []
        if isinstance(part, TextPart):
            events.append(BlockStart(index, TextPart("")))
            if part.text:
                events.append(TextDelta(index, part.text))
        elif isinstance(part, ThinkingPart):
            events.append(BlockStart(index, ThinkingPart("")))
            if part.text:
                events.append(ThinkingDelta(index, part.text))
        elif isinstance(part, ToolCallPart):
            self._tool_calls = True
            events.append(BlockStart(index, ToolCallPart(part.id, part.name, {})))
            if part.arguments:
                events.append(ToolArgsDelta(index, orjson.dumps(part.arguments).decode()))
        else:
            events.append(BlockStart(index, part))
        return events

    def _delta(self, payload: JSON) -> list[StreamEvent]:
        index = self._index.get(_int(payload.get("index")))
        delta = payload.get("delta")
        if index is None or not isinstance(delta, dict):
            return []
        kind = delta.get("type")
        if kind == "text_delta":
            return [TextDelta(index, str(delta.get("text", "")))]
        if kind == "thinking_delta":
            return [ThinkingDelta(index, str(delta.get("thinking", "")))]
        if kind == "signature_delta" and delta.get("signature"):
            return [SignatureDelta(index, Signature(A, str(delta["signature"])))]
        if kind == "input_json_delta" and delta.get("partial_json"):
            return [ToolArgsDelta(index, str(delta["partial_json"]))]
        return []  # citations_delta and future kinds have no IR counterpart

    def _message_delta(self, payload: JSON) -> list[StreamEvent]:
        delta = payload.get("delta")
        if isinstance(delta, dict):
            reason = delta.get("stop_reason")
            if isinstance(reason, str):
                self._reason = STOP_REASONS.get(reason, FinishReason.END_TURN)
            sequence = delta.get("stop_sequence")
            self._stop_sequence = sequence if isinstance(sequence, str) else None
        raw = payload.get("usage")
        if isinstance(raw, dict):
            self._usage = usage_map.merge_anthropic(self._usage, raw)
        return [UsageUpdate(self._usage)]


def _int(value: Any) -> int:
    return value if isinstance(value, int) else -1


class StreamEncoder:
    """IR events → Anthropic client SSE, with its block-index state machine."""

    def __init__(self, model: str, ctx: TranslationContext | None = None) -> None:
        self._model = model
        self._started = False
        self._open: int | None = None  # client index of the open block
        self._next = 0
        self._usage: Usage | None = None
        self._closed = False

    def keepalive(self) -> bytes:
        return PING

    def error(self, err: GatewayError) -> bytes:
        return self.encode(StreamError(err))

    def encode(self, event: StreamEvent) -> bytes:
        if self._closed:
            return b""
        if isinstance(event, StreamError):
            self._closed = True
            return frame(error_body(event.error), "error")
        out = (
            b""
            if self._started or isinstance(event, MessageStart)
            else self._message_start("", None)
        )
        if isinstance(event, MessageStart):
            out += self._message_start(event.id, event.usage)
        elif isinstance(event, BlockStart):
            out += self._close_block() + self._block_start(event)
        elif isinstance(event, BlockStop):
            out += self._close_block()
        elif isinstance(event, UsageUpdate):
            self._usage = event.usage
        elif isinstance(event, Finish):
            out += self._finish(event)
        elif self._open is not None:
            out += self._delta(event)
        return out

    def _message_start(self, upstream_id: str, usage: Usage | None) -> bytes:
        if self._started:
            return b""
        self._started = True
        self._usage = usage
        start_usage = usage_map.to_anthropic(usage or Usage())
        start_usage["output_tokens"] = 0
        start_usage.pop("output_tokens_details", None)
        message: JSON = {
            "id": message_id(upstream_id or "gw"),
            "type": "message",
            "role": "assistant",
            "model": self._model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": start_usage,
        }
        return frame({"type": "message_start", "message": message}, "message_start")

    def _block_start(self, event: BlockStart) -> bytes:
        index = self._next
        self._next += 1
        self._open = index
        part = event.part
        block: JSON
        if isinstance(part, TextPart):
            block = {"type": "text", "text": ""}
        elif isinstance(part, ThinkingPart):
            block = {"type": "thinking", "thinking": "", "signature": ""}
        elif isinstance(part, ToolCallPart):
            # `input` must be present and empty; arguments follow as input_json_delta (§9.21).
            block = {"type": "tool_use", "id": part.id, "name": part.name, "input": {}}
        else:
            block = {"type": "redacted_thinking", "data": part.data}
        payload = {"type": "content_block_start", "index": index, "content_block": block}
        return frame(payload, "content_block_start")

    def _delta(self, event: StreamEvent) -> bytes:
        delta: JSON
        if isinstance(event, TextDelta):
            delta = {"type": "text_delta", "text": event.text}
        elif isinstance(event, ThinkingDelta):
            delta = {"type": "thinking_delta", "thinking": event.text}
        elif isinstance(event, SignatureDelta):
            delta = {"type": "signature_delta", "signature": tag_signature(event.signature, A)}
        elif isinstance(event, ToolArgsDelta):
            delta = {"type": "input_json_delta", "partial_json": event.partial_json}
        else:
            return b""
        payload = {"type": "content_block_delta", "index": self._open, "delta": delta}
        return frame(payload, "content_block_delta")

    def _close_block(self) -> bytes:
        if self._open is None:
            return b""
        index, self._open = self._open, None
        return frame({"type": "content_block_stop", "index": index}, "content_block_stop")

    def _finish(self, event: Finish) -> bytes:
        out = self._close_block()
        if self._next == 0:
            # An empty content list is legal, but some clients stall on it (§8.1 step 8).
            out += self._block_start(BlockStart(0, TextPart(""))) + self._close_block()
        usage = usage_map.to_anthropic(event.usage or self._usage or Usage())
        stop_sequence = event.stop_sequence if event.reason is FinishReason.STOP_SEQUENCE else None
        delta = {"stop_reason": stop_reason(event.reason), "stop_sequence": stop_sequence}
        out += frame({"type": "message_delta", "delta": delta, "usage": usage}, "message_delta")
        self._closed = True
        return out + frame({"type": "message_stop"}, "message_stop")


class UsageSniffer:
    """Usage of a passthrough Anthropic stream: message_start, then cumulative message_delta."""

    def __init__(self) -> None:
        self._usage: Usage | None = None

    @property
    def usage(self) -> Usage | None:
        return self._usage

    def feed(self, event: str | None, data: str) -> bool:
        if event not in ("message_start", "message_delta") or '"usage"' not in data:
            return True
        try:
            payload = orjson.loads(data)
        except orjson.JSONDecodeError:
            return True
        if not isinstance(payload, dict):
            return True
        if event == "message_start":
            message = payload.get("message")
            raw = message.get("usage") if isinstance(message, dict) else None
            if isinstance(raw, dict):
                self._usage = usage_map.from_anthropic(raw)
        elif isinstance(payload.get("usage"), dict):
            self._usage = usage_map.merge_anthropic(self._usage or Usage(), payload["usage"])
        return True
