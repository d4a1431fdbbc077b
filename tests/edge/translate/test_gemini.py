"""The Gemini codec on its own: request validation, both casings, count-token forms,
passthrough helpers, usage sniffing."""

from __future__ import annotations

from typing import Any

import pytest

from bytespike_common.errors import InvalidRequest
from bytespike_edge.translate import gemini as codec
from bytespike_edge.translate.ir import (
    ReasoningMode,
    ResponseFormatType,
    ToolCallPart,
    ToolChoiceMode,
    ToolResultPart,
    Usage,
)
from tests.edge.translate.fixtures import GEMINI_RESPONSE, GEMINI_STREAM
from tests.edge.translate.helpers import translate

BASE: dict[str, Any] = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}


@pytest.mark.parametrize(
    ("body", "param", "message"),
    [
        ({}, "contents", "contents: field required"),
        (
            {"contents": [{"role": "system", "parts": []}]},
            "contents[0].role",
            "contents[0].role: must be one of user, model, function; got 'system'",
        ),
        (
            {"contents": [{"parts": {"text": "x"}}]},
            "contents[0].parts",
            "contents[0].parts: expected an array",
        ),
        (
            {"contents": [{"parts": [{"functionCall": {"args": {}}}]}]},
            "contents[0].parts[0].functionCall.name",
            "contents[0].parts[0].functionCall.name: field required",
        ),
        (
            {"contents": [{"parts": [{"inlineData": {"data": "x"}}]}]},
            "contents[0].parts[0].inlineData.mimeType",
            "contents[0].parts[0].inlineData.mimeType: field required",
        ),
        (
            {**BASE, "generationConfig": {"temperature": "hot"}},
            "generationConfig.temperature",
            "generationConfig.temperature: expected a number",
        ),
        (
            {**BASE, "generationConfig": {"maxOutputTokens": 0}},
            "generationConfig.maxOutputTokens",
            "generationConfig.maxOutputTokens: must be >= 1",
        ),
        (
            {**BASE, "toolConfig": {"functionCallingConfig": {"mode": "SOMETIMES"}}},
            "toolConfig.functionCallingConfig.mode",
            "toolConfig.functionCallingConfig.mode: must be one of MODE_UNSPECIFIED, AUTO, ANY, NONE, VALIDATED; got 'SOMETIMES'",
        ),
        (
            {**BASE, "generationConfig": {"responseMimeType": "text/x.enum"}},
            "generationConfig.responseMimeType",
            "generationConfig.responseMimeType: 'text/x.enum' needs a response schema",
        ),
        (
            {**BASE, "tools": [{"functionDeclarations": [{"description": "d"}]}]},
            "tools[0].functionDeclarations[0].name",
            "tools[0].functionDeclarations[0].name: field required",
        ),
    ],
)
def test_invalid_requests_name_the_field(body: dict[str, Any], param: str, message: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        codec.decode_request(body)
    assert (caught.value.param, caught.value.message) == (param, message)


def test_snake_case_is_read_like_camel_case() -> None:
    body = {
        "contents": [{"role": "user", "parts": [{"text": "x"}]}],
        "system_instruction": {"parts": [{"text": "S"}]},
        "tool_config": {
            "function_calling_config": {"mode": "ANY", "allowed_function_names": ["a", "b"]}
        },
        "tools": [{"function_declarations": [{"name": "a"}, {"name": "b"}]}],
        "generation_config": {
            "max_output_tokens": 7,
            "response_mime_type": "application/json",
            "thinking_config": {"thinking_budget": -1, "include_thoughts": True},
        },
    }
    req = codec.decode_request(body)
    assert [p.text for p in req.system] == ["S"]
    assert req.tool_choice is not None and (req.tool_choice.mode, req.tool_choice.allowed) == (
        ToolChoiceMode.ANY,
        ["a", "b"],
    )
    assert req.params.max_tokens == 7
    assert (
        req.response_format is not None
        and req.response_format.type is ResponseFormatType.JSON_OBJECT
    )
    assert req.reasoning is not None and req.reasoning.mode is ReasoningMode.ADAPTIVE
    assert req.ctx.include_thoughts is True


def test_function_responses_pair_with_calls() -> None:
    body = {
        "contents": [
            {"role": "model", "parts": [{"functionCall": {"name": "a", "args": {}, "id": "g-1"}}]},
            {
                "role": "function",
                "parts": [
                    {
                        "functionResponse": {
                            "name": "a",
                            "id": "g-1",
                            "response": {"error": {"code": 1}},
                        }
                    },
                    {"functionResponse": {"name": "zzz", "response": {}}},
                ],
            },
        ]
    }
    req = codec.decode_request(body)
    call, results = req.messages[0].parts[0], req.messages[1].parts
    assert isinstance(call, ToolCallPart) and call.id == "g-1"
    first, orphan = results
    assert isinstance(first, ToolResultPart) and isinstance(orphan, ToolResultPart)
    assert (first.call_id, first.is_error, first.content[0].text) == ("g-1", True, '{"code":1}')  # type: ignore[union-attr]
    assert (orphan.call_id, orphan.content) == ("call_2", [])


def test_history_starting_with_the_model_gets_a_user_turn_first() -> None:
    body = {
        "contents": [
            {"role": "model", "parts": [{"text": "Hello!"}]},
            {"role": "user", "parts": [{"text": "hi"}]},
        ]
    }
    out, _ = translate("gemini", "anthropic", body)
    assert [m["role"] for m in out["messages"]] == ["user", "assistant", "user"]


def test_count_tokens_forms_are_exclusive() -> None:
    with pytest.raises(InvalidRequest) as caught:
        codec.decode_count_tokens({**BASE, "generateContentRequest": BASE})
    assert caught.value.param == "contents"


def test_gemini_only_content_is_refused_by_other_vendors() -> None:
    body = {
        "contents": [
            {"role": "model", "parts": [{"executableCode": {"language": "PYTHON", "code": "1"}}]}
        ]
    }
    with pytest.raises(InvalidRequest, match="gemini-only content"):
        translate("gemini", "anthropic", body)
    with pytest.raises(InvalidRequest, match="explicit context caches"):
        translate("gemini", "openai", {**BASE, "cachedContent": "cachedContents/abc"})


def test_tool_result_without_a_call_cannot_reach_gemini() -> None:
    body = {"model": "m", "messages": [{"role": "tool", "tool_call_id": "ghost", "content": "x"}]}
    with pytest.raises(InvalidRequest, match="answers no tool call"):
        translate("openai", "gemini", body)


def test_rewrite_model_only_touches_count_tokens_requests() -> None:
    assert codec.rewrite_model(BASE, "gemini-up") is BASE
    wrapped = {"generateContentRequest": {"model": "models/alias", **BASE}}
    assert codec.rewrite_model(wrapped, "gemini-up") == {
        "generateContentRequest": {"model": "models/gemini-up", **BASE}
    }


def test_usage_sniffers_take_the_last_chunk() -> None:
    expected = Usage(input_tokens=31, cache_read_tokens=1800, output_tokens=96, reasoning_tokens=40)
    assert codec.sniff_usage(GEMINI_RESPONSE) == expected
    sniffer = codec.CODEC.usage_sniffer(BASE)
    assert all(sniffer.feed(event, data) for event, data in GEMINI_STREAM)
    assert sniffer.usage == expected
