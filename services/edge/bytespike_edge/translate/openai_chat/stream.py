"""OpenAI Chat Completions streams: chunks → IR, IR → client chunks (reference §3.4, §8).

Upstream tool-call fragments are buffered per index and emitted whole when the upstream
finishes: providers interleave indexes and split calls unpredictably (§9 item 23), and
buffering lets malformed arguments be replaced by a valid fallback before any client sees
them (case 32). Text and reasoning stream live.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from bytespike_common.errors import ErrorKind, GatewayError
from bytespike_edge.translate import usage as usage_map
from bytespike_edge.translate.context import TranslationContext
from bytespike_edge.translate.errors import upstream_error
from bytespike_edge.translate.ir import (
    JSON,
    BlockStart,
    BlockStop,
    Finish,
    FinishReason,
    MessageStart,
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
from bytespike_edge.translate.openai_chat.errors import error_body, error_from_object
from bytespike_edge.translate.openai_chat.response import (
    FINISH_REASONS,
    completion_id,
    finish_reason,
    reasoning_text,
)
from bytespike_edge.translate.sse import COMMENT_KEEPALIVE, frame
from bytespike_edge.translate.toolargs import parse_arguments

OAI = WireProtocol.OPENAI
DONE = b"data: [DONE]\n\n"


@dataclass(slots=True)
class _ToolBuffer:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


class StreamDecoder:
    def __init__(self, ctx: TranslationContext | None = None) -> None:
        self._ctx = ctx or TranslationContext(client=OAI)
        self._started = False
        self._open: tuple[str, int] | None = None  # ("text" | "thinking", IR index)
        self._next = 0
        self._tools: dict[int, _ToolBuffer] = {}
        self._reason: FinishReason | None = None
        self._refused = False
        self._usage: Usage | None = None
        self._done = False

    @property
    def usage(self) -> Usage | None:
        return self._usage

    def feed(self, event: str | None, data: str) -> list[StreamEvent]:
        if self._done:
            return []
        if data.strip() == "[DONE]":
            return self._finish()
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            return self._fail("malformed chunk from the OpenAI upstream")
        if not isinstance(chunk, dict):
            return []
        if chunk.get("error"):
            self._done = True
            return [StreamError(error_from_object(chunk["error"], None))]
        events: list[StreamEvent] = []
        if not self._started:
            self._started = True
            events.append(MessageStart(str(chunk.get("id") or ""), str(chunk.get("model") or "")))
        if isinstance(chunk.get("usage"), dict):
            self._usage = usage_map.from_openai(chunk["usage"])
            events.append(UsageUpdate(self._usage))
        choices = chunk.get("choices")
        if isinstance(choices, list) and choices and isinstance(choices[0], dict):
            events.extend(self._choice(choices[0]))
        return events

    def close(self) -> list[StreamEvent]:
        if self._done:
            return []
        if self._reason is not None:
            return self._finish()  # some compatible servers omit [DONE]
        return self._fail("the OpenAI stream ended before a finish_reason")

    def _fail(self, message: str) -> list[StreamEvent]:
        self._done = True
        return [StreamError(upstream_error(502, message, kind=ErrorKind.INTERNAL))]

    def _choice(self, choice: JSON) -> list[StreamEvent]:
        events: list[StreamEvent] = []
        delta = choice.get("delta")
        if isinstance(delta, dict):
            reasoning = reasoning_text(delta)
            if reasoning:
                events.extend(self._text("thinking", reasoning))
            for key in ("content", "refusal"):
                value = delta.get(key)
                if isinstance(value, str) and value:
                    self._refused = self._refused or key == "refusal"
                    events.extend(self._text("text", value))
            calls = delta.get("tool_calls")
            if isinstance(calls, list):
                for position, call in enumerate(calls):
                    if isinstance(call, dict):
                        self._buffer(call, position)
        raw = choice.get("finish_reason")
        if isinstance(raw, str):
            self._reason = FINISH_REASONS.get(raw, FinishReason.END_TURN)
        return events

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

    def _buffer(self, call: JSON, position: int) -> None:
        index = call.get("index")
        buffer = self._tools.setdefault(
            index if isinstance(index, int) else position, _ToolBuffer()
        )
        if isinstance(call.get("id"), str) and call["id"]:
            buffer.id = call["id"]
        function: Any = call.get("function")
        if isinstance(function, dict):
            if isinstance(function.get("name"), str) and function["name"]:
                buffer.name = function["name"]
            if isinstance(function.get("arguments"), str):
                buffer.arguments.append(function["arguments"])

    def _finish(self) -> list[StreamEvent]:
        self._done = True
        events = self._close()
        for _, buffer in sorted(self._tools.items()):
            index = self._next
            self._next += 1
            text = "".join(buffer.arguments)
            args, raw = parse_arguments(text)
            if raw is not None:
                self._ctx.warn(
                    "a tool call's arguments were not a JSON object; passed on under '_raw'"
                )
            call = ToolCallPart(
                self._ctx.ids.to_client(buffer.id), self._ctx.names.to_client(buffer.name), {}
            )
            # Re-serialised: a repaired or empty string is never passed on as-is.
            events += [
                BlockStart(index, call),
                ToolArgsDelta(index, orjson.dumps(args).decode()),
                BlockStop(index),
            ]
        reason = self._reason or FinishReason.END_TURN
        if self._refused and reason is FinishReason.END_TURN:
            reason = FinishReason.CONTENT_FILTER
        events.append(Finish(finish_with_tools(reason, bool(self._tools)), self._usage))
        return events


class StreamEncoder:
    """IR events → OpenAI client chunks: role chunk first, tool id/name on the first
    fragment only, finish chunk, optional usage chunk (`choices: []`), `[DONE]`."""

    def __init__(self, model: str, ctx: TranslationContext | None = None) -> None:
        self._model = model
        self._include_usage = bool(ctx and ctx.include_usage)
        self._include_thoughts = bool(ctx and ctx.include_thoughts)
        self._id = completion_id("")
        self._created = int(time.time())
        self._started = False
        self._tool_index: dict[int, int] = {}
        self._usage: Usage | None = None
        self._closed = False

    def keepalive(self) -> bytes:
        return COMMENT_KEEPALIVE

    def error(self, err: GatewayError) -> bytes:
        return self.encode(StreamError(err))

    def encode(self, event: StreamEvent) -> bytes:
        if self._closed:
            return b""
        if isinstance(event, StreamError):
            self._closed = True  # no [DONE] after an error (§8)
            return frame(error_body(event.error))
        out = b""
        if isinstance(event, MessageStart) and not self._started and event.id:
            self._id = completion_id(event.id)
        if not self._started:
            self._started = True
            out += self._chunk({"role": "assistant", "content": ""})
        if isinstance(event, BlockStart) and isinstance(event.part, ToolCallPart):
            k = self._tool_index[event.index] = len(self._tool_index)
            call = {"index": k, "id": event.part.id, "type": "function"}
            out += self._chunk(
                {"tool_calls": [{**call, "function": {"name": event.part.name, "arguments": ""}}]}
            )
        elif isinstance(event, TextDelta) and event.text:
            out += self._chunk({"content": event.text})
        elif isinstance(event, ThinkingDelta) and event.text and self._include_thoughts:
            out += self._chunk({"reasoning_content": event.text})
        elif (
            isinstance(event, ToolArgsDelta)
            and event.partial_json
            and event.index in self._tool_index
        ):
            fragment = {
                "index": self._tool_index[event.index],
                "function": {"arguments": event.partial_json},
            }
            out += self._chunk({"tool_calls": [fragment]})
        elif isinstance(event, UsageUpdate):
            self._usage = event.usage
        elif isinstance(event, Finish):
            out += self._finish(event)
        return out

    def _chunk(self, delta: JSON, reason: str | None = None) -> bytes:
        chunk: JSON = {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": reason}],
        }
        if self._include_usage:
            chunk["usage"] = None
        return frame(chunk)

    def _finish(self, event: Finish) -> bytes:
        self._closed = True
        reason = event.reason
        if self._tool_index and reason in (FinishReason.END_TURN, FinishReason.STOP_SEQUENCE):
            reason = FinishReason.TOOL_USE
        out = self._chunk({}, finish_reason(reason))
        if self._include_usage:
            usage = event.usage or self._usage or Usage()
            chunk = {
                "id": self._id,
                "object": "chat.completion.chunk",
                "created": self._created,
                "model": self._model,
                "choices": [],
                "usage": usage_map.to_openai(usage),
            }
            out += frame(chunk)
        return out + DONE


class UsageSniffer:
    """Usage of a passthrough OpenAI stream; drops the usage chunk the gateway requested
    when the client did not ask for it (§8, case 17)."""

    def __init__(self, client_wants_usage: bool) -> None:
        self._keep_usage_chunk = client_wants_usage
        self._usage: Usage | None = None

    @property
    def usage(self) -> Usage | None:
        return self._usage

    def feed(self, event: str | None, data: str) -> bool:
        # With include_usage every chunk carries `"usage":null`: only parse real usage.
        if '"usage"' not in data or '"usage":null' in data or '"usage": null' in data:
            return True
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            return True
        if not isinstance(chunk, dict) or not isinstance(chunk.get("usage"), dict):
            return True
        self._usage = usage_map.from_openai(chunk["usage"])
        return self._keep_usage_chunk or bool(chunk.get("choices"))
