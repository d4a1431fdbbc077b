"""Reading what a client sent: the bounded JSON body and the API key in each protocol's header."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.types import Receive

from bytespike_common.errors import InvalidRequest, RequestTooLarge


def header(request: Request, name: bytes) -> str | None:
    """The first value of a request header, `name` lowercase: what `request.headers.get`
    answers (ASGI servers give the names lowercase), without building a `Headers` mapping
    and its lookup for the two or three headers every generation request reads."""
    for key, value in request.scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def header_values(request: Request, name: bytes) -> list[str]:
    """Every value of a request header, `name` lowercase (`request.headers.getlist`)."""
    return [value.decode("latin-1") for key, value in request.scope["headers"] if key == name]


async def read_json_object(request: Request, limit: int) -> tuple[bytes, dict[str, Any]]:
    declared = header(request, b"content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise RequestTooLarge(f"Request body exceeds the {limit} byte limit.")
    body = await _read_body(request.receive, limit)
    if not body:
        raise InvalidRequest("The request body is empty; a JSON object is required.")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(
            f"The request body is not valid JSON: {exc.msg} (at position {exc.pos})."
        ) from exc
    if not isinstance(data, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    return body, data


async def _read_body(receive: Receive, limit: int) -> bytes:
    """The body straight from the ASGI messages (what `Request.stream` does, without an
    async generator per request); most bodies arrive in a single message."""
    chunks: list[bytes] = []
    size = 0
    more = True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            raise ClientDisconnect()
        chunk: bytes = message.get("body", b"")
        more = message.get("more_body", False)
        size += len(chunk)
        if size > limit:
            raise RequestTooLarge(f"Request body exceeds the {limit} byte limit.")
        if chunk:
            chunks.append(chunk)
    return b"".join(chunks)


def bearer_token(request: Request) -> str | None:
    value = header(request, b"authorization")
    if value and value[:7].lower() == "bearer ":
        return value[7:].strip() or None
    return None


def anthropic_key(request: Request) -> str | None:
    return header(request, b"x-api-key") or bearer_token(request)


def gemini_key(request: Request) -> str | None:
    return (
        header(request, b"x-goog-api-key")
        or request.query_params.get("key")
        or bearer_token(request)
    )
