"""Anthropic error bodies: rendering for clients, reading from upstreams (reference §2.7, §10)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bytespike_common.errors import ErrorKind, GatewayError
from bytespike_edge.translate.errors import (
    ANTHROPIC_OVERFLOW_PHRASE,
    CONTEXT_OVERFLOW,
    fallback_message,
    is_context_overflow,
    parse_body,
    retry_after,
    retry_seconds,
    upstream_error,
)
from bytespike_edge.translate.ir import JSON

ERROR_TYPES: dict[ErrorKind, str] = {
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
_KINDS = {v: k for k, v in ERROR_TYPES.items() if k is not ErrorKind.UNAVAILABLE}
_STATUS_FOR_TYPE = {
    "overloaded_error": 529,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "billing_error": 402,
    "request_too_large": 413,
}


def _message(err: GatewayError) -> str:
    if err.code == CONTEXT_OVERFLOW and ANTHROPIC_OVERFLOW_PHRASE not in err.message.lower():
        # Claude Code compacts the conversation only on this wording (§9 item 33).
        return f"{ANTHROPIC_OVERFLOW_PHRASE}: {err.message}"
    return err.message


def error_body(err: GatewayError, request_id: str | None = None) -> JSON:
    body: JSON = {
        "type": "error",
        "error": {"type": ERROR_TYPES[err.kind], "message": _message(err)},
    }
    if request_id:
        body["request_id"] = request_id
    return body


# Statuses fixed by kind whatever the upstream said: overload is Anthropic's 529, quota
# exhaustion its 402 `billing_error` (an OpenAI upstream says 429, §10).
_FIXED_STATUS = {
    ErrorKind.OVERLOADED: 529,
    ErrorKind.INSUFFICIENT_CREDIT: 402,
    ErrorKind.REQUEST_TOO_LARGE: 413,
}


def status_for(err: GatewayError) -> int:
    if err.code == CONTEXT_OVERFLOW:
        return 400
    return _FIXED_STATUS.get(err.kind, err.status)


def render_error(
    err: GatewayError, request_id: str | None = None
) -> tuple[int, JSON, dict[str, str]]:
    headers: dict[str, str] = {}
    if request_id:
        headers["request-id"] = request_id
    seconds = retry_seconds(err)
    if seconds is not None:
        headers["retry-after"] = seconds
    if err.kind is ErrorKind.INSUFFICIENT_CREDIT:
        headers["x-should-retry"] = "false"
    return status_for(err), error_body(err, request_id), headers


def error_from_object(error: Any, status: int | None, retry: float | None = None) -> GatewayError:
    """An Anthropic `error` object (HTTP body or stream event) → GatewayError."""
    error = error if isinstance(error, dict) else {}
    kind_name = error.get("type") if isinstance(error.get("type"), str) else "api_error"
    message = (
        error.get("message")
        if isinstance(error.get("message"), str)
        else "Anthropic upstream error"
    )
    kind: ErrorKind | None = _KINDS.get(kind_name)
    if status is None:
        status = _STATUS_FOR_TYPE.get(kind_name, 400 if kind else 500)
    code = (
        CONTEXT_OVERFLOW
        if kind_name == "invalid_request_error" and is_context_overflow(message)
        else None
    )
    if status in (503, 529):
        # Overload, whatever the body says: A clients get 529, others 503 (§9 item 29).
        kind = ErrorKind.OVERLOADED
    return upstream_error(status, message, kind=kind, code=code, retry=retry)


def decode_error(status: int, body: bytes, headers: Mapping[str, str]) -> GatewayError:
    parsed = parse_body(body)
    retry = retry_after(headers)
    if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
        return error_from_object(parsed["error"], status, retry)
    return upstream_error(status, fallback_message(status, body), retry=retry)
