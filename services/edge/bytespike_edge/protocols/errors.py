"""Errors in the caller's protocol (reference/protocols.md §2.7, §3.6, §5, §10).

The protocol is known from the path, so even a request we cannot parse (or a route that
does not exist) gets an error body its SDK understands.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

from bytespike_common.errors import ErrorKind, GatewayError

_OPENAI_TYPES = {
    ErrorKind.INVALID_REQUEST: "invalid_request_error",
    ErrorKind.AUTHENTICATION: "invalid_request_error",
    ErrorKind.PERMISSION: "permission_error",
    ErrorKind.NOT_FOUND: "invalid_request_error",
    ErrorKind.REQUEST_TOO_LARGE: "invalid_request_error",
    ErrorKind.RATE_LIMITED: "rate_limit_exceeded",
    ErrorKind.INSUFFICIENT_CREDIT: "insufficient_quota",
    ErrorKind.OVERLOADED: "server_error",
    ErrorKind.UNAVAILABLE: "server_error",
    ErrorKind.TIMEOUT: "server_error",
    ErrorKind.INTERNAL: "server_error",
}

_ANTHROPIC_TYPES = {
    ErrorKind.INVALID_REQUEST: "invalid_request_error",
    ErrorKind.AUTHENTICATION: "authentication_error",
    ErrorKind.PERMISSION: "permission_error",
    ErrorKind.NOT_FOUND: "not_found_error",
    ErrorKind.REQUEST_TOO_LARGE: "request_too_large",
    ErrorKind.RATE_LIMITED: "rate_limit_error",
    ErrorKind.INSUFFICIENT_CREDIT: "billing_error",
    ErrorKind.OVERLOADED: "overloaded_error",
    ErrorKind.UNAVAILABLE: "api_error",
    ErrorKind.TIMEOUT: "timeout_error",
    ErrorKind.INTERNAL: "api_error",
}

_GEMINI_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    413: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def protocol_for_path(path: str) -> str:
    if path.startswith("/v1/messages"):
        return "anthropic"
    if path.startswith(("/v1beta/", "/v1/models/")) and ":" in path:
        return "gemini"
    if path.startswith("/v1beta"):
        return "gemini"
    return "openai"


def _headers(err: GatewayError, request_id: str) -> dict[str, str]:
    headers = {"x-request-id": request_id}
    if err.retry_after is not None:
        headers["retry-after"] = str(max(1, round(err.retry_after)))
    return headers


def _json(status: int, body: dict[str, Any], headers: dict[str, str]) -> Response:
    return Response(orjson.dumps(body), status, headers, media_type="application/json")


def openai_error_body(err: GatewayError) -> dict[str, Any]:
    return {
        "error": {
            "message": err.message,
            "type": _OPENAI_TYPES[err.kind],
            "param": err.param,
            "code": err.code,
        }
    }


def render_openai(err: GatewayError, request_id: str) -> Response:
    # OpenAI clients know no 529; an overload is a 503 to them.
    status = 503 if err.status == 529 else err.status
    return _json(status, openai_error_body(err), _headers(err, request_id))


def render_anthropic(err: GatewayError, request_id: str) -> Response:
    body = {
        "type": "error",
        "error": {"type": _ANTHROPIC_TYPES[err.kind], "message": err.message},
        "request_id": request_id,
    }
    headers = _headers(err, request_id)
    headers["request-id"] = request_id
    return _json(err.status, body, headers)


def render_gemini(err: GatewayError, request_id: str) -> Response:
    # google-genai does not retry 529; Gemini clients get 503 (reference §1).
    status = 503 if err.status == 529 else err.status
    error: dict[str, Any] = {
        "code": status,
        "message": err.message,
        "status": _GEMINI_STATUS.get(status, "INTERNAL" if status >= 500 else "INVALID_ARGUMENT"),
    }
    if err.retry_after is not None:
        error["details"] = [
            {
                "@type": "type.googleapis.com/google.rpc.RetryInfo",
                "retryDelay": f"{max(1, round(err.retry_after))}s",
            }
        ]
    return _json(status, {"error": error}, _headers(err, request_id))


RENDERERS = {"openai": render_openai, "anthropic": render_anthropic, "gemini": render_gemini}


def render(protocol: str, err: GatewayError, request_id: str) -> Response:
    return RENDERERS[protocol](err, request_id)
