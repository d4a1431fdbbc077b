"""Gemini native: `POST /v1beta/models/{model}:{method}` (reference §0, §5).

The method sits after a colon inside the last path segment, so the segment is parsed here:
`generateContent`, `streamGenerateContent` (`?alt=sse` for SSE; without it the answer is one
JSON array streamed incrementally) and `countTokens`. `/v1/` works like `/v1beta/`, and the
model may carry a `models/` prefix. The key comes as `x-goog-api-key`, `?key=` (never logged
or forwarded) or Bearer.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from bytespike_common.errors import InvalidRequest, NotFound
from bytespike_edge.counting import count_tokens
from bytespike_edge.deps import GatewayDep, mint_request_id
from bytespike_edge.exchange import ClientRequest, serve_generation
from bytespike_edge.gateway import Gateway
from bytespike_edge.http_io import gemini_key, read_json_object
from bytespike_edge.translate.ir import WireProtocol

router = APIRouter()
METHODS = ("generateContent", "streamGenerateContent", "countTokens")


def _max_output(data: dict[str, Any]) -> int:
    config = data.get("generationConfig") or data.get("generation_config") or {}
    value = (
        config.get("maxOutputTokens", config.get("max_output_tokens"))
        if isinstance(config, dict)
        else None
    )
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


async def serve_model_method(request: Request, gateway: Gateway, request_id: str) -> Response:
    """`models/{target}`, where the target is `<model>:<method>` (`path_params["target"]`)."""
    target: str = request.path_params["target"]
    model, _, method = target.removeprefix("models/").rpartition(":")
    if method not in METHODS or not model:
        raise NotFound(f"Method '{method or target}' is not found for models.")
    raw, data = await read_json_object(request, gateway.settings.max_body_bytes)
    key = gemini_key(request)
    principal = await gateway.authenticate(key)
    if method == "countTokens":
        return await count_tokens(gateway, WireProtocol.GEMINI, data, model, principal)
    if not isinstance(data.get("contents"), list):
        raise InvalidRequest("contents: a non-empty list of Content is required.", param="contents")
    stream = method == "streamGenerateContent"
    client = ClientRequest(
        protocol=WireProtocol.GEMINI,
        request_id=request_id,
        raw=raw,
        body=data,
        model=model,
        stream=stream,
        max_output_tokens=_max_output(data),
        forward_headers={},
        json_array_stream=stream and request.query_params.get("alt") != "sse",
    )
    return await serve_generation(gateway, client, principal)


# Served by the fast lane (`bytespike_edge.fastlane`); the routes keep the API's schema
# and FastAPI's answers (405, redirects) for what the lane does not take.
@router.post("/v1beta/models/{target:path}")
async def gemini_v1beta(target: str, request: Request, gateway: GatewayDep) -> Response:
    return await serve_model_method(request, gateway, mint_request_id(request))


@router.post("/v1/models/{target:path}")
async def gemini_v1(target: str, request: Request, gateway: GatewayDep) -> Response:
    return await serve_model_method(request, gateway, mint_request_id(request))
