"""OpenAI Chat Completions: `POST /v1/chat/completions` (reference/protocols.md §3)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from bytespike_common.errors import InvalidRequest
from bytespike_edge.deps import GatewayDep, mint_request_id
from bytespike_edge.exchange import ClientRequest, serve_generation
from bytespike_edge.gateway import Gateway
from bytespike_edge.http_io import bearer_token, read_json_object
from bytespike_edge.translate.ir import WireProtocol

router = APIRouter()


def _max_output(data: dict[str, Any]) -> int:
    for name in ("max_completion_tokens", "max_tokens"):
        value = data.get(name)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise InvalidRequest(f"'{name}' must be a non-negative integer.", param=name)
        return value
    return 0


def _validate(data: dict[str, Any]) -> tuple[str, bool]:
    model = data.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("'model' is required and must be a string.", param="model")
    messages = data.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("'messages' must be a non-empty array.", param="messages")
    stream = data.get("stream", False)
    if not isinstance(stream, bool):
        raise InvalidRequest("'stream' must be a boolean.", param="stream")
    return model, stream


async def serve_chat_completions(request: Request, gateway: Gateway, request_id: str) -> Response:
    raw, data = await read_json_object(request, gateway.settings.max_body_bytes)
    key = bearer_token(request)
    principal = await gateway.authenticate(key)
    model, stream = _validate(data)
    client = ClientRequest(
        protocol=WireProtocol.OPENAI,
        request_id=request_id,
        raw=raw,
        body=data,
        model=model,
        stream=stream,
        max_output_tokens=_max_output(data),
        forward_headers={},
    )
    return await serve_generation(gateway, client, principal)


# Served by the fast lane (`bytespike_edge.fastlane`); the route keeps the API's schema
# and FastAPI's answers (405, redirects) for what the lane does not take.
@router.post("/v1/chat/completions")
async def chat_completions(request: Request, gateway: GatewayDep) -> Response:
    return await serve_chat_completions(request, gateway, mint_request_id(request))
