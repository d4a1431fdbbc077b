"""Anthropic Messages: `POST /v1/messages` and `/v1/messages/count_tokens` (reference §2).

Claude Code calls both with `?beta=true`; unknown query parameters are ignored. The key
comes as `x-api-key` or, from the newest SDK and Claude Code's token mode, as Bearer.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from bytespike_common.errors import InvalidRequest
from bytespike_edge.counting import count_tokens
from bytespike_edge.deps import GatewayDep, mint_request_id
from bytespike_edge.exchange import ClientRequest, serve_generation
from bytespike_edge.gateway import Gateway
from bytespike_edge.http_io import anthropic_key, header_values, read_json_object
from bytespike_edge.translate.ir import WireProtocol

router = APIRouter()

# Betas forwarded to an Anthropic upstream; unknown betas make the API answer 400.
ALLOWED_BETAS = frozenset(
    {
        "prompt-caching-2024-07-31",
        "interleaved-thinking-2025-05-14",
        "fine-grained-tool-streaming-2025-05-14",
        "token-efficient-tools-2025-02-19",
        "output-128k-2025-02-19",
        "context-1m-2025-08-07",
        "context-management-2025-06-27",
        "files-api-2025-04-14",
        "pdfs-2024-09-25",
        "structured-outputs-2025-11-13",
        "effort-2025-11-24",
    }
)


def _forward_headers(request: Request) -> dict[str, str]:
    requested = ",".join(header_values(request, b"anthropic-beta"))
    betas = [b.strip() for b in requested.split(",") if b.strip() in ALLOWED_BETAS]
    return {"anthropic-beta": ",".join(betas)} if betas else {}


def _validate(data: dict[str, Any]) -> tuple[str, bool, int]:
    model = data.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("model: Field required", param="model")
    if not isinstance(data.get("messages"), list):
        raise InvalidRequest("messages: Field required", param="messages")
    max_tokens = data.get("max_tokens")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 0:
        raise InvalidRequest(
            "max_tokens: Field required (a non-negative integer)", param="max_tokens"
        )
    stream = data.get("stream", False)
    if not isinstance(stream, bool):
        raise InvalidRequest("stream: Input should be a valid boolean", param="stream")
    return model, stream, max_tokens


async def serve_messages(request: Request, gateway: Gateway, request_id: str) -> Response:
    raw, data = await read_json_object(request, gateway.settings.max_body_bytes)
    key = anthropic_key(request)
    principal = await gateway.authenticate(key)
    model, stream, max_tokens = _validate(data)
    client = ClientRequest(
        protocol=WireProtocol.ANTHROPIC,
        request_id=request_id,
        raw=raw,
        body=data,
        model=model,
        stream=stream,
        max_output_tokens=max_tokens,
        forward_headers=_forward_headers(request),
    )
    return await serve_generation(gateway, client, principal)


async def serve_count_tokens(request: Request, gateway: Gateway, request_id: str) -> Response:
    _, data = await read_json_object(request, gateway.settings.max_body_bytes)
    key = anthropic_key(request)
    principal = await gateway.authenticate(key)
    model = data.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("model: Field required", param="model")
    return await count_tokens(gateway, WireProtocol.ANTHROPIC, data, model, principal)


# Served by the fast lane (`bytespike_edge.fastlane`); the routes keep the API's schema
# and FastAPI's answers (405, redirects) for what the lane does not take.
@router.post("/v1/messages")
async def messages(request: Request, gateway: GatewayDep) -> Response:
    return await serve_messages(request, gateway, mint_request_id(request))


@router.post("/v1/messages/count_tokens")
async def messages_count_tokens(request: Request, gateway: GatewayDep) -> Response:
    return await serve_count_tokens(request, gateway, mint_request_id(request))
