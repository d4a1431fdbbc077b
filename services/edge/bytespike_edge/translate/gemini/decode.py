"""Gemini `GenerateContentRequest` / `countTokens` body → IR (reference §5.1, §5.4).

Google's JSON mapping accepts lowerCamelCase and snake_case; both are read. The model and
the stream flag live in the URL, so the caller sets `req.model` and `req.stream`.
Function calls without an id get deterministic ones, and id-less function responses are
paired with the calls of the preceding model turn by name, in order.
"""

from __future__ import annotations

from typing import Any

import orjson

from bytespike_edge.translate.context import TranslationContext, parse_signature
from bytespike_edge.translate.fields import (
    Key,
    choice,
    expect_dict,
    expect_list,
    fail,
    opt_bool,
    opt_dict,
    opt_float,
    opt_int,
    opt_list,
    opt_str,
    path,
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
from bytespike_edge.translate.media import inline_part
from bytespike_edge.translate.reasoning import from_gemini as reasoning_from_gemini
from bytespike_edge.translate.schema import from_gemini

G = WireProtocol.GEMINI
_KNOWN = frozenset(
    {
        "contents", "model", "systemInstruction", "system_instruction", "tools", "toolConfig",
        "tool_config", "generationConfig", "generation_config",
    }
)  # fmt: skip
_GEN_KNOWN = frozenset(
    {
        "temperature", "topP", "top_p", "topK", "top_k", "candidateCount", "candidate_count",
        "maxOutputTokens", "max_output_tokens", "stopSequences", "stop_sequences",
        "presencePenalty", "presence_penalty", "frequencyPenalty", "frequency_penalty", "seed",
        "responseLogprobs", "response_logprobs", "logprobs", "responseMimeType",
        "response_mime_type", "responseSchema", "response_schema", "responseJsonSchema",
        "response_json_schema", "thinkingConfig", "thinking_config",
    }
)  # fmt: skip


def decode_request(body: JSON) -> IRRequest:
    body = expect_dict(body, "")
    ctx = TranslationContext(client=G)
    model = opt_str(body, "model") or ""
    gen = opt_dict(body, ("generationConfig", "generation_config")) or {}
    gen_at = "generationConfig"
    tools, builtin = _tools(opt_list(body, "tools") or [])
    thinking = opt_dict(gen, ("thinkingConfig", "thinking_config"), gen_at) or {}
    think_at = path(gen_at, "thinkingConfig")
    ctx.include_thoughts = bool(
        opt_bool(thinking, ("includeThoughts", "include_thoughts"), think_at)
    )
    req = IRRequest(
        model=model.removeprefix("models/"),
        messages=_contents(req_list(body, "contents")),
        ctx=ctx,
        system=_system(opt_dict(body, ("systemInstruction", "system_instruction"))),
        tools=tools,
        builtin_tools=builtin,
        tool_choice=_tool_choice(opt_dict(body, ("toolConfig", "tool_config"))),
        params=_params(gen, gen_at),
        response_format=_response_format(gen, gen_at),
        reasoning=reasoning_from_gemini(
            opt_int(thinking, ("thinkingBudget", "thinking_budget"), think_at),
            opt_str(thinking, ("thinkingLevel", "thinking_level"), think_at),
        ),
        extras={k: v for k, v in body.items() if k not in _KNOWN},
    )
    extra_gen = {k: v for k, v in gen.items() if k not in _GEN_KNOWN}
    if extra_gen:
        req.extras["generationConfig"] = extra_gen
    return req


def _params(gen: JSON, gen_at: str) -> GenerationParams:
    return GenerationParams(
        max_tokens=opt_int(gen, ("maxOutputTokens", "max_output_tokens"), gen_at, minimum=1),
        temperature=opt_float(gen, "temperature", gen_at, low=0.0, high=2.0),
        top_p=opt_float(gen, ("topP", "top_p"), gen_at, low=0.0, high=1.0),
        top_k=opt_int(gen, ("topK", "top_k"), gen_at, minimum=0),
        stop=str_list(gen, ("stopSequences", "stop_sequences"), gen_at),
        seed=opt_int(gen, "seed", gen_at),
        presence_penalty=opt_float(gen, ("presencePenalty", "presence_penalty"), gen_at),
        frequency_penalty=opt_float(gen, ("frequencyPenalty", "frequency_penalty"), gen_at),
        n=opt_int(gen, ("candidateCount", "candidate_count"), gen_at, minimum=1),
        logprobs=opt_bool(gen, ("responseLogprobs", "response_logprobs"), gen_at),
        top_logprobs=opt_int(gen, "logprobs", gen_at, minimum=0),
    )


def decode_count_tokens(body: JSON) -> IRRequest:
    """`:countTokens` takes `{contents}` or `{generateContentRequest}` (mutually exclusive)."""
    body = expect_dict(body, "")
    inner = opt_dict(body, ("generateContentRequest", "generate_content_request"))
    if inner is not None:
        if body.get("contents") is not None:
            fail("contents and generateContentRequest are mutually exclusive", "contents")
        return decode_request(inner)
    return decode_request({"contents": body.get("contents")})


def _system(content: JSON | None) -> list[TextPart]:
    if content is None:
        return []
    parts = expect_list(content.get("parts") or [], "systemInstruction.parts")
    out: list[TextPart] = []
    for i, raw in enumerate(parts):
        part = expect_dict(raw, path("systemInstruction.parts", i))
        text = opt_str(part, "text", path("systemInstruction.parts", i))
        if text:
            out.append(TextPart(text))
    return out


class _Pairing:
    """Ids for id-less calls, and the matching of id-less responses to them by name."""

    def __init__(self) -> None:
        self.count = 0
        self.open: list[tuple[str, str]] = []  # (id, name) of the last model turn's calls

    def call_id(self, given: str | None, name: str) -> str:
        self.count += 1
        call_id = given or f"call_{self.count}"
        self.open.append((call_id, name))
        return call_id

    def response_id(self, given: str | None, name: str) -> str:
        for i, (call_id, call_name) in enumerate(self.open):
            if (given and call_id == given) or (not given and call_name == name):
                del self.open[i]
                return call_id
        self.count += 1
        return given or f"call_{self.count}"


def _contents(items: list[Any]) -> list[Message]:
    pairing = _Pairing()
    messages: list[Message] = []
    for i, raw in enumerate(items):
        where = path("contents", i)
        content = expect_dict(raw, where)
        role = choice(
            opt_str(content, "role", where) or "user",
            ("user", "model", "function"),
            path(where, "role"),
        )
        if role == "model":
            pairing.open = []
        parts_at = path(where, "parts")
        parts = [
            _part(expect_dict(p, path(parts_at, k)), path(parts_at, k), pairing)
            for k, p in enumerate(expect_list(content.get("parts") or [], parts_at))
        ]
        messages.append(Message(Role.ASSISTANT if role == "model" else Role.USER, parts))
    return messages


def _part(part: JSON, where: str, pairing: _Pairing) -> Part:
    raw_signature = opt_str(part, ("thoughtSignature", "thought_signature"), where)
    signature = parse_signature(raw_signature, G) if raw_signature else None
    text = opt_str(part, "text", where)
    if text is not None:
        if opt_bool(part, "thought", where):
            return ThinkingPart(text, signature)
        return TextPart(text)
    blob = opt_dict(part, ("inlineData", "inline_data"), where)
    if blob is not None:
        at = path(where, "inlineData")
        return inline_part(req_str(blob, ("mimeType", "mime_type"), at), req_str(blob, "data", at))
    file = opt_dict(part, ("fileData", "file_data"), where)
    if file is not None:
        return _file(file, path(where, "fileData"))
    call = opt_dict(part, ("functionCall", "function_call"), where)
    if call is not None:
        at = path(where, "functionCall")
        name = req_str(call, "name", at)
        call_id = pairing.call_id(opt_str(call, "id", at), name)
        return ToolCallPart(call_id, name, opt_dict(call, "args", at) or {}, signature=signature)
    response = opt_dict(part, ("functionResponse", "function_response"), where)
    if response is not None:
        return _function_response(response, path(where, "functionResponse"), pairing)
    return OpaquePart(G, part)


def _file(file: JSON, where: str) -> ImagePart | DocumentPart:
    uri = req_str(file, ("fileUri", "file_uri"), where)
    mime = (opt_str(file, ("mimeType", "mime_type"), where) or "").lower()
    is_url = uri.startswith(("https://", "http://"))
    if mime.startswith("image/"):
        return (
            ImagePart(media_type=mime, url=uri)
            if is_url
            else ImagePart(media_type=mime, file_id=uri)
        )
    if is_url:
        return DocumentPart(media_type=mime or None, url=uri)
    return DocumentPart(media_type=mime or None, file_id=uri)


def _function_response(response: JSON, where: str, pairing: _Pairing) -> ToolResultPart:
    name = req_str(response, "name", where)
    call_id = pairing.response_id(opt_str(response, "id", where), name)
    payload = opt_dict(response, "response", where) or {}
    # {"output": ...} for results, {"error": ...} for failures, else the whole object (§5.1).
    is_error = "error" in payload and "output" not in payload
    value = payload["error"] if is_error else payload.get("output", payload)
    content: list[ToolResultContent] = []
    text = (
        value
        if isinstance(value, str)
        else ""
        if value in ({}, None)
        else orjson.dumps(value).decode()
    )
    if text:
        content.append(TextPart(text))
    parts_at = path(where, "parts")
    for k, raw in enumerate(opt_list(response, "parts", where) or []):
        blob = opt_dict(
            expect_dict(raw, path(parts_at, k)), ("inlineData", "inline_data"), path(parts_at, k)
        )
        if blob is not None:
            media = inline_part(
                req_str(blob, ("mimeType", "mime_type"), parts_at), req_str(blob, "data", parts_at)
            )
            if isinstance(media, ImagePart | DocumentPart):
                content.append(media)
    return ToolResultPart(call_id, content, is_error=is_error, name=name)


def _tools(items: list[Any]) -> tuple[list[Tool], list[BuiltinTool]]:
    tools: list[Tool] = []
    builtin: list[BuiltinTool] = []
    for i, raw in enumerate(items):
        where = path("tools", i)
        tool = expect_dict(raw, where)
        declarations = opt_list(tool, ("functionDeclarations", "function_declarations"), where)
        for k, raw_decl in enumerate(declarations or []):
            at = path(path(where, "functionDeclarations"), k)
            decl = expect_dict(raw_decl, at)
            tools.append(_declaration(decl, at))
        rest = {
            k: v
            for k, v in tool.items()
            if k not in ("functionDeclarations", "function_declarations")
        }
        if rest:
            builtin.append(BuiltinTool(G, rest))
    return tools, builtin


def _declaration(decl: JSON, where: str) -> Tool:
    schema = opt_dict(decl, ("parametersJsonSchema", "parameters_json_schema"), where)
    if schema is None:
        legacy = opt_dict(decl, "parameters", where)
        schema = from_gemini(legacy) if legacy is not None else None
    return Tool(
        name=req_str(decl, "name", where),
        description=opt_str(decl, "description", where),
        parameters=schema,
    )


def _tool_choice(config: JSON | None) -> ToolChoice | None:
    if config is None:
        return None
    calling = opt_dict(config, ("functionCallingConfig", "function_calling_config"), "toolConfig")
    if calling is None:
        return None
    at = "toolConfig.functionCallingConfig"
    mode = choice(
        opt_str(calling, "mode", at) or "AUTO",
        ("MODE_UNSPECIFIED", "AUTO", "ANY", "NONE", "VALIDATED"),
        f"{at}.mode",
    )
    names = str_list(calling, ("allowedFunctionNames", "allowed_function_names"), at) or None
    if mode == "ANY":
        if names is not None and len(names) == 1:
            return ToolChoice(ToolChoiceMode.TOOL, name=names[0])
        return ToolChoice(ToolChoiceMode.ANY, allowed=names)
    if mode == "NONE":
        return ToolChoice(ToolChoiceMode.NONE)
    # VALIDATED (schema-checked calls, model decides) is closest to auto elsewhere.
    return ToolChoice(ToolChoiceMode.AUTO, allowed=names)


def _response_format(gen: JSON, where: str) -> ResponseFormat | None:
    mime = opt_str(gen, ("responseMimeType", "response_mime_type"), where)
    json_schema = opt_dict(gen, ("responseJsonSchema", "response_json_schema"), where)
    legacy: Key = ("responseSchema", "response_schema")
    schema = json_schema if json_schema is not None else None
    if schema is None and opt_dict(gen, legacy, where) is not None:
        schema = from_gemini(opt_dict(gen, legacy, where))
    if mime in (None, "text/plain") and schema is None:
        return None
    if schema is not None:
        return ResponseFormat(ResponseFormatType.JSON_SCHEMA, schema=schema, name="response")
    if mime == "application/json":
        return ResponseFormat(ResponseFormatType.JSON_OBJECT)
    fail(f"{where}.responseMimeType: {mime!r} needs a response schema", f"{where}.responseMimeType")
