"""The Anthropic codec on its own: request validation, passthrough helpers, usage sniffing."""

from __future__ import annotations

from typing import Any

import pytest

from bytespike_common.errors import InvalidRequest
from bytespike_edge.translate import anthropic as codec
from bytespike_edge.translate.ir import (
    OpaquePart,
    RedactedThinkingPart,
    Signature,
    TextPart,
    ThinkingPart,
    ToolResultPart,
    Usage,
    WireProtocol,
)
from tests.edge.translate.fixtures import ANTHROPIC_RESPONSE, ANTHROPIC_STREAM
from tests.edge.translate.helpers import translate

BASE: dict[str, Any] = {
    "model": "claude-x",
    "max_tokens": 64,
    "messages": [{"role": "user", "content": "hi"}],
}


@pytest.mark.parametrize(
    ("body", "param", "message"),
    [
        ({"max_tokens": 5, "messages": []}, "model", "model: field required"),
        ({"model": "m", "messages": []}, "max_tokens", "max_tokens: field required"),
        ({**BASE, "max_tokens": "64"}, "max_tokens", "max_tokens: expected an integer"),
        ({**BASE, "max_tokens": True}, "max_tokens", "max_tokens: expected an integer"),
        ({**BASE, "max_tokens": -1}, "max_tokens", "max_tokens: must be >= 0"),
        ({**BASE, "messages": {}}, "messages", "messages: expected an array"),
        ({**BASE, "messages": ["hi"]}, "messages[0]", "messages[0]: expected an object"),
        (
            {**BASE, "messages": [{"role": "bot", "content": "x"}]},
            "messages[0].role",
            "messages[0].role: must be one of user, assistant, system; got 'bot'",
        ),
        (
            {**BASE, "messages": [{"role": "user"}]},
            "messages[0].content",
            "messages[0].content: field required",
        ),
        (
            {**BASE, "messages": [{"role": "user", "content": [{"text": "x"}]}]},
            "messages[0].content[0].type",
            "messages[0].content[0].type: field required",
        ),
        (
            {**BASE, "messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]},
            "messages[0].content[0].text",
            "messages[0].content[0].text: expected a string",
        ),
        (
            {
                **BASE,
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image", "source": {"type": "base64", "data": "x"}}],
                    }
                ],
            },
            "messages[0].content[0].source.media_type",
            "messages[0].content[0].source.media_type: field required",
        ),
        ({**BASE, "temperature": 1.5}, "temperature", "temperature: must be between 0.0 and 1.0"),
        (
            {**BASE, "tool_choice": {"type": "sometimes"}},
            "tool_choice.type",
            "tool_choice.type: must be one of auto, any, tool, none; got 'sometimes'",
        ),
        (
            {**BASE, "tool_choice": {"type": "tool"}},
            "tool_choice.name",
            "tool_choice.name: field required",
        ),
        (
            {**BASE, "thinking": {"type": "enabled"}},
            "thinking.budget_tokens",
            "thinking.budget_tokens: field required",
        ),
        (
            {**BASE, "tools": [{"input_schema": {}}]},
            "tools[0].name",
            "tools[0].name: field required",
        ),
        (
            {**BASE, "system": [{"type": "image"}]},
            "system[0].type",
            "system[0].type: must be one of text; got 'image'",
        ),
        (
            {**BASE, "stop_sequences": ["a", 1]},
            "stop_sequences[1]",
            "stop_sequences[1]: expected a string",
        ),
        (
            {**BASE, "output_config": {"format": {"type": "json_schema"}}},
            "output_config.format.schema",
            "output_config.format.schema: field required",
        ),
    ],
)
def test_invalid_requests_name_the_field(body: dict[str, Any], param: str, message: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        codec.decode_request(body)
    assert (caught.value.param, caught.value.message) == (param, message)


def test_count_tokens_needs_no_max_tokens() -> None:
    req = codec.decode_count_tokens({"model": "m", "messages": [{"role": "user", "content": "x"}]})
    assert req.params.max_tokens is None


def test_decoded_ir() -> None:
    body = {
        **BASE,
        "messages": [
            {"role": "system", "content": "hoisted"},
            {"role": "user", "content": "q"},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "t", "signature": "gw1:gemini:U2ln"},
                    {"type": "redacted_thinking", "data": "opaque"},
                    {"type": "tool_use", "id": "toolu_1", "name": "calc", "input": {"x": 1}},
                    {"type": "server_tool_use", "id": "srv_1", "name": "web_search", "input": {}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_1",
                        "content": [
                            {
                                "type": "search_result",
                                "title": "T",
                                "content": [{"type": "text", "text": "body"}],
                            }
                        ],
                    }
                ],
            },
        ],
    }
    req = codec.decode_request(body)
    assert req.system == [TextPart("hoisted")]
    assert req.messages[1].parts[:2] == [
        ThinkingPart("t", Signature(WireProtocol.GEMINI, "U2ln")),
        RedactedThinkingPart("opaque"),
    ]
    assert isinstance(req.messages[1].parts[3], OpaquePart)
    assert req.messages[2].parts == [ToolResultPart("toolu_1", [TextPart("T\nbody")], name="calc")]


def test_anthropic_only_content_is_refused_by_other_vendors() -> None:
    body = {
        **BASE,
        "messages": [
            {"role": "user", "content": "q"},
            {
                "role": "assistant",
                "content": [
                    {"type": "server_tool_use", "id": "srv_1", "name": "web_search", "input": {}}
                ],
            },
        ],
    }
    for upstream in ("openai", "gemini"):
        with pytest.raises(InvalidRequest, match="anthropic-only content"):
            translate("anthropic", upstream, body)


def test_server_tools_refused_or_dropped_for_other_vendors() -> None:
    body = {**BASE, "tools": [{"type": "web_search_20250305", "name": "web_search"}]}
    with pytest.raises(
        InvalidRequest, match="anthropic hosted tools cannot run on an OpenAI model"
    ):
        translate("anthropic", "openai", body)
    out, req = translate("anthropic", "openai", body, drop_builtin_tools=True)
    assert "tools" not in out
    assert req.ctx.warnings == ["anthropic hosted tool dropped for an OpenAI model"]


def test_rewrite_model_strips_gateway_tagged_thinking() -> None:
    body = {
        **BASE,
        "messages": [
            {"role": "user", "content": "q"},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "foreign", "signature": "gw1:gemini:U2ln"},
                    {"type": "thinking", "thinking": "unsigned", "signature": ""},
                    {"type": "thinking", "thinking": "own", "signature": "EpIB"},
                    {"type": "text", "text": "a"},
                ],
            },
        ],
    }
    out = codec.rewrite_model(body, "claude-upstream")
    assert out["model"] == "claude-upstream"
    assert out["messages"][1]["content"] == [
        {"type": "thinking", "thinking": "own", "signature": "EpIB"},
        {"type": "text", "text": "a"},
    ]
    assert body["model"] == "claude-x" and len(body["messages"][1]["content"]) == 4


def test_rewrite_model_leaves_clean_bodies_alone() -> None:
    out = codec.rewrite_model(BASE, "up")
    assert out == {**BASE, "model": "up"}
    assert out["messages"] is BASE["messages"]


def test_usage_sniffers() -> None:
    expected = Usage(input_tokens=31, cache_read_tokens=1800, output_tokens=96, reasoning_tokens=40)
    assert codec.sniff_usage(ANTHROPIC_RESPONSE) == expected
    sniffer = codec.CODEC.usage_sniffer(BASE)
    assert all(sniffer.feed(event, data) for event, data in ANTHROPIC_STREAM)
    assert sniffer.usage == expected
