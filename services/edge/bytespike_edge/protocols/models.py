"""`GET /v1/models`: what this key may call, in the OpenAI list shape."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from bytespike_edge.deps import GatewayDep
from bytespike_edge.http_io import anthropic_key

router = APIRouter()


@router.get("/v1/models")
async def list_models(request: Request, gateway: GatewayDep) -> Response:
    principal = await gateway.authenticate(anthropic_key(request))
    index = gateway.index
    data: list[dict[str, Any]] = [
        {
            "id": model.id,
            "object": "model",
            "created": model.created_at.seconds,
            "owned_by": model.owned_by or "bytespike",
        }
        for model in index.table.models
        if gateway.allowed(principal, model.id)
    ]
    return Response(orjson.dumps({"object": "list", "data": data}), media_type="application/json")
