"""The OpenAI Chat codec on its own: request validation, passthrough helpers, usage sniffing."""

from __future__ import annotations

from typing import Any

import pytest

from bytespike_common.errors import InvalidRequest
from bytespike_edge.translate import openai_chat as codec
from bytespike_edge.translate.ir import Usage
from tests.edge.translate.fixtures import OPENAI_RESPONSE, OPENAI_STREAM
from tests.edge.translate.helpers import translate

BASE: dict[str, Any] = {"model": "gpt-x", "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize(
    ("body", "param", "message"),
    [
        ({"model": "m"}, "messages", "messages: field required"),
        ({"messages": []}, "model", "model: field required"),
        (
            {**BASE, "messages": [{"role": "function", "name": "f", "content": "x"}]},
            "messages[0].role",
            "messages[0].role: 'function' messages are deprecated; use 'tool'",
        ),
        (
            {**BASE, "messages": [{"role": "tool", "content": "x"}]},
            "messages[0].tool_call_id",
            "messages[0].tool_call_id: field required",
        ),
        (
            {**BASE, "messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
            "messages[0].content[0].image_url",
            "messages[0].content[0].image_url: field required",
        ),
        (
            {**BASE, "messages": [{"role": "assistant", "tool_calls": [{"id": "c"}]}]},
            "messages[0].tool_calls[0].function",
            "messages[0].tool_calls[0].function: field required",
        ),
        (
            {**BASE, "messages": [{"role": "system", "content": [{"type": "image_url"}]}]},
            "messages[0].content[0].type",
            "messages[0].content[0].type: must be one of text, refusal; got 'image_url'",
        ),
        ({**BASE, "temperature": 3}, "temperature", "temperature: must be between 0.0 and 2.0"),
        ({**BASE, "stop": 4}, "stop", "stop: expected an array"),
        ({**BASE, "n": 0}, "n", "n: must be >= 1"),
        (
            {**BASE, "reasoning_effort": "extreme"},
            "reasoning_effort",
            "reasoning_effort: must be one of none, minimal, low, medium, high, xhigh, max; got 'extreme'",
        ),
        (
            {**BASE, "tool_choice": "maybe"},
            "tool_choice",
            "tool_choice: must be one of none, auto, required; got 'maybe'",
        ),
        (
            {**BASE, "tool_choice": {"type": "function", "function": {}}},
            "tool_choice.function.name",
            "tool_choice.function.name: field required",
        ),
        (
            {**BASE, "response_format": {"type": "json_schema"}},
            "response_format.json_schema",
            "response_format.json_schema: field required",
        ),
        (
            {**BASE, "tools": [{"type": "function"}]},
            "tools[0].function",
            "tools[0].function: field required",
        ),
        ({**BASE, "metadata": {"k": 1}}, "metadata.k", "metadata.k: expected a string"),
    ],
)
def test_invalid_requests_name_the_field(body: dict[str, Any], param: str, message: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        codec.decode_request(body)
    assert (caught.value.param, caught.value.message) == (param, message)


def test_include_usage_only_counts_for_streams() -> None:
    options = {"stream_options": {"include_usage": True}}
    assert codec.decode_request({**BASE, **options, "stream": True}).ctx.include_usage is True
    assert codec.decode_request({**BASE, **options}).ctx.include_usage is False


def test_there_is_no_chat_token_counting() -> None:
    with pytest.raises(InvalidRequest):
        codec.CODEC.decode_count_tokens(BASE)


def test_tool_result_media_and_errors_towards_openai() -> None:
    body = {
        "model": "c",
        "max_tokens": 5,
        "messages": [
            {"role": "user", "content": "look"},
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "t1", "name": "shot", "input": {}}],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "t1",
                        "is_error": True,
                        "content": [
                            {"type": "text", "text": "partial"},
                            {
                                "type": "image",
                                "source": {
                                    "type": "base64",
                                    "media_type": "image/png",
                                    "data": "AAAA",
                                },
                            },
                        ],
                    },
                    {"type": "text", "text": "what now?"},
                ],
            },
        ],
    }
    out, req = translate("anthropic", "openai", body)
    assert out["messages"][2:] == [
        {"role": "tool", "tool_call_id": "t1", "content": "Error: partial"},
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                {"type": "text", "text": "what now?"},
            ],
        },
    ]
    assert req.ctx.warnings == ["tool-result media moved into a user message for an OpenAI model"]


def test_limits_other_vendors_cannot_honour() -> None:
    with pytest.raises(InvalidRequest) as caught:
        translate(
            "gemini",
            "openai",
            {
                "contents": [{"parts": [{"text": "x"}]}],
                "generationConfig": {"stopSequences": list("abcde")},
            },
        )
    assert caught.value.param == "stop"
    with pytest.raises(InvalidRequest) as caught:
        translate("openai", "anthropic", {**BASE, "n": 2})
    assert caught.value.param == "n"
    with pytest.raises(InvalidRequest) as caught:
        translate("openai", "anthropic", {**BASE, "logprobs": True})
    assert caught.value.param == "logprobs"


def test_legacy_max_tokens_field_for_compatible_vendors() -> None:
    out, _ = translate(
        "anthropic",
        "openai",
        {"model": "c", "max_tokens": 9, "messages": []},
        openai_max_tokens_field="max_tokens",
    )
    assert out["max_tokens"] == 9 and "max_completion_tokens" not in out


def test_rewrite_model_always_asks_streams_for_usage() -> None:
    stream = {**BASE, "stream": True, "stream_options": {"include_obfuscation": False}}
    assert codec.rewrite_model(stream, "gpt-up") == {
        **BASE,
        "model": "gpt-up",
        "stream": True,
        "stream_options": {"include_obfuscation": False, "include_usage": True},
    }
    assert codec.rewrite_model(BASE, "gpt-up") == {**BASE, "model": "gpt-up"}


@pytest.mark.parametrize("asked", [True, False])
def test_usage_sniffer_strips_the_usage_chunk_the_client_did_not_ask_for(asked: bool) -> None:
    body = {**BASE, "stream": True, "stream_options": {"include_usage": asked}}
    sniffer = codec.CODEC.usage_sniffer(body)
    kept = [data for event, data in OPENAI_STREAM if sniffer.feed(event, data)]
    assert len(kept) == (len(OPENAI_STREAM) if asked else len(OPENAI_STREAM) - 1)
    assert kept[-1] == "[DONE]"
    assert sniffer.usage == Usage(
        input_tokens=31, cache_read_tokens=1800, output_tokens=96, reasoning_tokens=40
    )
    assert codec.sniff_usage(OPENAI_RESPONSE) == sniffer.usage
