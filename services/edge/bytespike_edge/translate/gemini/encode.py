"""IR → Gemini `GenerateContentRequest`, for a Gemini upstream (reference §5.1, §6, §9).

Gemini links tool results to calls by function name, wants every response of a step in
one user content, rejects JSON-Schema keywords in `parameters`, and (Gemini 3) rejects
current-turn function calls without a thought signature unless they carry the documented
`skip_thought_signature_validator` sentinel (§6.8 rule 3).
"""

from __future__ import annotations

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
    ResponseFormatType,
    Role,
    TextPart,
    ThinkingPart,
    ToolCallPart,
    ToolChoiceMode,
    ToolResultPart,
    WireProtocol,
)
from bytespike_edge.translate.media import audio_media_type
from bytespike_edge.translate.reasoning import gemini_budget
from bytespike_edge.translate.schema import gemini_parameters
from bytespike_edge.translate.turns import current_turn_start, merge_turns

G = WireProtocol.GEMINI
SKIP_SIGNATURE = "skip_thought_signature_validator"


def encode_request(req: IRRequest, upstream_model: str) -> JSON:
    ctx = req.ctx
    ctx.begin(G, [t.name for t in req.tools])
    messages = merge_turns(req.messages)
    call_names = {p.id: p.name for m in messages for p in m.parts if isinstance(p, ToolCallPart)}
    current = current_turn_start(messages)
    contents: list[JSON] = []
    for i, message in enumerate(messages):
        parts = _parts(message, ctx, call_names, sentinel=i >= current)
        if not parts:
            continue  # e.g. a model turn that held only another vendor's thinking
        role = "model" if message.role is Role.ASSISTANT else "user"
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": parts})
    body: JSON = {"contents": contents}
    system = [{"text": p.text} for p in req.system if p.text]
    if system:
        body["systemInstruction"] = {"parts": system}
    _add_tools(body, req, ctx)
    generation = _generation_config(req, ctx)
    if generation:
        body["generationConfig"] = generation
    if req.user or req.metadata:
        ctx.warn("user/metadata dropped: Gemini has no slot for them")
    extras = settle_extras(req, G)
    if isinstance(extras.get("generationConfig"), dict):
        body.setdefault("generationConfig", {}).update(extras.pop("generationConfig"))
    body.update(extras)
    return body


def encode_count_tokens(req: IRRequest, upstream_model: str) -> JSON:
    """`:countTokens` body in the `generateContentRequest` form (reference §7.5)."""
    inner = encode_request(req, upstream_model)
    inner["model"] = f"models/{upstream_model.removeprefix('models/')}"
    return {"generateContentRequest": inner}


def _parts(
    message: Message, ctx: TranslationContext, call_names: dict[str, str], *, sentinel: bool
) -> list[JSON]:
    out: list[JSON] = []
    first_call = True
    for part in message.parts:
        if isinstance(part, ToolCallPart):
            encoded = _call(part, ctx, sentinel=sentinel and first_call)
            first_call = False
            out.append(encoded)
        elif isinstance(part, ToolResultPart):
            out.extend(_result(part, ctx, call_names))
        else:
            encoded_part = _part(part, ctx)
            if encoded_part is not None:
                out.append(encoded_part)
    return out


def _call(part: ToolCallPart, ctx: TranslationContext, *, sentinel: bool) -> JSON:
    out: JSON = {"functionCall": {"name": ctx.names.to_upstream(part.name), "args": part.arguments}}
    if part.signature is not None and part.signature.vendor is G:
        out["thoughtSignature"] = part.signature.value
    elif sentinel:
        # Only the first call of a step carries a signature (§9 item 19).
        out["thoughtSignature"] = SKIP_SIGNATURE
    return out


def _result(
    part: ToolResultPart, ctx: TranslationContext, call_names: dict[str, str]
) -> list[JSON]:
    name = part.name or call_names.get(part.call_id)
    if name is None:
        fail(f"tool result {part.call_id!r} answers no tool call in the conversation", "messages")
    text = "\n".join(c.text for c in part.content if isinstance(c, TextPart))
    # functionResponse.response must be an object: results under "output", failures
    # under "error" (§5.1, §9 item 5).
    response = {"error": text} if part.is_error else {"output": text}
    out: list[JSON] = [
        {"functionResponse": {"name": ctx.names.to_upstream(name), "response": response}}
    ]
    for item in part.content:
        if not isinstance(item, TextPart):
            media = _part(item, ctx)
            if media is not None:
                out.append(media)
    return out


def _part(part: Part, ctx: TranslationContext) -> JSON | None:
    if isinstance(part, TextPart):
        return {"text": part.text} if part.text else None
    if isinstance(part, ThinkingPart):
        # Only Gemini's own signed thoughts go back; others' reasoning is display-only.
        if part.signature is not None and part.signature.vendor is G:
            return {"text": part.text, "thought": True, "thoughtSignature": part.signature.value}
        return None
    if isinstance(part, ImagePart | DocumentPart):
        return _media(part, ctx)
    if isinstance(part, AudioPart):
        return {"inlineData": {"mimeType": audio_media_type(part.format), "data": part.data}}
    if isinstance(part, OpaquePart):
        if part.protocol is not G:
            fail(f"{part.protocol.value}-only content cannot be sent to a Gemini model", "messages")
        return part.data
    return None  # redacted thinking: Anthropic-only


def _media(part: ImagePart | DocumentPart, ctx: TranslationContext) -> JSON:
    if isinstance(part, DocumentPart) and part.text is not None:
        return {"text": part.text}
    default = "image/png" if isinstance(part, ImagePart) else "application/pdf"
    mime = part.media_type or default
    if part.data is not None:
        return {"inlineData": {"mimeType": mime, "data": part.data}}
    if part.file_id is not None:
        if ctx.client is G:
            return {"fileData": {"mimeType": mime, "fileUri": part.file_id}}
        fail(
            "provider file ids cannot be sent to another vendor; send the content inline",
            "messages",
        )
    if not ctx.gemini_media_urls:
        fail("this Gemini route takes media inline; the URL must be fetched first", "messages")
    return {"fileData": {"mimeType": mime, "fileUri": part.url}}


def _add_tools(body: JSON, req: IRRequest, ctx: TranslationContext) -> None:
    choice = req.tool_choice
    allowed = set(choice.allowed) if choice and choice.allowed is not None else None
    declarations: list[JSON] = []
    for tool in req.tools:
        filtered = choice is not None and choice.mode is ToolChoiceMode.AUTO
        if filtered and allowed is not None and tool.name not in allowed:
            continue  # allowedFunctionNames only applies with ANY: filter instead (§6.5)
        decl: JSON = {"name": ctx.names.to_upstream(tool.name)}
        if tool.description:
            decl["description"] = tool.description
        if ctx.gemini_json_schema:
            if tool.parameters:
                decl["parametersJsonSchema"] = tool.parameters
        else:
            parameters = gemini_parameters(tool.parameters)
            if parameters is not None:
                decl["parameters"] = parameters
        declarations.append(decl)
    tools: list[JSON] = [{"functionDeclarations": declarations}] if declarations else []
    for builtin in req.builtin_tools:
        if builtin.protocol is G:
            tools.append(builtin.spec)
        elif ctx.drop_builtin_tools:
            ctx.warn(f"{builtin.protocol.value} hosted tool dropped for a Gemini model")
        else:
            fail(f"{builtin.protocol.value} hosted tools cannot run on a Gemini model", "tools")
    if tools:
        body["tools"] = tools
    if declarations and choice is not None:
        body["toolConfig"] = {
            "functionCallingConfig": _calling_config(choice.mode, choice.name, choice.allowed, ctx)
        }
    if req.parallel_tool_calls is False:
        ctx.warn("parallel_tool_calls=false dropped: Gemini has no equivalent")


def _calling_config(
    mode: ToolChoiceMode, name: str | None, allowed: list[str] | None, ctx: TranslationContext
) -> JSON:
    if mode is ToolChoiceMode.TOOL:
        return {"mode": "ANY", "allowedFunctionNames": [ctx.names.to_upstream(name or "")]}
    if mode is ToolChoiceMode.ANY:
        config: JSON = {"mode": "ANY"}
        if allowed is not None:
            config["allowedFunctionNames"] = [ctx.names.to_upstream(n) for n in allowed]
        return config
    return {"mode": mode.value.upper()}


def _generation_config(req: IRRequest, ctx: TranslationContext) -> JSON:
    params = req.params
    config: JSON = {}
    for key, value in (
        ("maxOutputTokens", params.max_tokens),
        ("temperature", params.temperature),
        ("topP", params.top_p),
        ("topK", params.top_k),
        ("candidateCount", params.n),
        ("presencePenalty", params.presence_penalty),
        ("frequencyPenalty", params.frequency_penalty),
        ("seed", params.seed),
        ("responseLogprobs", params.logprobs),
        ("logprobs", params.top_logprobs),
    ):
        if value is not None:
            config[key] = value
    if params.stop:
        config["stopSequences"] = list(params.stop)
    fmt = req.response_format
    if fmt is not None and fmt.type is not ResponseFormatType.TEXT:
        config["responseMimeType"] = "application/json"
        if fmt.type is ResponseFormatType.JSON_SCHEMA:
            config["responseJsonSchema"] = fmt.schema or {}
    if req.reasoning is not None:
        thinking: JSON = {"thinkingBudget": gemini_budget(req.reasoning)}
        if thinking["thinkingBudget"] != 0 and (
            ctx.client is WireProtocol.ANTHROPIC or ctx.include_thoughts
        ):
            thinking["includeThoughts"] = True
        config["thinkingConfig"] = thinking
    return config
