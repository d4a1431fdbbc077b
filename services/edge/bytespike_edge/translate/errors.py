"""Helpers for reading upstream errors, shared by the three codecs (reference §10)."""

from __future__ import annotations

import email.utils
import re
import time
from collections.abc import Mapping
from typing import Any

import orjson

from bytespike_common.errors import ErrorKind, GatewayError, UpstreamHTTPError, kind_for_status

# The OpenAI code for an oversized prompt; also set on Gemini/Anthropic overflows so every
# renderer can recognise them.
CONTEXT_OVERFLOW = "context_length_exceeded"
# Claude Code compacts only when the message contains this phrase (reference §9 item 33).
ANTHROPIC_OVERFLOW_PHRASE = "prompt is too long"
_OVERFLOW = re.compile(
    r"prompt is too long|context length|context window|maximum context|too many tokens|"
    r"input token count.*exceeds|exceeds the maximum number of tokens",
    re.IGNORECASE,
)


def header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is not None:
        return value
    lowered = name.lower()
    for key, item in headers.items():
        if key.lower() == lowered:
            return item
    return None


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds from `retry-after-ms` or `retry-after` (seconds or an HTTP date)."""
    ms = header(headers, "retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = header(headers, "retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        when = email.utils.parsedate_to_datetime(value) if value else None
        return max(0.0, when.timestamp() - time.time()) if when else None


def parse_body(body: bytes) -> Any:
    try:
        return orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        return None


def is_context_overflow(message: str) -> bool:
    return bool(_OVERFLOW.search(message))


def upstream_error(
    status: int,
    message: str,
    *,
    kind: ErrorKind | None = None,
    code: str | None = None,
    param: str | None = None,
    retry: float | None = None,
) -> GatewayError:
    """An `UpstreamHTTPError` whose kind drives the client-side rendering."""
    err = UpstreamHTTPError(message, param=param, code=code, retry_after=retry, status=status)
    err.kind = kind if kind is not None else kind_for_status(status)
    return err


def fallback_message(status: int, body: bytes) -> str:
    text = body[:200].decode("utf-8", errors="replace").strip()
    return f"Upstream error {status}" + (f": {text}" if text else "")


def retry_seconds(err: GatewayError) -> str | None:
    if err.retry_after is None:
        return None
    return str(max(1, round(err.retry_after)))
