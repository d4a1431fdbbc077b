"""Gemini streams (`alt=sse`): each `data:` frame is a whole GenerateContentResponse
(reference §5.3, §8.3-§8.5). No event names, no terminator; the last chunk carries
`finishReason` and the authoritative usage (never summed across chunks).
"""

from __future__ import annotations

import secrets

import orjson

from bytespike_common.errors import ErrorKind, GatewayError
from bytespike_edge.translate import usage as usage_map
from bytespike_edge.translate.context import TranslationContext
from bytespike_edge.translate.errors import upstream_error
from bytespike_edge.translate.gemini.errors import error_body, error_from_object
from bytespike_edge.translate.gemini.response import (
    blocked,
    candidate_parts,
    decode_call,
    encode_part,
    finish_reason,
    first_candidate,
    read_finish,
    signature_of,
)
from bytespike_edge.translate.ir import (
    JSON,
    BlockStart,
    BlockStop,
    Finish,
    FinishReason,
    MessageStart,
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
from bytespike_edge.translate.sse import BLANK_KEEPALIVE, frame

G = WireProtocol.GEMINI


class StreamDecoder:
    def __init__(self, ctx: TranslationContext | None = None) -> None:
        self._ctx = ctx or TranslationContext(client=G)
        self._started = False
        self._open: tuple[str, int] | None = None  # ("text" | "thinking", IR index)
        self._next = 0
        self._tool_calls = False
        self._usage: Usage | None = None
        self._done = False

    @property
    def usage(self) -> Usage | None:
        return self._usage

    def feed(self, event: str | None, data: str) -> list[StreamEvent]:
        if self._done:
            return []
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            return self._fail("malformed chunk from the Gemini upstream")
        if not isinstance(chunk, dict):
            return []
        if "error" in chunk:
            self._done = True
            return [StreamError(error_from_object(chunk["error"], None))]
        events: list[StreamEvent] = []
        if isinstance(chunk.get("usageMetadata"), dict):
            self._usage = usage_map.from_gemini(chunk["usageMetadata"])
        if not self._started:
            self._started = True
            model = str(chunk.get("modelVersion") or "")
            events.append(MessageStart(str(chunk.get("responseId") or ""), model, self._usage))
        elif self._usage is not None:
            events.append(UsageUpdate(self._usage))
        candidate = first_candidate(chunk)
        if candidate is None:
            return events + (self._finish(FinishReason.CONTENT_FILTER) if blocked(chunk) else [])
        for part in candidate_parts(candidate):
            if isinstance(part, dict):
                events.extend(self._part(part))
        raw_reason = candidate.get("finishReason")
        if raw_reason is not None:
            try:
                reason = read_finish(raw_reason)
            except GatewayError as err:
                self._done = True
                return [*events, StreamError(err)]
            events.extend(self._finish(reason))
        return events

    def close(self) -> list[StreamEvent]:
        if self._done:
            return []
        # No finishReason before the connection closed: the upstream failed (§8.3 step 4).
        return self._fail("the Gemini stream ended without a finishReason")

    def _fail(self, message: str) -> list[StreamEvent]:
        self._done = True
        return [StreamError(upstream_error(502, message, kind=ErrorKind.INTERNAL))]

    def _part(self, part: JSON) -> list[StreamEvent]:
        signature = signature_of(part)
        call = part.get("functionCall")
        if isinstance(call, dict):
            self._tool_calls = True
            tool = decode_call(call, signature, self._ctx)
            index = self._next
            self._next += 1
            args = orjson.dumps(tool.arguments).decode()
            start = BlockStart(
                index, ToolCallPart(tool.id, tool.name, {}, signature=tool.signature)
            )
            return [*self._close(), start, ToolArgsDelta(index, args), BlockStop(index)]
        text = part.get("text")
        if not isinstance(text, str):
            return []
        kind = "thinking" if part.get("thought") is True else "text"
        events: list[StreamEvent] = []
        if kind == "text":
            events.extend(self._sign(signature))
        if text:
            events.extend(self._text(kind, text))
        if kind == "thinking":
            events.extend(self._sign(signature))
        return events

    def _sign(self, signature: Signature | None) -> list[StreamEvent]:
        # Only into a thinking block still open: a late signature must never open a thinking
        # block after text (Claude Code then drops the reply, §9 item 18).
        if signature is None or self._open is None or self._open[0] != "thinking":
            return []
        return [SignatureDelta(self._open[1], signature)]

    def _text(self, kind: str, text: str) -> list[StreamEvent]:
        events: list[StreamEvent] = []
        if self._open is None or self._open[0] != kind:
            events.extend(self._close())
            index = self._next
            self._next += 1
            self._open = (kind, index)
            events.append(BlockStart(index, TextPart("") if kind == "text" else ThinkingPart("")))
        index = self._open[1]
        events.append(TextDelta(index, text) if kind == "text" else ThinkingDelta(index, text))
        return events

    def _close(self) -> list[StreamEvent]:
        if self._open is None:
            return []
        index, self._open = self._open[1], None
        return [BlockStop(index)]

    def _finish(self, reason: FinishReason) -> list[StreamEvent]:
        self._done = True
        return [*self._close(), Finish(finish_with_tools(reason, self._tool_calls), self._usage)]


class StreamEncoder:
    """IR events → Gemini client frames: one chunk per delta, each function call whole,
    `finishReason` and the full `usageMetadata` on the last chunk (§8.4)."""

    def __init__(self, model: str, ctx: TranslationContext | None = None) -> None:
        self._model = model
        self._include_thoughts = bool(ctx and ctx.include_thoughts)
        self._id = secrets.token_hex(8)
        self._usage: Usage | None = None
        self._tools: dict[int, tuple[ToolCallPart, list[str]]] = {}
        self._closed = False

    def keepalive(self) -> bytes:
        return BLANK_KEEPALIVE

    def error(self, err: GatewayError) -> bytes:
        return self.encode(StreamError(err))

    def encode(self, event: StreamEvent) -> bytes:
        if self._closed:
            return b""
        if isinstance(event, StreamError):
            self._closed = True
            return frame(error_body(event.error))
        if isinstance(event, MessageStart):
            self._id = event.id or self._id
            self._usage = event.usage
        elif isinstance(event, UsageUpdate):
            self._usage = event.usage
        elif isinstance(event, BlockStart) and isinstance(event.part, ToolCallPart):
            self._tools[event.index] = (event.part, [])
        elif isinstance(event, ToolArgsDelta) and event.index in self._tools:
            self._tools[event.index][1].append(event.partial_json)
        elif isinstance(event, BlockStop) and event.index in self._tools:
            return self._call(*self._tools.pop(event.index))
        elif isinstance(event, TextDelta) and event.text:
            return self._chunk([{"text": event.text}])
        elif isinstance(event, ThinkingDelta) and event.text and self._include_thoughts:
            return self._chunk([{"text": event.text, "thought": True}])
        elif isinstance(event, Finish):
            self._closed = True
            usage = event.usage or self._usage or Usage()
            return self._chunk(
                [{"text": ""}], finish_reason(event.reason), usage_map.to_gemini(usage)
            )
        return b""

    def _call(self, call: ToolCallPart, fragments: list[str]) -> bytes:
        try:
            args = orjson.loads("".join(fragments) or "{}")
        except orjson.JSONDecodeError:
            args = {"_raw": "".join(fragments)}
        if not isinstance(args, dict):
            args = {"_raw": "".join(fragments)}
        part = encode_part(ToolCallPart(call.id, call.name, args, signature=call.signature), False)
        return self._chunk([part] if part else [])

    def _chunk(
        self, parts: list[JSON], reason: str | None = None, usage: JSON | None = None
    ) -> bytes:
        candidate: JSON = {"content": {"role": "model", "parts": parts}, "index": 0}
        if reason is not None:
            candidate["finishReason"] = reason
        chunk: JSON = {"candidates": [candidate]}
        if usage is None and self._usage is not None:
            prompt = self._usage.prompt_tokens
            usage = {"promptTokenCount": prompt, "totalTokenCount": prompt}
        if usage is not None:
            chunk["usageMetadata"] = usage
        chunk["modelVersion"] = self._model
        chunk["responseId"] = self._id
        return frame(chunk)


class UsageSniffer:
    """Usage of a passthrough Gemini stream: the last chunk's usageMetadata wins."""

    def __init__(self) -> None:
        self._usage: Usage | None = None

    @property
    def usage(self) -> Usage | None:
        return self._usage

    def feed(self, event: str | None, data: str) -> bool:
        if '"usageMetadata"' not in data:
            return True
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            return True
        if isinstance(chunk, dict) and isinstance(chunk.get("usageMetadata"), dict):
            self._usage = usage_map.from_gemini(chunk["usageMetadata"])
        return True
