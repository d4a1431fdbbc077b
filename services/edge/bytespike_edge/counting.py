"""Token counting (`/v1/messages/count_tokens`, Gemini `:countTokens`).

Counted natively by the first usable deployment whose vendor can count (Anthropic's
count_tokens, Gemini's countTokens); otherwise — an OpenAI-protocol deployment, or the
vendor failing — a labelled estimate: the answer carries `"estimated": true` and the
`x-bytespike-token-count: estimated` header. Claude Code's context meter only needs an
approximation, and an estimate beats a 5xx. Counting is not metered.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from starlette.responses import Response

from bytespike.auth.v1 import auth_pb2
from bytespike_edge.exchange import protocol_of
from bytespike_edge.gateway import Gateway, Target
from bytespike_edge.translate.ir import (
    DocumentPart,
    ImagePart,
    IRRequest,
    TextPart,
    ThinkingPart,
    ToolCallPart,
    ToolResultPart,
    WireProtocol,
)
from bytespike_edge.translate.registry import codec_for
from bytespike_edge.upstream.client import Timeouts
from bytespike_edge.upstream.wire import COUNT_TOKENS_PATH, gemini_path, request_headers

log = logging.getLogger(__name__)
# Fields of a Messages request that count_tokens refuses.
_NOT_COUNTED = (
    "max_tokens",
    "stream",
    "temperature",
    "top_p",
    "top_k",
    "stop_sequences",
    "metadata",
    "service_tier",
)
IMAGE_TOKENS = 1_600  # Anthropic's estimate for a ~1 megapixel image


def estimate_tokens(req: IRRequest) -> int:
    """About four characters a token, plus a little per message and a flat rate per image."""
    chars = sum(len(part.text) for part in req.system)
    tokens = 0
    for message in req.messages:
        tokens += 4
        for part in message.parts:
            if isinstance(part, (TextPart, ThinkingPart)):
                chars += len(part.text)
            elif isinstance(part, ToolCallPart):
                chars += len(part.name) + len(orjson.dumps(part.arguments))
            elif isinstance(part, ToolResultPart):
                chars += len(orjson.dumps(part.content, default=repr))
            elif isinstance(part, (ImagePart, DocumentPart)):
                tokens += IMAGE_TOKENS
    for tool in req.tools:
        chars += len(tool.name) + len(tool.description or "") + len(orjson.dumps(tool.parameters))
    return tokens + chars // 4 + 1


async def _native(
    gateway: Gateway, target: Target, client: WireProtocol, body: dict[str, Any], req: IRRequest
) -> int | None:
    upstream = protocol_of(target)
    model = target.deployment.upstream_model
    if upstream == WireProtocol.ANTHROPIC:
        if client == WireProtocol.ANTHROPIC:
            payload = codec_for(client).rewrite_model(body, model)
        else:
            payload = codec_for(upstream).encode_request(req, model)
        payload = {k: v for k, v in payload.items() if k not in _NOT_COUNTED}
        url, field = target.provider.base_url + COUNT_TOKENS_PATH, "input_tokens"
    elif upstream == WireProtocol.GEMINI:
        inner = codec_for(upstream).encode_request(req, model)
        payload = {"generateContentRequest": {**inner, "model": f"models/{model}"}}
        url = target.provider.base_url + gemini_path(model, "countTokens")
        field = "totalTokens"
    else:
        return None
    headers = request_headers(target.provider, target.credential)
    timeouts = Timeouts(connect=target.timeouts.connect, first_byte=30.0, total=None)
    response = await gateway.upstream.send(url, headers, orjson.dumps(payload), timeouts)
    try:
        content = await response.aread()
    finally:
        await response.aclose()
    if response.status_code != 200:
        log.warning("token count at %s failed: HTTP %d", target.provider.id, response.status_code)
        return None
    value = orjson.loads(content).get(field)
    return value if isinstance(value, int) else None


async def count_tokens(
    gateway: Gateway,
    client: WireProtocol,
    body: dict[str, Any],
    model_name: str,
    principal: auth_pb2.Principal,
) -> Response:
    model = gateway.resolve_model(model_name, principal)
    targets = gateway.targets(model)
    req = codec_for(client).decode_count_tokens(body)
    req.model = model_name
    count: int | None = None
    for target in targets:
        try:
            count = await _native(gateway, target, client, body, req)
        except Exception as exc:
            log.warning("token count at %s failed: %r", target.provider.id, exc)
        if count is not None:
            break
    estimated = count is None
    if count is None:
        count = estimate_tokens(req)
    answer: dict[str, Any] = (
        {"input_tokens": count} if client == WireProtocol.ANTHROPIC else {"totalTokens": count}
    )
    headers = {}
    if estimated:
        answer["estimated"] = True
        headers["x-bytespike-token-count"] = "estimated"
    return Response(orjson.dumps(answer), 200, headers, media_type="application/json")
