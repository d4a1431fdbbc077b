"""Property: on any JSON-ish body, decoding (and encoding the result for every upstream)
raises nothing but InvalidRequest — a malformed request is a 400, never a 500."""

from __future__ import annotations

import contextlib
import copy
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bytespike_common.errors import InvalidRequest
from bytespike_edge.translate.registry import codec_for
from bytespike_edge.translate.schema import from_gemini, gemini_parameters, strict_objects

PROTOCOLS = ("anthropic", "openai", "gemini")

# Field names and values the decoders look for, so generated bodies reach deep branches.
KEYS = [
    "model",
    "max_tokens",
    "messages",
    "role",
    "content",
    "type",
    "text",
    "system",
    "tools",
    "tool_choice",
    "name",
    "input_schema",
    "input",
    "id",
    "tool_use_id",
    "is_error",
    "source",
    "media_type",
    "data",
    "url",
    "thinking",
    "signature",
    "budget_tokens",
    "output_config",
    "format",
    "schema",
    "stream",
    "temperature",
    "top_p",
    "stop",
    "stop_sequences",
    "tool_calls",
    "function",
    "arguments",
    "tool_call_id",
    "image_url",
    "file",
    "file_data",
    "response_format",
    "json_schema",
    "reasoning_effort",
    "stream_options",
    "include_usage",
    "contents",
    "parts",
    "functionCall",
    "functionResponse",
    "args",
    "response",
    "inlineData",
    "mimeType",
    "fileData",
    "fileUri",
    "thought",
    "thoughtSignature",
    "generationConfig",
    "thinkingConfig",
    "thinkingBudget",
    "toolConfig",
    "functionCallingConfig",
    "mode",
    "allowedFunctionNames",
    "functionDeclarations",
    "parameters",
    "parametersJsonSchema",
    "responseSchema",
    "responseMimeType",
    "systemInstruction",
    "metadata",
    "user_id",
    "n",
    "allowed_tools",
    "generateContentRequest",
    "disable_parallel_tool_use",
    "parallel_tool_calls",
    "modalities",
    "allOf",
    "$ref",
    "$defs",
    "anyOf",
    "properties",
    "required",
    "reasoning_content",
    "refusal",
]
WORDS = [
    "user",
    "assistant",
    "model",
    "system",
    "developer",
    "tool",
    "text",
    "image",
    "document",
    "tool_use",
    "tool_result",
    "thinking",
    "redacted_thinking",
    "base64",
    "url",
    "function",
    "auto",
    "any",
    "none",
    "required",
    "enabled",
    "disabled",
    "adaptive",
    "json_schema",
    "json_object",
    "ANY",
    "AUTO",
    "NONE",
    "image/png",
    "application/pdf",
    "audio/wav",
    "data:image/png;base64,AAAA",
    "https://x.test/a.png",
    "object",
    "string",
    "OBJECT",
    "high",
    "gw1:gemini:U2ln",
    "allowed_tools",
    "input_audio",
    "image_url",
    "file",
]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(WORDS),
    st.text(max_size=8),
)
keys = st.one_of(st.sampled_from(KEYS), st.text(max_size=6))
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(keys, inner, max_size=6),
    ),
    max_leaves=25,
)
bodies = st.dictionaries(keys, json_values, max_size=8)

VALID: dict[str, dict[str, Any]] = {
    "anthropic": {
        "model": "m",
        "max_tokens": 100,
        "system": [{"type": "text", "text": "s"}],
        "messages": [
            {
                "role": "user",
                "content": [
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": "AA"},
                    }
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "t", "signature": "s"},
                    {"type": "tool_use", "id": "t1", "name": "f", "input": {}},
                ],
            },
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "r"}],
            },
        ],
        "tools": [{"name": "f", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "auto"},
        "thinking": {"type": "enabled", "budget_tokens": 2000},
    },
    "openai": {
        "model": "m",
        "messages": [
            {"role": "system", "content": "s"},
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}}
                ],
            },
            {
                "role": "assistant",
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "r"},
        ],
        "tools": [
            {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
        ],
        "tool_choice": "required",
        "response_format": {"type": "json_schema", "json_schema": {"name": "n", "schema": {}}},
        "reasoning_effort": "low",
    },
    "gemini": {
        "contents": [
            {
                "role": "user",
                "parts": [{"text": "q"}, {"inlineData": {"mimeType": "image/png", "data": "AA"}}],
            },
            {
                "role": "model",
                "parts": [{"functionCall": {"name": "f", "args": {}}, "thoughtSignature": "AA=="}],
            },
            {
                "role": "user",
                "parts": [{"functionResponse": {"name": "f", "response": {"output": 1}}}],
            },
        ],
        "tools": [{"functionDeclarations": [{"name": "f", "parameters": {"type": "OBJECT"}}]}],
        "toolConfig": {"functionCallingConfig": {"mode": "ANY"}},
        "generationConfig": {
            "thinkingConfig": {"thinkingBudget": 100},
            "responseMimeType": "application/json",
        },
    },
}


def check(protocol: str, body: Any, count_tokens: bool = False) -> None:
    codec = codec_for(protocol)
    try:
        req = codec.decode_count_tokens(body) if count_tokens else codec.decode_request(body)
    except InvalidRequest:
        return
    for upstream in PROTOCOLS:
        with contextlib.suppress(InvalidRequest):
            codec_for(upstream).encode_request(copy.deepcopy(req), "up")


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _paths(value, (*prefix, index))
    return found


def mutate(body: dict[str, Any], where: tuple[Any, ...], value: Any) -> Any:
    if not where:
        return value
    out = copy.deepcopy(body)
    node: Any = out
    for step in where[:-1]:
        node = node[step]
    node[where[-1]] = value
    return out


FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(protocol=st.sampled_from(PROTOCOLS), body=bodies)
def test_arbitrary_bodies_raise_only_invalid_request(protocol: str, body: dict[str, Any]) -> None:
    check(protocol, body)


@FUZZ
@given(protocol=st.sampled_from(PROTOCOLS), data=st.data(), value=json_values)
def test_mutated_valid_bodies_raise_only_invalid_request(
    protocol: str, data: st.DataObject, value: Any
) -> None:
    valid = VALID[protocol]
    where = data.draw(st.sampled_from(_paths(valid)))
    check(protocol, mutate(valid, where, value))


@FUZZ
@given(protocol=st.sampled_from(("anthropic", "gemini")), body=bodies)
def test_count_token_bodies_raise_only_invalid_request(protocol: str, body: dict[str, Any]) -> None:
    check(protocol, body, count_tokens=True)


def test_valid_seeds_translate_everywhere() -> None:
    for protocol, body in VALID.items():
        req = codec_for(protocol).decode_request(body)
        for upstream in PROTOCOLS:
            assert codec_for(upstream).encode_request(copy.deepcopy(req), "up")[
                "contents" if upstream == "gemini" else "messages"
            ]


SCHEMA_KEYS = [
    "type",
    "properties",
    "items",
    "required",
    "anyOf",
    "oneOf",
    "allOf",
    "$ref",
    "$defs",
    "definitions",
    "enum",
    "const",
    "nullable",
    "format",
    "description",
    "any_of",
]
schemas = st.recursive(
    st.one_of(
        scalars, st.sampled_from(["object", "string", "null", "OBJECT", "#/$defs/A", "#/$defs/B"])
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.sampled_from(SCHEMA_KEYS), inner, max_size=6),
    ),
    max_leaves=40,
)


@FUZZ
@given(schema=st.dictionaries(st.sampled_from(SCHEMA_KEYS), schemas, max_size=6))
def test_schema_conversions_never_crash(schema: dict[str, Any]) -> None:
    gemini_parameters(schema)
    from_gemini(schema)
    strict_objects(schema)
