"""Gemini error bodies (google.rpc.Status): rendering for clients, reading from upstreams
(reference §5.6, §10)."""

from __future__ import annotations

import re
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

RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"
ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"

# kind → (HTTP status, google.rpc status). 529 is unknown to Gemini clients, which retry
# only 408/429/5xx-but-not-529: overload is a 503 UNAVAILABLE to them (§1, §9 item 29).
_RENDER: dict[ErrorKind, tuple[int | None, str]] = {
    ErrorKind.INVALID_REQUEST: (400, "INVALID_ARGUMENT"),
    ErrorKind.AUTHENTICATION: (401, "UNAUTHENTICATED"),
    ErrorKind.PERMISSION: (403, "PERMISSION_DENIED"),
    ErrorKind.NOT_FOUND: (404, "NOT_FOUND"),
    ErrorKind.REQUEST_TOO_LARGE: (400, "INVALID_ARGUMENT"),
    ErrorKind.RATE_LIMITED: (429, "RESOURCE_EXHAUSTED"),
    ErrorKind.INSUFFICIENT_CREDIT: (429, "RESOURCE_EXHAUSTED"),
    ErrorKind.OVERLOADED: (503, "UNAVAILABLE"),
    ErrorKind.UNAVAILABLE: (None, "UNAVAILABLE"),
    ErrorKind.TIMEOUT: (504, "DEADLINE_EXCEEDED"),
    ErrorKind.INTERNAL: (None, "INTERNAL"),
}
_KIND_FOR_STATUS = {
    "UNAUTHENTICATED": ErrorKind.AUTHENTICATION,
    "PERMISSION_DENIED": ErrorKind.PERMISSION,
    "NOT_FOUND": ErrorKind.NOT_FOUND,
    "RESOURCE_EXHAUSTED": ErrorKind.RATE_LIMITED,
    "UNAVAILABLE": ErrorKind.OVERLOADED,
    "DEADLINE_EXCEEDED": ErrorKind.TIMEOUT,
    "INTERNAL": ErrorKind.INTERNAL,
}
_HTTP_FOR_STATUS = {
    "INVALID_ARGUMENT": 400, "FAILED_PRECONDITION": 400, "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403, "NOT_FOUND": 404, "RESOURCE_EXHAUSTED": 429, "CANCELLED": 499,
    "INTERNAL": 500, "UNAVAILABLE": 503, "DEADLINE_EXCEEDED": 504,
}  # fmt: skip
_DELAY = re.compile(r"^\s*(\d+(?:\.\d+)?)s\s*$")


def _status(err: GatewayError) -> tuple[int, str]:
    status, name = _RENDER[err.kind]
    if status is None:
        fallback = 503 if err.kind is ErrorKind.UNAVAILABLE else 500
        status = err.status if err.status >= 500 and err.status != 529 else fallback
    return status, name


def error_body(err: GatewayError) -> JSON:
    status, name = _status(err)
    error: JSON = {"code": status, "message": err.message, "status": name}
    seconds = retry_seconds(err)
    if seconds is not None:
        error["details"] = [{"@type": RETRY_INFO, "retryDelay": f"{seconds}s"}]
    return {"error": error}


def render_error(
    err: GatewayError, request_id: str | None = None
) -> tuple[int, JSON, dict[str, str]]:
    headers = {"x-request-id": request_id} if request_id else {}
    return _status(err)[0], error_body(err), headers


def _details(error: JSON) -> list[JSON]:
    details = error.get("details")
    return [d for d in details if isinstance(d, dict)] if isinstance(details, list) else []


def _retry_delay(details: list[JSON]) -> float | None:
    for detail in details:
        if detail.get("@type") == RETRY_INFO and isinstance(detail.get("retryDelay"), str):
            match = _DELAY.match(detail["retryDelay"])
            if match:
                return float(match.group(1))
    return None


def _api_key_invalid(details: list[JSON]) -> bool:
    return any(
        d.get("@type") == ERROR_INFO and d.get("reason") == "API_KEY_INVALID" for d in details
    )


def error_from_object(error: Any, status: int | None, retry: float | None = None) -> GatewayError:
    """A google.rpc.Status (HTTP body or in-stream) → GatewayError."""
    error = error if isinstance(error, dict) else {}
    message = (
        error.get("message") if isinstance(error.get("message"), str) else "Gemini upstream error"
    )
    name = error.get("status") if isinstance(error.get("status"), str) else ""
    if status is None:
        code = error.get("code")
        status = code if isinstance(code, int) else _HTTP_FOR_STATUS.get(name, 500)
    details = _details(error)
    retry = _retry_delay(details) or retry
    kind = _KIND_FOR_STATUS.get(name) or kind_for_status(status)
    code_name: str | None = None
    if _api_key_invalid(details):
        # Gemini says 400 INVALID_ARGUMENT for a bad key; every other client expects 401 (§9.30).
        status, kind = 401, ErrorKind.AUTHENTICATION
    elif status == 503:
        kind = ErrorKind.OVERLOADED
    elif status == 400 and is_context_overflow(message):
        code_name, kind = CONTEXT_OVERFLOW, ErrorKind.INVALID_REQUEST
    return upstream_error(status, message, kind=kind, code=code_name, retry=retry)


def decode_error(status: int, body: bytes, headers: Mapping[str, str]) -> GatewayError:
    parsed = parse_body(body)
    # Some proxies in front of Gemini answer with a JSON array holding the Status.
    if isinstance(parsed, list) and parsed and isinstance(parsed[0], dict):
        parsed = parsed[0]
    retry = retry_after(headers)
    if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
        return error_from_object(parsed["error"], status, retry)
    return upstream_error(status, fallback_message(status, body), retry=retry)
