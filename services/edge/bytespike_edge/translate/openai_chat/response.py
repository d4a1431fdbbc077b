"""OpenAI Chat Completions response ↔ IR, plus passthrough helpers (reference §3.3, §7)."""

from __future__ import annotations

import secrets
import time
from typing import Any

from bytespike_common.errors import InternalError
from bytespike_edge.translate import usage as usage_map
from bytespike_edge.translate.context import TranslationContext
from bytespike_edge.translate.ir import (
    JSON,
    FinishReason,
    IRResponse,
    Part,
    TextPart,
    ThinkingPart,
    ToolCallPart,
    Usage,
    WireProtocol,
    finish_with_tools,
)
from bytespike_edge.translate.toolargs import dump_arguments, parse_arguments

OAI = WireProtocol.OPENAI

FINISH_REASONS: dict[str, FinishReason] = {
    "stop": FinishReason.END_TURN,
    "length": FinishReason.MAX_TOKENS,
    "tool_calls": FinishReason.TOOL_USE,
    "function_call": FinishReason.TOOL_USE,
    "content_filter": FinishReason.CONTENT_FILTER,
}
_TO_FINISH_REASON: dict[FinishReason, str] = {
    FinishReason.END_TURN: "stop",
    FinishReason.STOP_SEQUENCE: "stop",
    FinishReason.MAX_TOKENS: "length",
    FinishReason.TOOL_USE: "tool_calls",
    FinishReason.CONTENT_FILTER: "content_filter",
    FinishReason.PAUSE_TURN: "stop",
    FinishReason.CONTEXT_WINDOW_EXCEEDED: "length",
    FinishReason.MALFORMED_TOOL_CALL: "stop",
    FinishReason.OTHER: "stop",
}


def finish_reason(reason: FinishReason) -> str:
    return _TO_FINISH_REASON[reason]


def completion_id(upstream_id: str) -> str:
    if upstream_id.startswith("chatcmpl-"):
        return upstream_id
    return f"chatcmpl-{upstream_id or secrets.token_hex(12)}"


def reasoning_text(obj: JSON) -> str | None:
    """Compatible servers' reasoning extension (`reasoning_content` or `reasoning`, §3.3)."""
    value = obj.get("reasoning_content") or obj.get("reasoning")
    return value if isinstance(value, str) and value else None


def decode_response(body: JSON, ctx: TranslationContext | None = None) -> IRResponse:
    ctx = ctx or TranslationContext(client=OAI)
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise InternalError("OpenAI upstream response has no choices")
    first: JSON = choices[0]
    raw_message = first.get("message")
    message: JSON = raw_message if isinstance(raw_message, dict) else {}
    parts: list[Part] = []
    reasoning = reasoning_text(message)
    if reasoning:
        parts.append(ThinkingPart(reasoning))
    content = message.get("content")
    if isinstance(content, str) and content:
        parts.append(TextPart(content))
    refusal = message.get("refusal")
    if isinstance(refusal, str) and refusal:
        parts.append(TextPart(refusal))
    for call in message.get("tool_calls") or []:
        if isinstance(call, dict) and isinstance(call.get("function"), dict):
            parts.append(decode_call(call, ctx))
    raw = first.get("finish_reason")
    reason = (
        FINISH_REASONS.get(raw, FinishReason.END_TURN)
        if isinstance(raw, str)
        else FinishReason.END_TURN
    )
    if isinstance(refusal, str) and refusal:
        reason = FinishReason.CONTENT_FILTER
    raw_usage = body.get("usage")
    created = body.get("created")
    return IRResponse(
        id=str(body.get("id") or ""),
        model=str(body.get("model") or ""),
        parts=parts,
        finish_reason=finish_with_tools(reason, parts),
        usage=usage_map.from_openai(raw_usage) if isinstance(raw_usage, dict) else Usage(),
        created=created if isinstance(created, int) else None,
    )


def decode_call(call: JSON, ctx: TranslationContext) -> ToolCallPart:
    function: JSON = call["function"]
    arguments = function.get("arguments")
    args, raw = parse_arguments(arguments if isinstance(arguments, str) else "")
    if raw is not None:
        ctx.warn("a tool call's arguments were not a JSON object; passed on under '_raw'")
    return ToolCallPart(
        id=ctx.ids.to_client(str(call.get("id") or "")),
        name=ctx.names.to_client(str(function.get("name") or "")),
        arguments=args,
        raw_arguments=raw,
    )


def encode_response(resp: IRResponse, model: str, ctx: TranslationContext | None = None) -> JSON:
    texts = [p.text for p in resp.parts if isinstance(p, TextPart)]
    calls = [p for p in resp.parts if isinstance(p, ToolCallPart)]
    message: JSON = {"role": "assistant", "content": "".join(texts) or None, "refusal": None}
    if calls:
        message["tool_calls"] = [encode_call(c) for c in calls]
    thoughts = "".join(p.text for p in resp.parts if isinstance(p, ThinkingPart))
    if thoughts and ctx is not None and ctx.include_thoughts:
        message["reasoning_content"] = thoughts
    return {
        "id": completion_id(resp.id),
        "object": "chat.completion",
        "created": resp.created or int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": finish_reason(resp.finish_reason),
            }
        ],
        "usage": usage_map.to_openai(resp.usage),
    }


def encode_call(call: ToolCallPart) -> JSON:
    return {
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": dump_arguments(call)},
    }


# --- passthrough helpers -------------------------------------------------------------------


def rewrite_model(body: JSON, upstream_model: str) -> JSON:
    """Same-protocol forwarding: swap the model, and always ask a stream for usage (the
    sniffer removes the usage chunk again if the client did not ask, §8)."""
    out = dict(body)
    out["model"] = upstream_model
    if body.get("stream") is True:
        options: Any = body.get("stream_options")
        out["stream_options"] = {
            **(options if isinstance(options, dict) else {}),
            "include_usage": True,
        }
    return out


def sniff_usage(body: JSON) -> Usage | None:
    raw = body.get("usage")
    return usage_map.from_openai(raw) if isinstance(raw, dict) else None
