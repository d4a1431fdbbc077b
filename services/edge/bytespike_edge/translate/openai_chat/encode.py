"""IR → OpenAI Chat Completions request body, for an OpenAI upstream (reference §3, §6)."""

from __future__ import annotations

import base64
import binascii

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
    ResponseFormat,
    ResponseFormatType,
    Role,
    TextPart,
    ToolCallPart,
    ToolChoiceMode,
    ToolResultPart,
    WireProtocol,
)
from bytespike_edge.translate.media import data_url
from bytespike_edge.translate.reasoning import openai_effort
from bytespike_edge.translate.toolargs import dump_arguments

OAI = WireProtocol.OPENAI
MAX_STOP = 4


def encode_request(req: IRRequest, upstream_model: str) -> JSON:
    ctx = req.ctx
    ctx.begin(OAI, [t.name for t in req.tools])
    messages: list[JSON] = []
    system = "\n\n".join(p.text for p in req.system if p.text)
    if system:
        messages.append({"role": "system", "content": system})
    for message in req.messages:
        messages.extend(_messages(message, ctx))
    body: JSON = {"model": upstream_model, "messages": messages}
    _add_tools(body, req, ctx)
    _add_params(body, req, ctx)
    if req.stream:
        # Always ask for usage; the client encoder drops it unless the client asked (§8).
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    if req.user:
        body["user"] = req.user
    if req.metadata:
        body["metadata"] = dict(req.metadata)
    body.update(settle_extras(req, OAI))
    return body


def _messages(message: Message, ctx: TranslationContext) -> list[JSON]:
    if message.role is Role.ASSISTANT:
        assistant = _assistant(message.parts, ctx)
        # A turn that held only reasoning has nothing Chat Completions can take.
        return [assistant] if assistant["content"] is not None or "tool_calls" in assistant else []
    out: list[JSON] = []
    rest: list[Part] = []
    for part in message.parts:
        if isinstance(part, ToolResultPart):
            text, media = _tool_result(part)
            out.append(
                {"role": "tool", "tool_call_id": ctx.ids.to_upstream(part.call_id), "content": text}
            )
            if media:
                # Tool messages hold text only; images follow in a user message.
                ctx.warn("tool-result media moved into a user message for an OpenAI model")
                rest.extend(media)
        else:
            rest.append(part)
    content = [_user_part(p) for p in rest if not (isinstance(p, TextPart) and not p.text)]
    if content:
        only_text = len(content) == 1 and content[0]["type"] == "text"
        out.append({"role": "user", "content": content[0]["text"] if only_text else content})
    elif not out:
        out.append({"role": "user", "content": ""})
    return out


def _assistant(parts: list[Part], ctx: TranslationContext) -> JSON:
    texts: list[str] = []
    calls: list[JSON] = []
    for part in parts:
        if isinstance(part, TextPart):
            texts.append(part.text)
        elif isinstance(part, ToolCallPart):
            calls.append(
                {
                    "id": ctx.ids.to_upstream(part.id),
                    "type": "function",
                    "function": {
                        "name": ctx.names.to_upstream(part.name),
                        "arguments": dump_arguments(part),
                    },
                }
            )
        elif isinstance(part, OpaquePart) and part.protocol is not OAI:
            fail(
                f"{part.protocol.value}-only content cannot be sent to an OpenAI model", "messages"
            )
        # Thinking never goes back: Chat Completions takes no reasoning in history.
    out: JSON = {"role": "assistant", "content": "".join(texts) or None}
    if calls:
        out["tool_calls"] = calls
    return out


def _tool_result(part: ToolResultPart) -> tuple[str, list[Part]]:
    texts = [c.text for c in part.content if isinstance(c, TextPart)]
    media: list[Part] = [c for c in part.content if not isinstance(c, TextPart)]
    text = "\n".join(texts)
    if part.is_error:
        # Chat Completions has no error flag on tool results; say it in the content.
        text = f"Error: {text}" if text else "Error"
    return text, media


def _user_part(part: Part) -> JSON:
    if isinstance(part, TextPart):
        return {"type": "text", "text": part.text}
    if isinstance(part, ImagePart):
        if part.file_id is not None:
            fail(
                "provider file ids cannot be sent to another vendor; send the image inline",
                "messages",
            )
        url = (
            data_url(part.media_type or "image/png", part.data)
            if part.data is not None
            else part.url
        )
        image: JSON = {"url": url}
        if part.detail:
            image["detail"] = part.detail
        return {"type": "image_url", "image_url": image}
    if isinstance(part, DocumentPart):
        return _document(part)
    if isinstance(part, AudioPart):
        return {"type": "input_audio", "input_audio": {"data": part.data, "format": part.format}}
    if isinstance(part, OpaquePart) and part.protocol is OAI:
        return part.data
    kind = part.protocol.value if isinstance(part, OpaquePart) else type(part).__name__
    fail(f"{kind} content cannot be sent to an OpenAI model in a user message", "messages")


def _document(part: DocumentPart) -> JSON:
    if part.text is not None:
        return {"type": "text", "text": part.text}
    if part.file_id is not None or part.data is None:
        fail(
            "documents for OpenAI models must be inline (file ids and URLs are not portable)",
            "messages",
        )
    media_type = (part.media_type or "application/pdf").lower()
    if media_type.startswith("text/"):
        try:
            return {
                "type": "text",
                "text": base64.b64decode(part.data, validate=True).decode("utf-8"),
            }
        except (binascii.Error, UnicodeDecodeError, ValueError):
            fail("a text document is not valid base64-encoded UTF-8", "messages")
    file: JSON = {"file_data": data_url(media_type, part.data)}
    file["filename"] = part.filename or part.title or "document.pdf"
    return {"type": "file", "file": file}


def _add_tools(body: JSON, req: IRRequest, ctx: TranslationContext) -> None:
    tools: list[JSON] = []
    for tool in req.tools:
        function: JSON = {"name": ctx.names.to_upstream(tool.name)}
        if tool.description:
            function["description"] = tool.description
        if tool.parameters is not None:
            function["parameters"] = tool.parameters
        if tool.strict is not None:
            function["strict"] = tool.strict
        tools.append({"type": "function", "function": function})
    for builtin in req.builtin_tools:
        if builtin.protocol is OAI:
            tools.append(builtin.spec)
        elif ctx.drop_builtin_tools:
            ctx.warn(f"{builtin.protocol.value} hosted tool dropped for an OpenAI model")
        else:
            fail(f"{builtin.protocol.value} hosted tools cannot run on an OpenAI model", "tools")
    if not tools:
        return
    body["tools"] = tools
    choice = req.tool_choice
    if choice is not None:
        body["tool_choice"] = _tool_choice(choice.mode, choice.name, choice.allowed, ctx)
    if req.parallel_tool_calls is not None:
        body["parallel_tool_calls"] = req.parallel_tool_calls


def _tool_choice(
    mode: ToolChoiceMode, name: str | None, allowed: list[str] | None, ctx: TranslationContext
) -> JSON | str:
    if mode is ToolChoiceMode.TOOL:
        return {"type": "function", "function": {"name": ctx.names.to_upstream(name or "")}}
    if allowed is not None and mode is not ToolChoiceMode.NONE:
        tools = [
            {"type": "function", "function": {"name": ctx.names.to_upstream(n)}} for n in allowed
        ]
        return {
            "type": "allowed_tools",
            "allowed_tools": {
                "mode": "required" if mode is ToolChoiceMode.ANY else "auto",
                "tools": tools,
            },
        }
    return {"auto": "auto", "any": "required", "none": "none"}[mode.value]


def _add_params(body: JSON, req: IRRequest, ctx: TranslationContext) -> None:
    params = req.params
    if params.max_tokens is not None:
        body[ctx.openai_max_tokens_field] = params.max_tokens
    effort = openai_effort(req.reasoning) if req.reasoning else None
    if effort is not None:
        body["reasoning_effort"] = effort
        if params.temperature is not None or params.top_p is not None:
            # Reasoning models refuse non-default sampling (§9 item 10).
            ctx.warn("temperature/top_p dropped: OpenAI reasoning models refuse them")
    else:
        for key, value in (("temperature", params.temperature), ("top_p", params.top_p)):
            if value is not None:
                body[key] = value
    if params.top_k is not None:
        ctx.warn("top_k dropped: OpenAI has no equivalent")
    if params.stop:
        if len(params.stop) > MAX_STOP:
            fail(f"OpenAI models accept at most {MAX_STOP} stop sequences", "stop")
        body["stop"] = list(params.stop)
    for key, value in (
        ("n", params.n),
        ("seed", params.seed),
        ("presence_penalty", params.presence_penalty),
        ("frequency_penalty", params.frequency_penalty),
        ("logprobs", params.logprobs),
        ("top_logprobs", params.top_logprobs),
    ):
        if value is not None:
            body[key] = value
    if req.response_format is not None:
        body["response_format"] = _response_format(req.response_format)


def _response_format(fmt: ResponseFormat) -> JSON:
    if fmt.type is not ResponseFormatType.JSON_SCHEMA:
        return {"type": fmt.type.value}
    spec: JSON = {"name": fmt.name or "response", "schema": fmt.schema or {}}
    if fmt.description:
        spec["description"] = fmt.description
    if fmt.strict is not None:
        spec["strict"] = fmt.strict
    return {"type": "json_schema", "json_schema": spec}
