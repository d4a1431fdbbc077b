"""Tool-call arguments: OpenAI's JSON strings ↔ the objects Anthropic and Gemini carry.

Malformed upstream arguments never fail a request (reference §6.4, case 32): a string that
is not a JSON object becomes `{"_raw": "<string>"}` and the original is kept for clients
that take strings.
"""

from __future__ import annotations

import orjson

from bytespike_edge.translate.ir import JSON, ToolCallPart

RAW_KEY = "_raw"


def parse_arguments(text: str) -> tuple[JSON, str | None]:
    """(arguments object, the raw string when it was not a JSON object)."""
    if not text.strip():
        return {}, None
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        value = _repair(text)
    if isinstance(value, dict):
        return value, None
    return {RAW_KEY: text}, text


def _repair(text: str) -> object:
    # Models sometimes trail text after a complete object; keep the object.
    end = text.rfind("}")
    if end > 0:
        try:
            return orjson.loads(text[: end + 1])
        except orjson.JSONDecodeError:
            return None
    return None


def dump_arguments(part: ToolCallPart) -> str:
    """The JSON string form: the original string if there was one, else compact JSON."""
    if part.raw_arguments is not None:
        return part.raw_arguments
    return orjson.dumps(part.arguments).decode()
