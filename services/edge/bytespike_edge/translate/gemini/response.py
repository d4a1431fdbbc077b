"""Gemini `GenerateContentResponse` ↔ IR, plus passthrough helpers (reference §5.2, §7)."""

from __future__ import annotations

import secrets
from typing import Any

from bytespike_common.errors import ErrorKind
from bytespike_edge.translate import usage as usage_map
from bytespike_edge.translate.context import TranslationContext
from bytespike_edge.translate.errors import upstream_error
from bytespike_edge.translate.ir import (
    JSON,
    FinishReason,
    IRResponse,
    Part,
    Signature,
    TextPart,
    ThinkingPart,
    ToolCallPart,
    Usage,
    WireProtocol,
    finish_with_tools,
)

G = WireProtocol.GEMINI

_FILTERED = (
    "SAFETY", "RECITATION", "LANGUAGE", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII",
    "IMAGE_SAFETY", "IMAGE_PROHIBITED_CONTENT", "IMAGE_OTHER", "IMAGE_RECITATION", "MODEL_ARMOR",
)  # fmt: skip
FINISH_REASONS: dict[str, FinishReason] = {
    "STOP": FinishReason.END_TURN,
    "MAX_TOKENS": FinishReason.MAX_TOKENS,
    "MALFORMED_FUNCTION_CALL": FinishReason.MALFORMED_TOOL_CALL,
    "UNEXPECTED_TOOL_CALL": FinishReason.MALFORMED_TOOL_CALL,
    "TOO_MANY_TOOL_CALLS": FinishReason.MALFORMED_TOOL_CALL,
    **{name: FinishReason.CONTENT_FILTER for name in _FILTERED},
}
_TO_FINISH_REASON: dict[FinishReason, str] = {
    FinishReason.END_TURN: "STOP",
    FinishReason.STOP_SEQUENCE: "STOP",
    FinishReason.TOOL_USE: "STOP",
    FinishReason.MAX_TOKENS: "MAX_TOKENS",
    FinishReason.CONTEXT_WINDOW_EXCEEDED: "MAX_TOKENS",
    FinishReason.CONTENT_FILTER: "SAFETY",
    FinishReason.PAUSE_TURN: "OTHER",
    FinishReason.MALFORMED_TOOL_CALL: "MALFORMED_FUNCTION_CALL",
    FinishReason.OTHER: "OTHER",
}
MISSING_SIGNATURE = "MISSING_THOUGHT_SIGNATURE"


def finish_reason(reason: FinishReason) -> str:
    return _TO_FINISH_REASON[reason]


def read_finish(raw: Any) -> FinishReason:
    """Upstream `finishReason` → IR; a missing signature is the caller's 400 (§7.1)."""
    if raw == MISSING_SIGNATURE:
        raise upstream_error(
            400,
            "The Gemini upstream rejected the conversation: "
            "a function call lacks its thought signature",
            kind=ErrorKind.INVALID_REQUEST,
        )
    return (
        FINISH_REASONS.get(raw, FinishReason.OTHER) if isinstance(raw, str) else FinishReason.OTHER
    )


def first_candidate(body: JSON) -> JSON | None:
    candidates = body.get("candidates")
    if isinstance(candidates, list) and candidates and isinstance(candidates[0], dict):
        return candidates[0]
    return None


def candidate_parts(candidate: JSON) -> list[Any]:
    content = candidate.get("content")
    parts = content.get("parts") if isinstance(content, dict) else None
    return parts if isinstance(parts, list) else []


def blocked(body: JSON) -> bool:
    feedback = body.get("promptFeedback")
    return isinstance(feedback, dict) and bool(feedback.get("blockReason"))


def signature_of(part: JSON) -> Signature | None:
    value = part.get("thoughtSignature")
    return Signature(G, value) if isinstance(value, str) and value else None


def decode_call(call: JSON, signature: Signature | None, ctx: TranslationContext) -> ToolCallPart:
    args = call.get("args")
    return ToolCallPart(
        id=ctx.ids.to_client(call.get("id") if isinstance(call.get("id"), str) else None),
        name=ctx.names.to_client(str(call.get("name") or "")),
        arguments=args if isinstance(args, dict) else {},
        signature=signature,
    )


def decode_response(body: JSON, ctx: TranslationContext | None = None) -> IRResponse:
    ctx = ctx or TranslationContext(client=G)
    usage_raw = body.get("usageMetadata")
    usage = usage_map.from_gemini(usage_raw) if isinstance(usage_raw, dict) else Usage()
    resp = IRResponse(
        id=str(body.get("responseId") or ""),
        model=str(body.get("modelVersion") or ""),
        parts=[],
        finish_reason=FinishReason.END_TURN,
        usage=usage,
    )
    candidate = first_candidate(body)
    if candidate is None:
        # A blocked prompt is a 200 without candidates: a refusal, not an error (§9 item 34).
        resp.finish_reason = FinishReason.CONTENT_FILTER if blocked(body) else FinishReason.END_TURN
        return resp
    for raw in candidate_parts(candidate):
        if isinstance(raw, dict):
            _add_part(resp.parts, raw, ctx)
    reason = read_finish(candidate.get("finishReason"))
    resp.finish_reason = finish_with_tools(reason, resp.parts)
    return resp


def _add_part(parts: list[Part], raw: JSON, ctx: TranslationContext) -> None:
    signature = signature_of(raw)
    call = raw.get("functionCall")
    if isinstance(call, dict):
        parts.append(decode_call(call, signature, ctx))
        return
    text = raw.get("text")
    if not isinstance(text, str):
        return  # inline media output and executable code have no cross-vendor slot
    last = parts[-1] if parts else None
    if raw.get("thought") is True:
        parts.append(ThinkingPart(text, signature))
    elif isinstance(last, ThinkingPart) and last.signature is None and signature is not None:
        # The step's signature on the first part after the thoughts belongs to them (§8.3).
        last.signature = signature
        if text:
            parts.append(TextPart(text))
    elif text:
        if isinstance(last, TextPart):
            last.text += text
        else:
            parts.append(TextPart(text))


def encode_response(resp: IRResponse, model: str, ctx: TranslationContext | None = None) -> JSON:
    include_thoughts = bool(ctx and ctx.include_thoughts)
    parts = [p for part in resp.parts if (p := encode_part(part, include_thoughts)) is not None]
    return {
        "candidates": [
            {
                "content": {"role": "model", "parts": parts},
                "finishReason": finish_reason(resp.finish_reason),
                "index": 0,
            }
        ],
        "usageMetadata": usage_map.to_gemini(resp.usage),
        "modelVersion": model,
        "responseId": resp.id or secrets.token_hex(8),
    }


def encode_part(part: Part, include_thoughts: bool) -> JSON | None:
    if isinstance(part, TextPart):
        return {"text": part.text}
    if isinstance(part, ThinkingPart):
        return (
            _signed({"text": part.text, "thought": True}, part.signature)
            if include_thoughts
            else None
        )
    if isinstance(part, ToolCallPart):
        call: JSON = {"name": part.name, "args": part.arguments}
        if part.id:
            # Ids from other vendors are harmless to Gemini clients and ease replay (§8.4).
            call["id"] = part.id
        return _signed({"functionCall": call}, part.signature)
    return None


def _signed(part: JSON, signature: Signature | None) -> JSON:
    """Gemini's own signatures go back to Gemini clients as they came; others never do."""
    if signature is not None and signature.vendor is G:
        part["thoughtSignature"] = signature.value
    return part


# --- passthrough helpers -------------------------------------------------------------------


def rewrite_model(body: JSON, upstream_model: str) -> JSON:
    """Gemini names the model in the URL; only a countTokens `generateContentRequest`
    repeats it in the body."""
    inner = body.get("generateContentRequest")
    if not isinstance(inner, dict):
        return body
    return {**body, "generateContentRequest": {**inner, "model": f"models/{upstream_model}"}}


def sniff_usage(body: JSON) -> Usage | None:
    raw = body.get("usageMetadata")
    return usage_map.from_gemini(raw) if isinstance(raw, dict) else None


def count_tokens_response(total: int) -> JSON:
    """The `:countTokens` answer (reference §5.4)."""
    return {"totalTokens": total}


def read_count_tokens(body: JSON) -> int | None:
    value = body.get("totalTokens")
    return value if isinstance(value, int) and not isinstance(value, bool) else None
