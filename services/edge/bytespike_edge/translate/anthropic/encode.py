"""IR → Anthropic Messages request body, for an Anthropic upstream (reference §6, §9)."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from bytespike_edge.translate.context import TranslationContext, settle_extras
from bytespike_edge.translate.fields import fail
from bytespike_edge.translate.ir import (
    JSON,
    AudioPart,
    DocumentPart,
    ImagePart,
    IRRequest,
    Message,
    OpaquePart,
    Part,
    RedactedThinkingPart,
    ResponseFormatType,
    TextPart,
    ThinkingPart,
    ToolCallPart,
    ToolChoiceMode,
    ToolResultContent,
    ToolResultPart,
    WireProtocol,
)
from bytespike_edge.translate.media import ANTHROPIC_IMAGE_TYPES
from bytespike_edge.translate.reasoning import ANTHROPIC_MIN_BUDGET, anthropic_budget
from bytespike_edge.translate.schema import object_schema, strict_objects
from bytespike_edge.translate.turns import in_tool_loop, merge_turns

A = WireProtocol.ANTHROPIC
JSON_OBJECT_INSTRUCTION = "Respond with a single valid JSON object and nothing else."


def encode_request(req: IRRequest, upstream_model: str) -> JSON:
    ctx = req.ctx
    ctx.begin(A, [t.name for t in req.tools])
    _refuse_unservable(req)
    max_tokens = req.params.max_tokens
    if max_tokens is None:
        max_tokens = ctx.default_max_tokens
    budget = _thinking_budget(req, max_tokens)
    messages = merge_turns(req.messages)
    if budget is not None and in_tool_loop(messages) and not _starts_with_thinking(messages[-2]):
        # A tool loop continued without the signed thinking block Anthropic demands (§6.8 rule 2).
        ctx.warn("thinking disabled: the tool loop in progress carries no Anthropic thinking block")
        budget = None
    body: JSON = {
        "model": upstream_model,
        "max_tokens": max_tokens,
        "messages": _messages(messages, ctx, keep_thinking=budget is not None),
    }
    _add_system(body, req)
    _add_tools(body, req, ctx)
    if budget is not None:
        body["thinking"] = {"type": "enabled", "budget_tokens": budget}
    _add_sampling(body, req, ctx, thinking=budget is not None)
    if req.response_format and req.response_format.type is ResponseFormatType.JSON_SCHEMA:
        body["output_config"] = {
            "format": {
                "type": "json_schema",
                "schema": strict_objects(req.response_format.schema or {}),
            }
        }
    if req.user:
        body["metadata"] = {"user_id": req.user}
    if req.metadata:
        ctx.warn("metadata dropped: Anthropic has no slot for it")
    if req.stream:
        body["stream"] = True
    body.update(settle_extras(req, A))
    return body


def encode_count_tokens(req: IRRequest, upstream_model: str) -> JSON:
    """A `/v1/messages/count_tokens` body for the same conversation."""
    body = encode_request(req, upstream_model)
    for key in (
        "max_tokens",
        "stream",
        "temperature",
        "top_p",
        "top_k",
        "stop_sequences",
        "metadata",
    ):
        body.pop(key, None)
    return body


def _refuse_unservable(req: IRRequest) -> None:
    if req.params.n is not None and req.params.n > 1:
        fail("Anthropic models return one candidate; n must be 1", "n")
    if req.params.logprobs:
        fail("Anthropic models do not return logprobs", "logprobs")


def _thinking_budget(req: IRRequest, max_tokens: int) -> int | None:
    if req.reasoning is None:
        return None
    budget = anthropic_budget(req.reasoning)
    if budget is None:
        return None
    choice = req.tool_choice
    if choice and choice.mode in (ToolChoiceMode.ANY, ToolChoiceMode.TOOL):
        # "Thinking may not be enabled when tool_choice forces tool use" (§9 item 9): the
        # forced call is the client's contract, thinking is the optimisation we give up.
        req.ctx.warn("thinking disabled: Anthropic cannot think while tool_choice forces a tool")
        return None
    budget = max(budget, ANTHROPIC_MIN_BUDGET)
    if budget >= max_tokens:
        budget = max_tokens - 1
    if budget < ANTHROPIC_MIN_BUDGET:
        req.ctx.warn("thinking disabled: max_tokens leaves no room for the minimum budget")
        return None
    return budget


def _starts_with_thinking(message: Message) -> bool:
    first = message.parts[0] if message.parts else None
    if isinstance(first, ThinkingPart):
        return first.signature is not None and first.signature.vendor is A
    return isinstance(first, RedactedThinkingPart) and first.vendor is A


def _messages(
    messages: list[Message], ctx: TranslationContext, *, keep_thinking: bool
) -> list[JSON]:
    out: list[JSON] = []
    for message in messages:
        blocks = [b for p in message.parts if (b := _block(p, ctx, keep_thinking)) is not None]
        if not blocks:
            continue  # e.g. a turn that held only another vendor's thinking: no empty messages
        if out and out[-1]["role"] == message.role.value:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": message.role.value, "content": blocks})
    return out


def _block(part: Part, ctx: TranslationContext, keep_thinking: bool) -> JSON | None:
    if isinstance(part, TextPart):
        return _text(part) if part.text else None
    if isinstance(part, ToolCallPart):
        return {
            "type": "tool_use",
            "id": ctx.ids.to_upstream(part.id),
            "name": ctx.names.to_upstream(part.name),
            "input": part.arguments,
        }
    if isinstance(part, ToolResultPart):
        return _tool_result(part, ctx)
    if isinstance(part, ThinkingPart):
        # Signatures never cross vendors; unsigned or foreign thinking is display-only.
        if keep_thinking and part.signature and part.signature.vendor is A:
            return {"type": "thinking", "thinking": part.text, "signature": part.signature.value}
        return None
    if isinstance(part, RedactedThinkingPart):
        if keep_thinking and part.vendor is A:
            return {"type": "redacted_thinking", "data": part.data}
        return None
    if isinstance(part, OpaquePart):
        if part.protocol is not A:
            fail(
                f"{part.protocol.value}-only content cannot be sent to an Anthropic model",
                "messages",
            )
        return part.data
    return _media(part)


def _text(part: TextPart) -> JSON:
    block: JSON = {"type": "text", "text": part.text}
    if part.cache_control:
        block["cache_control"] = part.cache_control
    return block


def _tool_result(part: ToolResultPart, ctx: TranslationContext) -> JSON:
    block: JSON = {"type": "tool_result", "tool_use_id": ctx.ids.to_upstream(part.call_id)}
    content = [
        _result_item(c) for c in part.content if not (isinstance(c, TextPart) and not c.text)
    ]
    if len(content) == 1 and content[0]["type"] == "text" and "cache_control" not in content[0]:
        block["content"] = content[0]["text"]
    elif content:
        block["content"] = content
    if part.is_error:
        block["is_error"] = True
    if part.cache_control:
        block["cache_control"] = part.cache_control
    return block


def _result_item(item: ToolResultContent) -> JSON:
    return _text(item) if isinstance(item, TextPart) else _media(item)


def _media(part: ImagePart | DocumentPart | AudioPart) -> JSON:
    if isinstance(part, AudioPart):
        fail("audio input is not supported by Anthropic models", "messages")
    if part.file_id is not None:
        fail(
            "provider file ids cannot be sent to another vendor; send the content inline",
            "messages",
        )
    if isinstance(part, ImagePart):
        return _with_cache({"type": "image", "source": _image_source(part)}, part.cache_control)
    block: JSON = {"type": "document", "source": _document_source(part)}
    if part.title:
        block["title"] = part.title
    return _with_cache(block, part.cache_control)


def _with_cache(block: JSON, cache: JSON | None) -> JSON:
    if cache:
        block["cache_control"] = cache
    return block


def _image_source(part: ImagePart) -> JSON:
    if part.data is not None:
        media_type = (part.media_type or "").lower()
        if media_type not in ANTHROPIC_IMAGE_TYPES:
            fail(
                f"Anthropic models accept jpeg, png, gif and webp images, not {media_type!r}",
                "messages",
            )
        return {"type": "base64", "media_type": media_type, "data": part.data}
    return {"type": "url", "url": part.url}


def _document_source(part: DocumentPart) -> JSON:
    if part.text is not None:
        return {"type": "text", "media_type": "text/plain", "data": part.text}
    if part.data is not None:
        media_type = (part.media_type or "application/pdf").lower()
        if media_type == "application/pdf":
            return {"type": "base64", "media_type": media_type, "data": part.data}
        if media_type.startswith("text/"):
            return {"type": "text", "media_type": "text/plain", "data": _b64_text(part.data)}
        fail(f"Anthropic documents must be PDF or plain text, not {media_type!r}", "messages")
    return {"type": "url", "url": part.url}


def _b64_text(data: str) -> str:
    try:
        return base64.b64decode(data, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        fail("a text document is not valid base64-encoded UTF-8", "messages")


def _add_system(body: JSON, req: IRRequest) -> None:
    parts = [p for p in req.system if p.text]
    if req.response_format and req.response_format.type is ResponseFormatType.JSON_OBJECT:
        # Anthropic has no JSON mode; an instruction is the documented stand-in (§6.7).
        parts.append(TextPart(JSON_OBJECT_INSTRUCTION))
    if not parts:
        return
    if len(parts) == 1 and not parts[0].cache_control:
        body["system"] = parts[0].text
    else:
        body["system"] = [_text(p) for p in parts]


def _add_tools(body: JSON, req: IRRequest, ctx: TranslationContext) -> None:
    choice = req.tool_choice
    allowed = set(choice.allowed) if choice and choice.allowed is not None else None
    tools: list[JSON] = []
    for tool in req.tools:
        if allowed is not None and tool.name not in allowed:
            continue  # an allowed-tools subset: Anthropic can only filter the list (§6.5)
        spec: JSON = {
            "name": ctx.names.to_upstream(tool.name),
            "input_schema": object_schema(tool.parameters),
        }
        if tool.description:
            spec["description"] = tool.description
        if tool.strict is not None:
            spec["strict"] = tool.strict
        if tool.cache_control:
            spec["cache_control"] = tool.cache_control
        tools.append(spec)
    for builtin in req.builtin_tools:
        if builtin.protocol is A:
            tools.append(builtin.spec)
        elif ctx.drop_builtin_tools:
            ctx.warn(f"{builtin.protocol.value} hosted tool dropped for an Anthropic model")
        else:
            fail(f"{builtin.protocol.value} hosted tools cannot run on an Anthropic model", "tools")
    if not tools:
        return
    body["tools"] = tools
    tool_choice = _tool_choice(req, ctx)
    if tool_choice is not None:
        body["tool_choice"] = tool_choice


def _tool_choice(req: IRRequest, ctx: TranslationContext) -> JSON | None:
    choice = req.tool_choice
    out: JSON | None = None
    if choice is not None:
        out = {"type": choice.mode.value}
        if choice.mode is ToolChoiceMode.TOOL:
            out["name"] = ctx.names.to_upstream(choice.name or "")
    if req.parallel_tool_calls is False:
        out = out or {"type": "auto"}
        if out["type"] != "none":
            out["disable_parallel_tool_use"] = True
    return out


def _add_sampling(body: JSON, req: IRRequest, ctx: TranslationContext, *, thinking: bool) -> None:
    params = req.params
    if params.stop:
        body["stop_sequences"] = list(params.stop)
    sampling: dict[str, Any] = {
        "temperature": None if params.temperature is None else min(params.temperature, 1.0),
        "top_p": params.top_p,
        "top_k": params.top_k,
    }
    if thinking:
        if any(v is not None for v in sampling.values()):
            ctx.warn("temperature/top_p/top_k dropped: Anthropic refuses them with thinking")
        sampling = {}
    elif sampling["temperature"] is not None and sampling["top_p"] is not None:
        # Newer Claude models refuse both together; temperature wins (§6.6).
        ctx.warn("top_p dropped: Anthropic models take temperature or top_p, not both")
        sampling["top_p"] = None
    body.update({k: v for k, v in sampling.items() if v is not None})
    for name, value in (
        ("seed", params.seed),
        ("presence_penalty", params.presence_penalty),
        ("frequency_penalty", params.frequency_penalty),
    ):
        if value is not None:
            ctx.warn(f"{name} dropped: Anthropic has no equivalent")
