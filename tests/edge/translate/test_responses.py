"""Non-streaming response translation for the nine upstream → client pairs: exact client
bodies, each parsed by the client's official SDK. Reference cases 9-12, 15, 19, 20, 31, 32, 48."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest

from bytespike_common.errors import GatewayError
from bytespike_edge.translate.context import TranslationContext
from bytespike_edge.translate.ir import WireProtocol
from bytespike_edge.translate.registry import codec_for
from tests.edge.translate import sdk
from tests.edge.translate.fixtures import (
    A_SIG,
    ANTHROPIC_RESPONSE,
    G_SIG,
    GEMINI_RESPONSE,
    OPENAI_RESPONSE,
)
from tests.edge.translate.helpers import respond, translate

USAGE_A = {
    "input_tokens": 31,
    "cache_creation_input_tokens": 0,
    "cache_read_input_tokens": 1800,
    "output_tokens": 96,
    "output_tokens_details": {"thinking_tokens": 40},
}
USAGE_O = {
    "prompt_tokens": 1831,
    "completion_tokens": 96,
    "total_tokens": 1927,
    "prompt_tokens_details": {"cached_tokens": 1800},
    "completion_tokens_details": {"reasoning_tokens": 40},
}
USAGE_G = {
    "promptTokenCount": 1831,
    "cachedContentTokenCount": 1800,
    "candidatesTokenCount": 56,
    "thoughtsTokenCount": 40,
    "totalTokenCount": 1927,
}


def ctx(client: str) -> TranslationContext:
    return TranslationContext(client=WireProtocol(client))


def openai_body(upstream: str, body: dict[str, Any]) -> dict[str, Any]:
    out = respond(upstream, "openai", body)
    assert isinstance(out.pop("created"), int)
    sdk.openai_completion({**out, "created": 1})
    return out


# --- Anthropic upstream --------------------------------------------------------------------


def test_anthropic_to_anthropic() -> None:
    out = respond("anthropic", "anthropic", ANTHROPIC_RESPONSE)
    assert out == {**ANTHROPIC_RESPONSE, "model": "client-model", "usage": USAGE_A}
    message = sdk.anthropic_message(out)
    assert message.content[0].type == "thinking"
    assert message.content[0].signature == A_SIG


def test_anthropic_to_openai() -> None:
    assert openai_body("anthropic", ANTHROPIC_RESPONSE) == {
        "id": "chatcmpl-msg_01A2b3C4d5",
        "object": "chat.completion",
        "model": "client-model",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Let me check.",
                    "refusal": None,
                    "tool_calls": [
                        {
                            "id": "toolu_01Q",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
                        }
                    ],
                },
                "logprobs": None,
                "finish_reason": "tool_calls",
            }
        ],
        "usage": USAGE_O,
    }


def test_anthropic_to_gemini() -> None:
    out = respond("anthropic", "gemini", ANTHROPIC_RESPONSE)
    assert out == {
        "candidates": [
            {
                "content": {
                    "role": "model",
                    "parts": [
                        {"text": "Let me check."},
                        {
                            "functionCall": {
                                "name": "get_weather",
                                "args": {"city": "Oslo"},
                                "id": "toolu_01Q",
                            }
                        },
                    ],
                },
                "finishReason": "STOP",
                "index": 0,
            }
        ],
        "usageMetadata": USAGE_G,
        "modelVersion": "client-model",
        "responseId": "msg_01A2b3C4d5",
    }
    parsed = sdk.gemini_response(out)
    assert parsed.function_calls is not None
    assert parsed.function_calls[0].args == {"city": "Oslo"}


def test_anthropic_thinking_reaches_gemini_clients_that_asked() -> None:
    context = ctx("gemini")
    context.include_thoughts = True
    resp = codec_for("anthropic").decode_response(ANTHROPIC_RESPONSE, context)
    parts = codec_for("gemini").encode_response(resp, "m", context)["candidates"][0]["content"][
        "parts"
    ]
    # The Anthropic signature never goes to a Gemini client.
    assert parts[0] == {"text": "Need the forecast first.", "thought": True}


@pytest.mark.parametrize(
    ("stop_reason", "openai", "gemini"),
    [
        ("end_turn", "stop", "STOP"),
        ("stop_sequence", "stop", "STOP"),
        ("max_tokens", "length", "MAX_TOKENS"),
        ("refusal", "content_filter", "SAFETY"),
        ("pause_turn", "stop", "OTHER"),
        ("model_context_window_exceeded", "length", "MAX_TOKENS"),
    ],
)
def test_anthropic_stop_reasons(stop_reason: str, openai: str, gemini: str) -> None:
    body = {
        **ANTHROPIC_RESPONSE,
        "content": [{"type": "text", "text": "x"}],
        "stop_reason": stop_reason,
    }
    assert respond("anthropic", "openai", body)["choices"][0]["finish_reason"] == openai
    assert respond("anthropic", "gemini", body)["candidates"][0]["finishReason"] == gemini


def test_stop_sequence_is_echoed_to_anthropic_clients() -> None:
    body = {
        **ANTHROPIC_RESPONSE,
        "stop_reason": "stop_sequence",
        "stop_sequence": "END",
        "content": [],
    }
    out = respond("anthropic", "anthropic", body)
    assert (out["stop_reason"], out["stop_sequence"]) == ("stop_sequence", "END")


# --- OpenAI upstream -----------------------------------------------------------------------


def test_openai_to_anthropic() -> None:
    out = respond("openai", "anthropic", OPENAI_RESPONSE)
    assert out == {
        "id": "msg_chatcmpl-9Ab",
        "type": "message",
        "role": "assistant",
        "model": "client-model",
        "content": [
            {"type": "tool_use", "id": "call_a1", "name": "get_weather", "input": {"city": "Oslo"}},
            {"type": "tool_use", "id": "call_b2", "name": "get_time", "input": {"tz": "CET"}},
        ],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": USAGE_A,
    }
    assert sdk.anthropic_message(out).stop_reason == "tool_use"


def test_openai_to_openai() -> None:
    expected = copy.deepcopy(OPENAI_RESPONSE)
    del expected["created"]
    expected["model"] = "client-model"
    expected["usage"] = USAGE_O
    assert openai_body("openai", OPENAI_RESPONSE) == expected


def test_openai_to_gemini() -> None:
    out = respond("openai", "gemini", OPENAI_RESPONSE)
    assert out["candidates"][0]["content"]["parts"] == [
        {"functionCall": {"name": "get_weather", "args": {"city": "Oslo"}, "id": "call_a1"}},
        {"functionCall": {"name": "get_time", "args": {"tz": "CET"}, "id": "call_b2"}},
    ]
    assert (out["candidates"][0]["finishReason"], out["usageMetadata"]) == ("STOP", USAGE_G)
    sdk.gemini_response(out)


def test_case_15_openai_stop_with_tool_calls_is_tool_use() -> None:
    body = copy.deepcopy(OPENAI_RESPONSE)
    body["choices"][0]["finish_reason"] = "stop"
    assert respond("openai", "anthropic", body)["stop_reason"] == "tool_use"


def test_case_32_malformed_arguments_get_a_defined_fallback() -> None:
    body = copy.deepcopy(OPENAI_RESPONSE)
    body["choices"][0]["message"]["tool_calls"] = [
        {"id": "call_x", "type": "function", "function": {"name": "f", "arguments": '{"a": 1,'}}
    ]
    _, req = translate(
        "anthropic",
        "openai",
        {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]},
    )
    out = respond("openai", "anthropic", body, req)
    assert out["content"] == [
        {"type": "tool_use", "id": "call_x", "name": "f", "input": {"_raw": '{"a": 1,'}}
    ]
    assert req.ctx.warnings == [
        "a tool call's arguments were not a JSON object; passed on under '_raw'"
    ]
    # An OpenAI client gets the original string back untouched.
    assert (
        respond("openai", "openai", body)["choices"][0]["message"]["tool_calls"][0]["function"][
            "arguments"
        ]
        == '{"a": 1,'
    )


def test_openai_refusal_and_reasoning_content() -> None:
    body = copy.deepcopy(OPENAI_RESPONSE)
    body["choices"][0]["message"] = {
        "role": "assistant",
        "content": None,
        "refusal": "I can't.",
        "reasoning_content": "policy",
    }
    body["choices"][0]["finish_reason"] = "stop"
    out = respond("openai", "anthropic", body)
    assert out["content"] == [
        {"type": "thinking", "thinking": "policy", "signature": ""},
        {"type": "text", "text": "I can't."},
    ]
    assert out["stop_reason"] == "refusal"
    sdk.anthropic_message(out)


# --- Gemini upstream -----------------------------------------------------------------------


def test_gemini_to_anthropic_mints_ids_and_tags_nothing_foreign() -> None:
    out = respond(
        "gemini",
        "anthropic",
        GEMINI_RESPONSE,
        translate("anthropic", "anthropic", {"model": "m", "max_tokens": 1, "messages": []})[1],
    )
    first, second = out["content"][1]["id"], out["content"][2]["id"]
    assert re.fullmatch(r"toolu_[0-9a-f]{24}", first) and re.fullmatch(
        r"toolu_[0-9a-f]{24}", second
    )
    assert first != second
    assert out == {
        "id": "msg_f3Qd",
        "type": "message",
        "role": "assistant",
        "model": "client-model",
        "content": [
            # The step signature sits on the functionCall, which A cannot carry: no raw Gemini
            # signature ever lands in an Anthropic field (case 19).
            {"type": "thinking", "thinking": "Need the forecast first.", "signature": ""},
            {"type": "tool_use", "id": first, "name": "get_weather", "input": {"city": "Oslo"}},
            {"type": "tool_use", "id": second, "name": "get_time", "input": {"tz": "CET"}},
        ],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": USAGE_A,
    }
    sdk.anthropic_message(out)


def test_case_19_signature_after_thoughts_is_tagged_for_anthropic_clients() -> None:
    body = copy.deepcopy(GEMINI_RESPONSE)
    body["candidates"][0]["content"]["parts"] = [
        {"text": "Think.", "thought": True},
        {"text": "Answer.", "thoughtSignature": G_SIG},
        {"text": "", "thoughtSignature": "TGF0ZQ=="},
    ]
    out = respond("gemini", "anthropic", body)
    assert out["content"] == [
        {"type": "thinking", "thinking": "Think.", "signature": f"gw1:gemini:{G_SIG}"},
        {"type": "text", "text": "Answer."},
    ]
    assert out["stop_reason"] == "end_turn"


def test_case_20_gemini_to_openai_generates_call_ids() -> None:
    out = openai_body("gemini", GEMINI_RESPONSE)
    calls = out["choices"][0]["message"]["tool_calls"]
    assert [re.fullmatch(r"call_[0-9a-f]{24}", c["id"]) is not None for c in calls] == [True, True]
    assert [c["function"] for c in calls] == [
        {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
        {"name": "get_time", "arguments": '{"tz":"CET"}'},
    ]
    assert (out["choices"][0]["finish_reason"], out["usage"]) == ("tool_calls", USAGE_O)


def test_gemini_to_gemini_keeps_signature_and_adds_no_ids() -> None:
    out = respond("gemini", "gemini", GEMINI_RESPONSE)
    assert out == {
        **GEMINI_RESPONSE,
        "candidates": [
            {
                "content": {
                    "role": "model",
                    "parts": GEMINI_RESPONSE["candidates"][0]["content"]["parts"][1:],
                },
                "finishReason": "STOP",
                "index": 0,
            }
        ],
        "modelVersion": "client-model",
    }
    sdk.gemini_response(out)


def test_case_12_gemini_max_tokens() -> None:
    body = copy.deepcopy(GEMINI_RESPONSE)
    body["candidates"][0] = {
        "content": {"role": "model", "parts": [{"text": "partial"}]},
        "finishReason": "MAX_TOKENS",
    }
    assert respond("gemini", "anthropic", body)["stop_reason"] == "max_tokens"
    assert respond("gemini", "openai", body)["choices"][0]["finish_reason"] == "length"


def test_case_48_blocked_prompt_is_a_refusal() -> None:
    body = {
        "promptFeedback": {"blockReason": "SAFETY"},
        "usageMetadata": {"promptTokenCount": 12},
        "responseId": "r",
    }
    anthropic = respond("gemini", "anthropic", body)
    assert (anthropic["content"], anthropic["stop_reason"]) == ([], "refusal")
    assert anthropic["usage"]["input_tokens"] == 12
    sdk.anthropic_message(anthropic)
    message = openai_body("gemini", body)["choices"][0]
    assert (message["finish_reason"], message["message"]["content"]) == ("content_filter", None)


@pytest.mark.parametrize(
    ("reason", "anthropic"),
    [
        ("SAFETY", "refusal"),
        ("RECITATION", "refusal"),
        ("MALFORMED_FUNCTION_CALL", "end_turn"),
        ("OTHER", "end_turn"),
        ("FINISH_REASON_UNSPECIFIED", "end_turn"),
    ],
)
def test_gemini_finish_reasons(reason: str, anthropic: str) -> None:
    body = copy.deepcopy(GEMINI_RESPONSE)
    body["candidates"][0] = {
        "content": {"role": "model", "parts": [{"text": "x"}]},
        "finishReason": reason,
    }
    assert respond("gemini", "anthropic", body)["stop_reason"] == anthropic


def test_missing_thought_signature_is_the_callers_400() -> None:
    body = copy.deepcopy(GEMINI_RESPONSE)
    body["candidates"][0]["finishReason"] = "MISSING_THOUGHT_SIGNATURE"
    with pytest.raises(GatewayError) as caught:
        codec_for("gemini").decode_response(body)
    assert caught.value.status == 400


def test_case_31_tool_names_are_restored_for_the_client() -> None:
    client = {
        "contents": [{"parts": [{"text": "read"}]}],
        "tools": [{"functionDeclarations": [{"name": "mcp.server:read"}]}],
    }
    upstream, req = translate("gemini", "anthropic", client)
    assert upstream["tools"][0]["name"] == "mcp_server_read"
    answer = {
        **ANTHROPIC_RESPONSE,
        "content": [{"type": "tool_use", "id": "toolu_9", "name": "mcp_server_read", "input": {}}],
    }
    out = respond("anthropic", "gemini", answer, req)
    assert out["candidates"][0]["content"]["parts"] == [
        {"functionCall": {"name": "mcp.server:read", "args": {}, "id": "toolu_9"}}
    ]


def test_upstream_ids_invalid_for_anthropic_clients_are_encoded() -> None:
    body = copy.deepcopy(OPENAI_RESPONSE)
    body["choices"][0]["message"]["tool_calls"] = [
        {
            "id": "functions.read:0",
            "type": "function",
            "function": {"name": "read", "arguments": "{}"},
        }
    ]
    _, req = translate(
        "anthropic",
        "openai",
        {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]},
    )
    out = respond("openai", "anthropic", body, req)
    call_id = out["content"][0]["id"]
    assert re.fullmatch(r"[A-Za-z0-9_-]+", call_id)
    # The next request carries that id back; the OpenAI upstream gets its own id again.
    follow_up = {
        "model": "m",
        "max_tokens": 5,
        "messages": [
            {"role": "user", "content": "x"},
            {"role": "assistant", "content": out["content"]},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": call_id, "content": "ok"}],
            },
        ],
    }
    upstream, _ = translate("anthropic", "openai", follow_up)
    assert upstream["messages"][1]["tool_calls"][0]["id"] == "functions.read:0"
    assert upstream["messages"][2]["tool_call_id"] == "functions.read:0"
