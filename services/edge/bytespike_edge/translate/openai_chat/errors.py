"""OpenAI error bodies: rendering for clients, reading from upstreams (reference §3.6, §10)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bytespike_common.errors import ErrorKind, GatewayError, kind_for_status
from bytespike_edge.translate.errors import (
    CONTEXT_OVERFLOW,
    fallback_message,
    is_context_overflow,
    parse_body,
    retry_after,
    retry_seconds,
    upstream_error,
)
from bytespike_edge.translate.ir import JSON

# kind → (type, default code, status override); codes `overloaded`, `timeout` and
# `request_too_large` are gateway conventions (§10).
_RENDER: dict[ErrorKind, tuple[str, str | None, int | None]] = {
    ErrorKind.INVALID_REQUEST: ("invalid_request_error", None, None),
    ErrorKind.AUTHENTICATION: ("invalid_request_error", "invalid_api_key", None),
    ErrorKind.PERMISSION: ("permission_error", None, None),
    ErrorKind.NOT_FOUND: ("invalid_request_error", "model_not_found", None),
    ErrorKind.REQUEST_TOO_LARGE: ("invalid_request_error", "request_too_large", 413),
    ErrorKind.RATE_LIMITED: ("rate_limit_exceeded", "rate_limit_exceeded", 429),
    # Billing exhaustion is a 429 `insufficient_quota` to OpenAI clients (§10).
    ErrorKind.INSUFFICIENT_CREDIT: ("insufficient_quota", "insufficient_quota", 429),
    # OpenAI clients know no 529 (§9 item 29).
    ErrorKind.OVERLOADED: ("server_error", "overloaded", 503),
    ErrorKind.UNAVAILABLE: ("server_error", None, 503),
    ErrorKind.TIMEOUT: ("server_error", "timeout", 504),
    ErrorKind.INTERNAL: ("server_error", None, None),
}
_KIND_FOR_CODE = {
    "insufficient_quota": ErrorKind.INSUFFICIENT_CREDIT,
    "invalid_api_key": ErrorKind.AUTHENTICATION,
    "model_not_found": ErrorKind.NOT_FOUND,
    "rate_limit_exceeded": ErrorKind.RATE_LIMITED,
}


def error_body(err: GatewayError) -> JSON:
    kind, default_code, _ = _RENDER[err.kind]
    return {
        "error": {
            "message": err.message,
            "type": kind,
            "param": err.param,
            "code": err.code or default_code,
        }
    }


def render_error(
    err: GatewayError, request_id: str | None = None
) -> tuple[int, JSON, dict[str, str]]:
    status = _RENDER[err.kind][2] or err.status
    if err.code == CONTEXT_OVERFLOW:
        status = 400
    headers: dict[str, str] = {}
    if request_id:
        headers["x-request-id"] = request_id
    seconds = retry_seconds(err)
    if seconds is not None:
        headers["retry-after"] = seconds
    if err.kind is ErrorKind.INSUFFICIENT_CREDIT:
        headers["x-should-retry"] = "false"  # quota exhaustion does not heal by retrying
    return status, error_body(err), headers


def error_from_object(error: Any, status: int | None, retry: float | None = None) -> GatewayError:
    """An OpenAI `error` object (HTTP body or in-stream) → GatewayError."""
    error = error if isinstance(error, dict) else {}
    message = (
        error.get("message") if isinstance(error.get("message"), str) else "OpenAI upstream error"
    )
    code = error.get("code") if isinstance(error.get("code"), str) else None
    param = error.get("param") if isinstance(error.get("param"), str) else None
    if status is None:
        status = 500 if error.get("type") in (None, "server_error") else 400
    kind = _KIND_FOR_CODE.get(code or "") or kind_for_status(status)
    # In-stream overload errors carry only a message ("That model is currently overloaded").
    if status in (503, 529) or code == "overloaded" or "overloaded" in message.lower():
        kind = ErrorKind.OVERLOADED
    if code == CONTEXT_OVERFLOW or (status == 400 and is_context_overflow(message)):
        code, kind = CONTEXT_OVERFLOW, ErrorKind.INVALID_REQUEST
    return upstream_error(status, message, kind=kind, code=code, param=param, retry=retry)


def decode_error(status: int, body: bytes, headers: Mapping[str, str]) -> GatewayError:
    parsed = parse_body(body)
    retry = retry_after(headers)
    if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
        return error_from_object(parsed["error"], status, retry)
    return upstream_error(status, fallback_message(status, body), retry=retry)
