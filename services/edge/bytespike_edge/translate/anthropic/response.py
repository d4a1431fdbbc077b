"""Anthropic Messages response ↔ IR, plus the passthrough helpers (reference §2.3, §7)."""

from __future__ import annotations

from typing import Any

from bytespike_common.errors import InternalError
from bytespike_edge.translate import usage as usage_map
from bytespike_edge.translate.context import (
    TranslationContext,
    is_tagged_signature,
    tag_signature,
)
from bytespike_edge.translate.ir import (
    JSON,
    FinishReason,
    IRResponse,
    OpaquePart,
    Part,
    RedactedThinkingPart,
    Signature,
    TextPart,
    ThinkingPart,
    ToolCallPart,
    Usage,
    WireProtocol,
    finish_with_tools,
)

A = WireProtocol.ANTHROPIC

STOP_REASONS: dict[str, FinishReason] = {
    "end_turn": FinishReason.END_TURN,
    "stop_sequence": FinishReason.STOP_SEQUENCE,
    "max_tokens": FinishReason.MAX_TOKENS,
    "tool_use": FinishReason.TOOL_USE,
    "refusal": FinishReason.CONTENT_FILTER,
    "pause_turn": FinishReason.PAUSE_TURN,
    "model_context_window_exceeded": FinishReason.CONTEXT_WINDOW_EXCEEDED,
}
_TO_STOP_REASON: dict[FinishReason, str] = {
    FinishReason.END_TURN: "end_turn",
    FinishReason.STOP_SEQUENCE: "stop_sequence",
    FinishReason.MAX_TOKENS: "max_tokens",
    FinishReason.TOOL_USE: "tool_use",
    FinishReason.CONTENT_FILTER: "refusal",
    FinishReason.PAUSE_TURN: "pause_turn",
    FinishReason.CONTEXT_WINDOW_EXCEEDED: "model_context_window_exceeded",
    FinishReason.MALFORMED_TOOL_CALL: "end_turn",
    FinishReason.OTHER: "end_turn",
}


def stop_reason(reason: FinishReason) -> str:
    return _TO_STOP_REASON[reason]


def message_id(upstream_id: str) -> str:
    return upstream_id if upstream_id.startswith("msg_") else f"msg_{upstream_id}"


def decode_response(body: JSON, ctx: TranslationContext | None = None) -> IRResponse:
    ctx = ctx or TranslationContext(client=A)
    content = body.get("content")
    if not isinstance(content, list):
        raise InternalError("Anthropic upstream response has no content array")
    parts = [p for block in content if (p := decode_block(block, ctx)) is not None]
    raw_reason = body.get("stop_reason")
    reason = (
        STOP_REASONS.get(raw_reason, FinishReason.END_TURN)
        if isinstance(raw_reason, str)
        else FinishReason.END_TURN
    )
    stop_sequence = body.get("stop_sequence")
    raw_usage = body.get("usage")
    return IRResponse(
        id=str(body.get("id") or ""),
        model=str(body.get("model") or ""),
        parts=parts,
        finish_reason=finish_with_tools(reason, parts),
        usage=usage_map.from_anthropic(raw_usage) if isinstance(raw_usage, dict) else Usage(),
        stop_sequence=stop_sequence if isinstance(stop_sequence, str) else None,
    )


def decode_block(block: Any, ctx: TranslationContext) -> Part | None:
    """One upstream content block; server-tool blocks stay opaque (same-vendor only)."""
    if not isinstance(block, dict):
        return None
    kind = block.get("type")
    if kind == "text":
        return TextPart(str(block.get("text", "")))
    if kind == "thinking":
        signature = block.get("signature")
        sig = Signature(A, signature) if isinstance(signature, str) and signature else None
        return ThinkingPart(str(block.get("thinking", "")), sig)
    if kind == "redacted_thinking":
        return RedactedThinkingPart(str(block.get("data", "")))
    if kind == "tool_use":
        arguments = block.get("input")
        return ToolCallPart(
            id=ctx.ids.to_client(str(block.get("id") or "")),
            name=ctx.names.to_client(str(block.get("name") or "")),
            arguments=arguments if isinstance(arguments, dict) else {},
        )
    return OpaquePart(A, block) if ctx.client is A else None


def encode_response(resp: IRResponse, model: str, ctx: TranslationContext | None = None) -> JSON:
    content = [b for p in resp.parts if (b := encode_block(p)) is not None]
    return {
        "id": message_id(resp.id),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason(resp.finish_reason),
        "stop_sequence": resp.stop_sequence
        if resp.finish_reason is FinishReason.STOP_SEQUENCE
        else None,
        "usage": usage_map.to_anthropic(resp.usage),
    }


def encode_block(part: Part) -> JSON | None:
    if isinstance(part, TextPart):
        return {"type": "text", "text": part.text}
    if isinstance(part, ThinkingPart):
        signature = tag_signature(part.signature, A) if part.signature else ""
        return {"type": "thinking", "thinking": part.text, "signature": signature}
    if isinstance(part, RedactedThinkingPart):
        return {"type": "redacted_thinking", "data": part.data} if part.vendor is A else None
    if isinstance(part, ToolCallPart):
        return {"type": "tool_use", "id": part.id, "name": part.name, "input": part.arguments}
    if isinstance(part, OpaquePart) and part.protocol is A:
        return part.data
    return None


# --- passthrough helpers -------------------------------------------------------------------


def rewrite_model(body: JSON, upstream_model: str) -> JSON:
    """Same-protocol forwarding: swap the model and strip gateway-tagged signatures, which
    a real Anthropic upstream would reject (reference §6.8 rule 1)."""
    out = dict(body)
    out["model"] = upstream_model
    messages = body.get("messages")
    if isinstance(messages, list) and any(_has_tagged(m) for m in messages):
        out["messages"] = [_strip_tagged(m) for m in messages]
    return out


def _has_tagged(message: Any) -> bool:
    content = message.get("content") if isinstance(message, dict) else None
    return isinstance(content, list) and any(_is_tagged_block(b) for b in content)


def _is_tagged_block(block: Any) -> bool:
    if not isinstance(block, dict) or block.get("type") != "thinking":
        return False
    signature = block.get("signature")
    return not isinstance(signature, str) or not signature or is_tagged_signature(signature)


def _strip_tagged(message: Any) -> Any:
    if not _has_tagged(message):
        return message
    return {**message, "content": [b for b in message["content"] if not _is_tagged_block(b)]}


def sniff_usage(body: JSON) -> Usage | None:
    raw = body.get("usage")
    return usage_map.from_anthropic(raw) if isinstance(raw, dict) else None


def count_tokens_response(total: int) -> JSON:
    """The `/v1/messages/count_tokens` answer (reference §2.5)."""
    return {"input_tokens": total}


def read_count_tokens(body: JSON) -> int | None:
    value = body.get("input_tokens")
    return value if isinstance(value, int) and not isinstance(value, bool) else None
