"""Anthropic Messages request body → IR (reference §2.1, §2.2, §2.5)."""

from __future__ import annotations

from typing import Any

from bytespike_edge.translate.context import TranslationContext, parse_signature
from bytespike_edge.translate.fields import (
    choice,
    expect_dict,
    expect_list,
    expect_str,
    fail,
    opt_bool,
    opt_dict,
    opt_float,
    opt_int,
    opt_str,
    path,
    req_int,
    req_list,
    req_str,
    str_list,
)
from bytespike_edge.translate.ir import (
    JSON,
    BuiltinTool,
    DocumentPart,
    GenerationParams,
    ImagePart,
    IRRequest,
    Message,
    OpaquePart,
    Part,
    Reasoning,
    ReasoningMode,
    RedactedThinkingPart,
    ResponseFormat,
    ResponseFormatType,
    Role,
    TextPart,
    ThinkingPart,
    Tool,
    ToolCallPart,
    ToolChoice,
    ToolChoiceMode,
    ToolResultContent,
    ToolResultPart,
    WireProtocol,
)

A = WireProtocol.ANTHROPIC
_KNOWN = frozenset(
    {
        "model", "max_tokens", "messages", "system", "stop_sequences", "stream", "temperature",
        "top_p", "top_k", "tools", "tool_choice", "thinking", "output_config", "output_format",
        "metadata",
    }
)  # fmt: skip


def decode_request(body: JSON) -> IRRequest:
    return _decode(body, count_tokens=False)


def decode_count_tokens(body: JSON) -> IRRequest:
    """A `/v1/messages/count_tokens` body (no `max_tokens`)."""
    return _decode(body, count_tokens=True)


def _decode(body: JSON, *, count_tokens: bool) -> IRRequest:
    body = expect_dict(body, "")
    ctx = TranslationContext(client=A)
    system = _system(body)
    messages = _messages(req_list(body, "messages"), system)
    tools, builtin = _tools(body)
    tool_choice, parallel = _tool_choice(body)
    metadata = opt_dict(body, "metadata")
    req = IRRequest(
        model=req_str(body, "model"),
        messages=messages,
        ctx=ctx,
        system=system,
        tools=tools,
        builtin_tools=builtin,
        tool_choice=tool_choice,
        parallel_tool_calls=parallel,
        params=GenerationParams(
            max_tokens=opt_int(body, "max_tokens", minimum=0)
            if count_tokens
            else req_int(body, "max_tokens", minimum=0),
            temperature=opt_float(body, "temperature", low=0.0, high=1.0),
            top_p=opt_float(body, "top_p", low=0.0, high=1.0),
            top_k=opt_int(body, "top_k", minimum=0),
            stop=str_list(body, "stop_sequences"),
        ),
        response_format=_response_format(body),
        reasoning=_reasoning(body),
        stream=bool(opt_bool(body, "stream")),
        user=opt_str(metadata, "user_id", "metadata") if metadata else None,
        extras={k: v for k, v in body.items() if k not in _KNOWN},
    )
    return req


def _system(body: JSON) -> list[TextPart]:
    value = body.get("system")
    if value is None:
        return []
    if isinstance(value, str):
        return [TextPart(value)] if value else []
    parts: list[TextPart] = []
    for i, raw_block in enumerate(expect_list(value, "system")):
        where = path("system", i)
        block = expect_dict(raw_block, where)
        choice(req_str(block, "type", where), ("text",), path(where, "type"))
        parts.append(
            TextPart(req_str(block, "text", where), opt_dict(block, "cache_control", where))
        )
    return parts


def _messages(items: list[Any], system: list[TextPart]) -> list[Message]:
    messages: list[Message] = []
    names: dict[str, str] = {}
    for i, raw_item in enumerate(items):
        where = path("messages", i)
        item = expect_dict(raw_item, where)
        role = choice(
            req_str(item, "role", where), ("user", "assistant", "system"), path(where, "role")
        )
        parts = _content(item.get("content"), path(where, "content"), names)
        if role == "system":
            # The 2.x SDK types a system entry inside messages; hoist it (reference §2.1).
            system.extend(p for p in parts if isinstance(p, TextPart))
            continue
        messages.append(Message(Role(role), parts))
    return messages


def _content(value: Any, where: str, names: dict[str, str]) -> list[Part]:
    if value is None:
        fail(f"{where}: field required", where)
    if isinstance(value, str):
        return [TextPart(value)]
    return [_block(b, path(where, i), names) for i, b in enumerate(expect_list(value, where))]


def _block(block: Any, where: str, names: dict[str, str]) -> Part:
    block = expect_dict(block, where)
    kind = req_str(block, "type", where)
    cache = opt_dict(block, "cache_control", where)
    if kind == "text":
        return TextPart(req_str(block, "text", where), cache)
    if kind in ("image", "document"):
        return _media(block, kind, where, cache)
    if kind == "tool_use":
        call_id, name = req_str(block, "id", where), req_str(block, "name", where)
        names[call_id] = name
        arguments = block.get("input")
        args = expect_dict(arguments, path(where, "input")) if arguments is not None else {}
        return ToolCallPart(call_id, name, args)
    if kind == "tool_result":
        call_id = req_str(block, "tool_use_id", where)
        return ToolResultPart(
            call_id,
            _result_content(block.get("content"), path(where, "content")),
            is_error=bool(opt_bool(block, "is_error", where)),
            name=names.get(call_id),
            cache_control=cache,
        )
    if kind == "thinking":
        signature = opt_str(block, "signature", where)
        return ThinkingPart(
            req_str(block, "thinking", where),
            parse_signature(signature, A) if signature else None,
        )
    if kind == "redacted_thinking":
        return RedactedThinkingPart(req_str(block, "data", where))
    return OpaquePart(A, block)


def _result_content(value: Any, where: str) -> list[ToolResultContent]:
    if value is None:
        return []
    if isinstance(value, str):
        return [TextPart(value)]
    out: list[ToolResultContent] = []
    for i, raw_item in enumerate(expect_list(value, where)):
        at = path(where, i)
        item = expect_dict(raw_item, at)
        kind = req_str(item, "type", at)
        if kind == "text":
            out.append(TextPart(req_str(item, "text", at)))
        elif kind in ("image", "document"):
            out.append(_media(item, kind, at, None))
        elif kind == "search_result":
            out.append(TextPart(_search_text(item, at)))
        else:
            fail(
                f"{path(at, 'type')}: unsupported tool_result content type {kind!r}",
                path(at, "type"),
            )
    return out


def _search_text(block: JSON, where: str) -> str:
    texts = [
        expect_str(expect_dict(c, path(where, i)).get("text", ""), path(where, i))
        for i, c in enumerate(expect_list(block.get("content") or [], path(where, "content")))
    ]
    title = opt_str(block, "title", where)
    return "\n".join([title, *texts] if title else texts)


def _media(block: JSON, kind: str, where: str, cache: JSON | None) -> ImagePart | DocumentPart:
    src_at = path(where, "source")
    source = opt_dict(block, "source", where)
    if source is None:
        fail(f"{src_at}: field required", src_at)
    stype = choice(
        req_str(source, "type", src_at),
        ("base64", "url", "file", "text", "content"),
        path(src_at, "type"),
    )
    if kind == "image":
        if stype not in ("base64", "url", "file"):
            fail(
                f"{path(src_at, 'type')}: unsupported image source {stype!r}", path(src_at, "type")
            )
        return ImagePart(
            media_type=req_str(source, "media_type", src_at) if stype == "base64" else None,
            data=req_str(source, "data", src_at) if stype == "base64" else None,
            url=req_str(source, "url", src_at) if stype == "url" else None,
            file_id=req_str(source, "file_id", src_at) if stype == "file" else None,
            cache_control=cache,
        )
    doc = DocumentPart(title=opt_str(block, "title", where), cache_control=cache)
    if stype == "base64":
        doc.media_type = req_str(source, "media_type", src_at)
        doc.data = req_str(source, "data", src_at)
    elif stype == "url":
        doc.url, doc.media_type = req_str(source, "url", src_at), "application/pdf"
    elif stype == "file":
        doc.file_id = req_str(source, "file_id", src_at)
    elif stype == "text":
        doc.text, doc.media_type = req_str(source, "data", src_at), "text/plain"
    else:
        blocks = _content(source.get("content"), path(src_at, "content"), {})
        doc.text = "\n".join(p.text for p in blocks if isinstance(p, TextPart))
        doc.media_type = "text/plain"
    return doc


def _tools(body: JSON) -> tuple[list[Tool], list[BuiltinTool]]:
    tools: list[Tool] = []
    builtin: list[BuiltinTool] = []
    for i, raw_item in enumerate(expect_list(body.get("tools") or [], "tools")):
        where = path("tools", i)
        item = expect_dict(raw_item, where)
        kind = opt_str(item, "type", where)
        if kind not in (None, "custom"):
            builtin.append(BuiltinTool(A, item))
            continue
        tools.append(
            Tool(
                name=req_str(item, "name", where),
                description=opt_str(item, "description", where),
                parameters=opt_dict(item, "input_schema", where),
                strict=opt_bool(item, "strict", where),
                cache_control=opt_dict(item, "cache_control", where),
            )
        )
    return tools, builtin


def _tool_choice(body: JSON) -> tuple[ToolChoice | None, bool | None]:
    value = opt_dict(body, "tool_choice")
    if value is None:
        return None, None
    kind = choice(
        req_str(value, "type", "tool_choice"), ("auto", "any", "tool", "none"), "tool_choice.type"
    )
    disable = opt_bool(value, "disable_parallel_tool_use", "tool_choice")
    parallel = None if disable is None else not disable
    if kind == "tool":
        return ToolChoice(ToolChoiceMode.TOOL, req_str(value, "name", "tool_choice")), parallel
    return ToolChoice(ToolChoiceMode(kind)), parallel


def _reasoning(body: JSON) -> Reasoning | None:
    config = opt_dict(body, "output_config")
    effort = opt_str(config, "effort", "output_config") if config else None
    thinking = opt_dict(body, "thinking")
    if thinking is None:
        return Reasoning(ReasoningMode.ADAPTIVE, effort=effort) if effort else None
    kind = choice(
        req_str(thinking, "type", "thinking"),
        ("enabled", "disabled", "adaptive", "between_tools"),
        "thinking.type",
    )
    if kind == "enabled":
        budget = req_int(thinking, "budget_tokens", "thinking", minimum=1)
        return Reasoning(ReasoningMode.ENABLED, budget_tokens=budget, effort=effort)
    if kind == "disabled":
        return Reasoning(ReasoningMode.DISABLED)
    return Reasoning(ReasoningMode.ADAPTIVE, effort=effort)


def _response_format(body: JSON) -> ResponseFormat | None:
    config = opt_dict(body, "output_config")
    where = "output_config.format"
    fmt = opt_dict(config, "format", "output_config") if config else None
    if fmt is None:
        # The structured-output beta put the same object at the top level.
        fmt, where = opt_dict(body, "output_format"), "output_format"
    if fmt is None:
        return None
    choice(req_str(fmt, "type", where), ("json_schema",), path(where, "type"))
    schema = opt_dict(fmt, "schema", where)
    if schema is None:
        fail(f"{where}.schema: field required", f"{where}.schema")
    return ResponseFormat(ResponseFormatType.JSON_SCHEMA, schema=schema)
