"""Model discovery: what this key may call, in the caller's protocol (reference §2.6, §3.5,
§5.5, §7.4).

    GET /v1/models, /v1/models/{id}         OpenAI shape; Anthropic shape when the request
                                            carries `anthropic-version` or `x-api-key`;
                                            Gemini shape with `x-goog-api-key` or `?key=`
                                            (google-genai 3.x defaults to API version v1)
    GET /v1beta/models, /v1beta/models/{m}  Gemini shape

Each list is exactly the key's effective set (group ∩ account cap ∩ key allow-list). A
model that exists but is not allowed answers 403, an unknown one 404, in the caller's error
body. Models whose provider has no credential in this deployment are listed with
`"available": false` (an extra field every SDK ignores; Gemini clients, whose SDK drops
unknown fields, also read it in `description`); calling them answers 503.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from bytespike.auth.v1 import auth_pb2
from bytespike.router.v1 import router_pb2
from bytespike_common.errors import GatewayError, InvalidRequest
from bytespike_common.ids import request_id as new_request_id
from bytespike_common.routing import RouteIndex
from bytespike_edge.deps import GatewayDep
from bytespike_edge.gateway import Gateway
from bytespike_edge.http_io import anthropic_key, bearer_token, gemini_key
from bytespike_edge.protocols.errors import render

router = APIRouter()

GEMINI_METHODS = ["generateContent", "streamGenerateContent", "countTokens"]
ANTHROPIC_PAGE = (20, 1000)  # default, maximum (reference §2.6)
GEMINI_PAGE = (50, 1000)  # default, maximum (reference §5.5)
UNAVAILABLE_NOTE = "Unavailable: its provider has no credential in this gateway."


@dataclass(frozen=True, slots=True)
class Listed:
    model: router_pb2.Model
    available: bool


def model_available(
    index: RouteIndex,
    model: router_pb2.Model,
    provider_available: Callable[[router_pb2.Provider], bool],
) -> bool:
    """True when at least one deployment's provider has its credential here."""
    return any(
        d.provider_id in index.providers and provider_available(index.providers[d.provider_id])
        for d in model.deployments
    )


def _available(gateway: Gateway, model: router_pb2.Model) -> bool:
    return model_available(gateway.index, model, gateway.provider_available)


def visible(gateway: Gateway, principal: auth_pb2.Principal) -> list[Listed]:
    """The key's effective models, in catalog order."""
    return [
        Listed(model, _available(gateway, model))
        for model in gateway.index.table.models
        if gateway.allowed(principal, model.id)
    ]


def _rfc3339(stamp: Any) -> str:
    moment = dt.datetime.fromtimestamp(stamp.seconds, dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _thinks(model: router_pb2.Model) -> bool:
    return bool({"thinking", "reasoning"} & set(model.capabilities))


def openai_model(item: Listed) -> dict[str, Any]:
    model = item.model
    return {
        "id": model.id,
        "object": "model",
        "created": model.created_at.seconds,
        "owned_by": model.owned_by or "bytespike",
        "available": item.available,
    }


def anthropic_model(item: Listed) -> dict[str, Any]:
    model = item.model
    return {
        "type": "model",
        "id": model.id,
        "display_name": model.display_name or model.id,
        "created_at": _rfc3339(model.created_at),
        "max_input_tokens": model.context_window,
        "max_tokens": model.max_output_tokens,
        "available": item.available,
    }


def gemini_model(item: Listed) -> dict[str, Any]:
    model = item.model
    display = model.display_name or model.id
    description = f"{display}, served by ByteSpike Gateway."
    if not item.available:
        description = f"{description} {UNAVAILABLE_NOTE}"
    return {
        "name": f"models/{model.id}",
        "baseModelId": model.id,
        "displayName": display,
        "description": description,
        "inputTokenLimit": model.context_window,
        "outputTokenLimit": model.max_output_tokens,
        "supportedGenerationMethods": GEMINI_METHODS,
        "thinking": _thinks(model),
        "available": item.available,
    }


# -- pagination --------------------------------------------------------------------------


def _int_param(request: Request, names: Sequence[str], default: int) -> int:
    for name in names:
        raw = request.query_params.get(name)
        if raw is not None:
            try:
                return int(raw)
            except ValueError:
                raise InvalidRequest(f"'{name}' must be an integer.", param=name) from None
    return default


def _position(items: list[Listed], model_id: str, param: str) -> int:
    for number, item in enumerate(items):
        if item.model.id == model_id:
            return number
    raise InvalidRequest(f"'{param}' names no model in this list: {model_id!r}.", param=param)


def anthropic_page(request: Request, items: list[Listed]) -> dict[str, Any]:
    """`limit`, `after_id`, `before_id` over the newest-first list (reference §2.6)."""
    default, maximum = ANTHROPIC_PAGE
    limit = _int_param(request, ["limit"], default)
    if not 1 <= limit <= maximum:
        raise InvalidRequest(f"'limit' must be between 1 and {maximum}.", param="limit")
    after, before = request.query_params.get("after_id"), request.query_params.get("before_id")
    if after and before:
        raise InvalidRequest("Give 'after_id' or 'before_id', not both.", param="before_id")
    # Newest first; sorted() is stable, so catalog order breaks ties.
    ordered = sorted(items, key=lambda item: -item.model.created_at.seconds)
    if before:
        end = _position(ordered, before, "before_id")
        start = max(0, end - limit)
        page, has_more = ordered[start:end], start > 0
    else:
        start = _position(ordered, after, "after_id") + 1 if after else 0
        page, has_more = ordered[start : start + limit], start + limit < len(ordered)
    return {
        "data": [anthropic_model(item) for item in page],
        "has_more": has_more,
        "first_id": page[0].model.id if page else None,
        "last_id": page[-1].model.id if page else None,
    }


def _page_token(model_id: str) -> str:
    return base64.urlsafe_b64encode(model_id.encode()).decode().rstrip("=")


def _token_position(items: list[Listed], token: str) -> int:
    try:
        model_id = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError):
        model_id = ""
    for number, item in enumerate(items):
        if item.model.id == model_id:
            return number + 1
    raise InvalidRequest("Invalid 'pageToken'.", param="pageToken")


def gemini_page(request: Request, items: list[Listed]) -> dict[str, Any]:
    """`pageSize` (default 50, above 1000 coerced to 1000) and an opaque `pageToken`."""
    default, maximum = GEMINI_PAGE
    size = _int_param(request, ["pageSize", "page_size"], default)
    if size < 0:
        raise InvalidRequest("'pageSize' must not be negative.", param="pageSize")
    size = min(size or default, maximum)
    token = request.query_params.get("pageToken") or request.query_params.get("page_token")
    start = _token_position(items, token) if token else 0
    page = items[start : start + size]
    body: dict[str, Any] = {"models": [gemini_model(item) for item in page]}
    if start + size < len(items):
        body["nextPageToken"] = _page_token(page[-1].model.id)
    return body


# -- routes ------------------------------------------------------------------------------


def _shape(request: Request) -> str:
    """Whose list shape `/v1/models` answers in: Anthropic when `anthropic-version` or
    `x-api-key` is sent (reference §0), Gemini when a Google key is (google-genai 3.x
    calls `/v1/models` by default), OpenAI otherwise."""
    headers = request.headers
    if "anthropic-version" in headers or "x-api-key" in headers:
        return "anthropic"
    if "x-goog-api-key" in headers or "key" in request.query_params:
        return "gemini"
    return "openai"


_KEYS = {"anthropic": anthropic_key, "gemini": gemini_key, "openai": bearer_token}


async def _answer(
    request: Request, protocol: str, build: Callable[[], Awaitable[dict[str, Any]]]
) -> Response:
    request_id = new_request_id()
    request.state.request_id = request_id
    try:
        body = await build()
    except GatewayError as err:
        return render(protocol, err, request_id)
    headers = {"x-request-id": request_id}
    if protocol == "anthropic":
        headers["request-id"] = request_id
    return Response(orjson.dumps(body), headers=headers, media_type="application/json")


def _find(gateway: Gateway, principal: auth_pb2.Principal, name: str) -> Listed:
    model = gateway.resolve_model(name, principal)  # 404 unknown, 403 not allowed
    return Listed(model, _available(gateway, model))


@router.get("/v1/models")
async def list_models(request: Request, gateway: GatewayDep) -> Response:
    shape = _shape(request)

    async def build() -> dict[str, Any]:
        items = visible(gateway, await gateway.authenticate(_KEYS[shape](request)))
        if shape == "anthropic":
            return anthropic_page(request, items)
        if shape == "gemini":
            return gemini_page(request, items)
        return {"object": "list", "data": [openai_model(item) for item in items]}

    return await _answer(request, shape, build)


@router.get("/v1/models/{model_id:path}")
async def get_model(model_id: str, request: Request, gateway: GatewayDep) -> Response:
    shape = _shape(request)
    encode = {"anthropic": anthropic_model, "gemini": gemini_model, "openai": openai_model}

    async def build() -> dict[str, Any]:
        principal = await gateway.authenticate(_KEYS[shape](request))
        return encode[shape](_find(gateway, principal, model_id))

    return await _answer(request, shape, build)


@router.get("/v1beta/models")
async def list_gemini_models(request: Request, gateway: GatewayDep) -> Response:
    async def build() -> dict[str, Any]:
        principal = await gateway.authenticate(gemini_key(request))
        return gemini_page(request, visible(gateway, principal))

    return await _answer(request, "gemini", build)


@router.get("/v1beta/models/{model:path}")
async def get_gemini_model(model: str, request: Request, gateway: GatewayDep) -> Response:
    async def build() -> dict[str, Any]:
        principal = await gateway.authenticate(gemini_key(request))
        return gemini_model(_find(gateway, principal, model))

    return await _answer(request, "gemini", build)
