"""OpenAI Chat Completions request body → IR (reference §3.1, §3.2, §6.1)."""

from __future__ import annotations

from typing import Any

from bytespike_edge.translate.context import TranslationContext
from bytespike_edge.translate.fields import (
    choice,
    expect_dict,
    expect_list,
    fail,
    opt_bool,
    opt_dict,
    opt_float,
    opt_int,
    opt_str,
    path,
    req_list,
    req_str,
    str_list,
    str_map,
)
from bytespike_edge.translate.ir import (
    JSON,
    AudioPart,
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
    ResponseFormat,
    ResponseFormatType,
    Role,
    TextPart,
    ThinkingPart,
    Tool,
    ToolCallPart,
    ToolChoice,
    ToolChoiceMode,
    ToolResultPart,
    WireProtocol,
)
from bytespike_edge.translate.media import parse_data_url
from bytespike_edge.translate.reasoning import EFFORTS
from bytespike_edge.translate.toolargs import parse_arguments

OAI = WireProtocol.OPENAI
_KNOWN = frozenset(
    {
        "model", "messages", "max_completion_tokens", "max_tokens", "temperature", "top_p", "n",
        "stop", "presence_penalty", "frequency_penalty", "seed", "logprobs", "top_logprobs",
        "response_format", "tools", "tool_choice", "parallel_tool_calls", "stream",
        "stream_options", "reasoning_effort", "user", "safety_identifier", "metadata",
    }
)  # fmt: skip


def decode_request(body: JSON) -> IRRequest:
    body = expect_dict(body, "")
    ctx = TranslationContext(client=OAI)
    system: list[TextPart] = []
    messages = _messages(req_list(body, "messages"), system)
    stream = bool(opt_bool(body, "stream"))
    options = opt_dict(body, "stream_options")
    ctx.include_usage = stream and bool(
        options and opt_bool(options, "include_usage", "stream_options")
    )
    tools, builtin = _tools(body)
    return IRRequest(
        model=req_str(body, "model"),
        messages=messages,
        ctx=ctx,
        system=system,
        tools=tools,
        builtin_tools=builtin,
        tool_choice=_tool_choice(body.get("tool_choice")),
        parallel_tool_calls=opt_bool(body, "parallel_tool_calls"),
        params=_params(body),
        response_format=_response_format(body),
        reasoning=_reasoning(body),
        stream=stream,
        user=opt_str(body, "safety_identifier") or opt_str(body, "user"),
        metadata=str_map(body, "metadata"),
        extras={k: v for k, v in body.items() if k not in _KNOWN},
    )


def _params(body: JSON) -> GenerationParams:
    max_tokens = opt_int(body, "max_completion_tokens", minimum=1)
    return GenerationParams(
        max_tokens=max_tokens if max_tokens is not None else opt_int(body, "max_tokens", minimum=1),
        temperature=opt_float(body, "temperature", low=0.0, high=2.0),
        top_p=opt_float(body, "top_p", low=0.0, high=1.0),
        stop=str_list(body, "stop", allow_single=True),
        seed=opt_int(body, "seed"),
        presence_penalty=opt_float(body, "presence_penalty", low=-2.0, high=2.0),
        frequency_penalty=opt_float(body, "frequency_penalty", low=-2.0, high=2.0),
        n=opt_int(body, "n", minimum=1),
        logprobs=opt_bool(body, "logprobs"),
        top_logprobs=opt_int(body, "top_logprobs", minimum=0),
    )


def _messages(items: list[Any], system: list[TextPart]) -> list[Message]:
    messages: list[Message] = []
    names: dict[str, str] = {}
    for i, raw_item in enumerate(items):
        where = path("messages", i)
        item = expect_dict(raw_item, where)
        role = choice(
            req_str(item, "role", where),
            ("system", "developer", "user", "assistant", "tool", "function"),
            path(where, "role"),
        )
        if role in ("system", "developer"):
            # Instructions anywhere in the list join the one system prompt (§6.1).
            system.append(TextPart(_text(item.get("content"), path(where, "content"))))
        elif role == "user":
            messages.append(
                Message(Role.USER, _user_parts(item.get("content"), path(where, "content")))
            )
        elif role == "assistant":
            messages.append(Message(Role.ASSISTANT, _assistant_parts(item, where, names)))
        elif role == "tool":
            call_id = req_str(item, "tool_call_id", where)
            text = _text(item.get("content"), path(where, "content"))
            result = ToolResultPart(
                call_id, [TextPart(text)] if text else [], name=names.get(call_id)
            )
            messages.append(Message(Role.USER, [result]))
        else:
            fail(
                f"{path(where, 'role')}: 'function' messages are deprecated; use 'tool'",
                path(where, "role"),
            )
    return messages


def _text(value: Any, where: str) -> str:
    """A string, or an array of text (or refusal) parts joined."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    texts: list[str] = []
    for i, raw_part in enumerate(expect_list(value, where)):
        at = path(where, i)
        part = expect_dict(raw_part, at)
        kind = choice(req_str(part, "type", at), ("text", "refusal"), path(at, "type"))
        texts.append(req_str(part, kind, at))
    return "".join(texts)


def _user_parts(value: Any, where: str) -> list[Part]:
    if value is None:
        fail(f"{where}: field required", where)
    if isinstance(value, str):
        return [TextPart(value)]
    return [_user_part(p, path(where, i)) for i, p in enumerate(expect_list(value, where))]


def _user_part(part: Any, where: str) -> Part:
    part = expect_dict(part, where)
    kind = req_str(part, "type", where)
    if kind == "text":
        return TextPart(req_str(part, "text", where))
    if kind == "image_url":
        image = opt_dict(part, "image_url", where)
        at = path(where, "image_url")
        if image is None:
            fail(f"{at}: field required", at)
        url, detail = req_str(image, "url", at), opt_str(image, "detail", at)
        inline = parse_data_url(url)
        if inline is not None:
            return ImagePart(media_type=inline[0], data=inline[1], detail=detail)
        return ImagePart(url=url, detail=detail)
    if kind == "input_audio":
        audio = opt_dict(part, "input_audio", where) or {}
        at = path(where, "input_audio")
        return AudioPart(data=req_str(audio, "data", at), format=req_str(audio, "format", at))
    if kind == "file":
        return _file(opt_dict(part, "file", where) or {}, path(where, "file"))
    return OpaquePart(OAI, part)


def _file(file: JSON, where: str) -> DocumentPart:
    filename = opt_str(file, "filename", where)
    file_id = opt_str(file, "file_id", where)
    data = opt_str(file, "file_data", where)
    if data is None:
        if file_id is None:
            fail(f"{where}: file_data or file_id required", where)
        return DocumentPart(file_id=file_id, filename=filename)
    inline = parse_data_url(data)
    media_type, payload = inline if inline else ("application/pdf", data)
    return DocumentPart(media_type=media_type, data=payload, filename=filename, title=filename)


def _assistant_parts(item: JSON, where: str, names: dict[str, str]) -> list[Part]:
    parts: list[Part] = []
    # `reasoning_content`/`reasoning` are compatible-server extensions (§3.3); shapes vary.
    reasoning = item.get("reasoning_content") or item.get("reasoning")
    if isinstance(reasoning, str) and reasoning:
        parts.append(ThinkingPart(reasoning))
    text = _text(item.get("content"), path(where, "content"))
    if text:
        parts.append(TextPart(text))
    refusal = opt_str(item, "refusal", where)
    if refusal:
        parts.append(TextPart(refusal))
    calls_at = path(where, "tool_calls")
    for i, raw_call in enumerate(expect_list(item.get("tool_calls") or [], calls_at)):
        at = path(calls_at, i)
        call = expect_dict(raw_call, at)
        function = opt_dict(call, "function", at)
        if function is None:
            fail(f"{at}.function: field required", f"{at}.function")
        call_id = req_str(call, "id", at)
        name = req_str(function, "name", path(at, "function"))
        arguments, raw = parse_arguments(opt_str(function, "arguments", path(at, "function")) or "")
        names[call_id] = name
        parts.append(ToolCallPart(call_id, name, arguments, raw_arguments=raw))
    return parts


def _tools(body: JSON) -> tuple[list[Tool], list[BuiltinTool]]:
    tools: list[Tool] = []
    builtin: list[BuiltinTool] = []
    for i, raw_item in enumerate(expect_list(body.get("tools") or [], "tools")):
        where = path("tools", i)
        item = expect_dict(raw_item, where)
        if opt_str(item, "type", where) not in (None, "function"):
            builtin.append(BuiltinTool(OAI, item))  # freeform `custom` tools are OpenAI-only
            continue
        function = opt_dict(item, "function", where)
        at = path(where, "function")
        if function is None:
            fail(f"{at}: field required", at)
        tools.append(
            Tool(
                name=req_str(function, "name", at),
                description=opt_str(function, "description", at),
                parameters=opt_dict(function, "parameters", at),
                strict=opt_bool(function, "strict", at),
            )
        )
    return tools, builtin


def _tool_choice(value: Any) -> ToolChoice | None:
    where = "tool_choice"
    if value is None:
        return None
    if isinstance(value, str):
        mode = choice(value, ("none", "auto", "required"), where)
        return ToolChoice(ToolChoiceMode.ANY if mode == "required" else ToolChoiceMode(mode))
    value = expect_dict(value, where)
    kind = choice(
        req_str(value, "type", where), ("function", "custom", "allowed_tools"), "tool_choice.type"
    )
    if kind in ("function", "custom"):
        target = opt_dict(value, kind, where) or {}
        return ToolChoice(ToolChoiceMode.TOOL, name=req_str(target, "name", path(where, kind)))
    allowed = opt_dict(value, "allowed_tools", where) or {}
    at = path(where, "allowed_tools")
    mode = choice(req_str(allowed, "mode", at), ("auto", "required"), path(at, "mode"))
    names: list[str] = []
    tools_at = path(at, "tools")
    for i, raw_tool in enumerate(expect_list(allowed.get("tools") or [], tools_at)):
        tool = expect_dict(raw_tool, path(tools_at, i))
        inner = expect_dict(tool.get("function") or tool.get("custom") or tool, path(tools_at, i))
        names.append(req_str(inner, "name", path(tools_at, i)))
    return ToolChoice(
        ToolChoiceMode.ANY if mode == "required" else ToolChoiceMode.AUTO, allowed=names
    )


def _response_format(body: JSON) -> ResponseFormat | None:
    value = opt_dict(body, "response_format")
    if value is None:
        return None
    where = "response_format"
    kind = choice(
        req_str(value, "type", where), ("text", "json_object", "json_schema"), f"{where}.type"
    )
    if kind != "json_schema":
        return ResponseFormat(ResponseFormatType(kind))
    spec = opt_dict(value, "json_schema", where)
    at = f"{where}.json_schema"
    if spec is None:
        fail(f"{at}: field required", at)
    return ResponseFormat(
        ResponseFormatType.JSON_SCHEMA,
        schema=opt_dict(spec, "schema", at) or {},
        name=req_str(spec, "name", at),
        description=opt_str(spec, "description", at),
        strict=opt_bool(spec, "strict", at),
    )


def _reasoning(body: JSON) -> Reasoning | None:
    effort = opt_str(body, "reasoning_effort")
    if effort is None:
        return None
    choice(effort, EFFORTS, "reasoning_effort")
    if effort == "none":
        return Reasoning(ReasoningMode.DISABLED, effort=effort)
    return Reasoning(ReasoningMode.ADAPTIVE, effort=effort)
