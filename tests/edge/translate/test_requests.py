"""Request translation for the nine client -> upstream pairs: exact upstream bodies.

Reference §11 cases 9-12 (basic generation) and same-protocol fidelity; tools are in
test_requests_tools.py, media in test_requests_media.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from bytespike_common.errors import InvalidRequest
from tests.edge.translate.helpers import gemini_valid, translate

# --- basic generation ----------------------------------------------------------------------


def test_case_9_anthropic_to_openai_text() -> None:
    body = {
        "model": "claude-x",
        "max_tokens": 512,
        "system": "You are terse.",
        "messages": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": [{"type": "text", "text": "Weather?"}]},
        ],
        "temperature": 0.5,
        "stop_sequences": ["END"],
        "metadata": {"user_id": "u-1"},
        "stream": True,
    }
    out, _ = translate("anthropic", "openai", body)
    assert out == {
        "model": "up-model",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": "Weather?"},
        ],
        "max_completion_tokens": 512,
        "temperature": 0.5,
        "stop": ["END"],
        "stream": True,
        "stream_options": {"include_usage": True},
        "user": "u-1",
    }


def test_case_10_openai_to_anthropic_hoists_system_and_injects_max_tokens() -> None:
    body = {
        "model": "gpt-x",
        "messages": [
            {"role": "system", "content": "Rule 1."},
            {"role": "developer", "content": [{"type": "text", "text": "Rule 2."}]},
            {"role": "user", "content": "Hi"},
            {"role": "system", "content": "Rule 3."},
        ],
        "temperature": 1.5,
        "top_p": 0.9,
    }
    out, req = translate("openai", "anthropic", body, default_max_tokens=32000)
    assert out == {
        "model": "up-model",
        "max_tokens": 32000,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
        "system": [
            {"type": "text", "text": "Rule 1."},
            {"type": "text", "text": "Rule 2."},
            {"type": "text", "text": "Rule 3."},
        ],
        "temperature": 1.0,
    }
    assert req.ctx.warnings == [
        "top_p dropped: Anthropic models take temperature or top_p, not both"
    ]


def test_case_11_gemini_to_anthropic() -> None:
    body = {
        "systemInstruction": {"parts": [{"text": "Be kind."}]},
        "contents": [
            {"role": "user", "parts": [{"text": "Hi"}]},
            {"role": "model", "parts": [{"text": "Hello"}]},
            {"parts": [{"text": "More"}]},
        ],
        "generationConfig": {"maxOutputTokens": 300, "topK": 40},
    }
    out, _ = translate("gemini", "anthropic", body)
    assert out == {
        "model": "up-model",
        "max_tokens": 300,
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "Hello"}]},
            {"role": "user", "content": [{"type": "text", "text": "More"}]},
        ],
        "system": "Be kind.",
        "top_k": 40,
    }


def test_case_12_anthropic_to_gemini_stop_sequences() -> None:
    body = {
        "model": "claude-x",
        "max_tokens": 100,
        "system": [{"type": "text", "text": "Sys."}],
        "messages": [{"role": "user", "content": "Count."}],
        "stop_sequences": ["\n\nHuman:"],
        "temperature": 0.2,
    }
    out, _ = translate("anthropic", "gemini", body)
    assert out == {
        "contents": [{"role": "user", "parts": [{"text": "Count."}]}],
        "systemInstruction": {"parts": [{"text": "Sys."}]},
        "generationConfig": {
            "maxOutputTokens": 100,
            "temperature": 0.2,
            "stopSequences": ["\n\nHuman:"],
        },
    }
    gemini_valid(out)


def test_openai_to_gemini_and_gemini_to_openai_params() -> None:
    body = {
        "model": "gpt-x",
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": 50,
        "n": 2,
        "seed": 7,
        "presence_penalty": 0.5,
        "frequency_penalty": -0.5,
        "stop": "STOP",
        "logprobs": True,
        "top_logprobs": 3,
    }
    out, _ = translate("openai", "gemini", body)
    assert out == {
        "contents": [{"role": "user", "parts": [{"text": "Hi"}]}],
        "generationConfig": {
            "maxOutputTokens": 50,
            "candidateCount": 2,
            "presencePenalty": 0.5,
            "frequencyPenalty": -0.5,
            "seed": 7,
            "responseLogprobs": True,
            "logprobs": 3,
            "stopSequences": ["STOP"],
        },
    }
    gemini_valid(out)
    back, _ = translate("gemini", "openai", out)
    assert back == {
        "model": "up-model",
        "messages": [{"role": "user", "content": "Hi"}],
        "max_completion_tokens": 50,
        "stop": ["STOP"],
        "n": 2,
        "seed": 7,
        "presence_penalty": 0.5,
        "frequency_penalty": -0.5,
        "logprobs": True,
        "top_logprobs": 3,
    }


# --- same-protocol pairs keep protocol-only fields -----------------------------------------


def test_anthropic_to_anthropic_keeps_everything() -> None:
    body: dict[str, Any] = {
        "model": "claude-x",
        "max_tokens": 4096,
        "system": [{"type": "text", "text": "S", "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {"role": "user", "content": "Search"},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "t", "signature": "EpIB"},
                    {
                        "type": "server_tool_use",
                        "id": "srvtoolu_1",
                        "name": "web_search",
                        "input": {"query": "q"},
                    },
                    {"type": "tool_use", "id": "toolu_1", "name": "calc", "input": {"x": 1}},
                ],
            },
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "2"}],
            },
        ],
        "tools": [
            {"type": "web_search_20250305", "name": "web_search"},
            {
                "name": "calc",
                "input_schema": {"type": "object", "properties": {"x": {"type": "number"}}},
            },
        ],
        "thinking": {"type": "enabled", "budget_tokens": 2048},
        "service_tier": "auto",
    }
    out, _ = translate("anthropic", "anthropic", body)
    assert out == {
        "model": "up-model",
        "max_tokens": 4096,
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Search"}]},
            body["messages"][1],
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "2"}],
            },
        ],
        "system": [{"type": "text", "text": "S", "cache_control": {"type": "ephemeral"}}],
        "tools": [body["tools"][1], body["tools"][0]],
        "thinking": {"type": "enabled", "budget_tokens": 2048},
        "service_tier": "auto",
    }


def test_openai_to_openai_keeps_extras_and_tool_history() -> None:
    body = {
        "model": "gpt-x",
        "messages": [
            {"role": "user", "content": "Hi"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "f", "arguments": "{}"},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "ok"},
        ],
        "tools": [{"type": "function", "function": {"name": "f"}}],
        "store": False,
        "logit_bias": {"50256": -100},
        "metadata": {"team": "a"},
        "parallel_tool_calls": True,
    }
    out, _ = translate("openai", "openai", body)
    assert out == {
        "model": "up-model",
        "messages": body["messages"],
        "tools": body["tools"],
        "parallel_tool_calls": True,
        "metadata": {"team": "a"},
        "store": False,
        "logit_bias": {"50256": -100},
    }


def test_gemini_to_gemini_keeps_signatures_builtin_tools_and_extras() -> None:
    body = {
        "contents": [
            {"role": "user", "parts": [{"text": "Weather?"}]},
            {
                "role": "model",
                "parts": [
                    {"functionCall": {"name": "w", "args": {}}, "thoughtSignature": "Q2lRQg=="}
                ],
            },
            {
                "role": "user",
                "parts": [{"functionResponse": {"name": "w", "response": {"output": "sun"}}}],
            },
        ],
        "tools": [{"functionDeclarations": [{"name": "w"}]}, {"googleSearch": {}}],
        "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}],
        "generationConfig": {"responseModalities": ["TEXT"], "temperature": 0.1},
    }
    out, _ = translate("gemini", "gemini", body)
    assert out == {
        "contents": body["contents"],
        "tools": body["tools"],
        "generationConfig": {"temperature": 0.1, "responseModalities": ["TEXT"]},
        "safetySettings": body["safetySettings"],
    }
    gemini_valid(out)


def test_extras_of_another_protocol_are_dropped_with_a_warning() -> None:
    body = {"model": "gpt-x", "messages": [{"role": "user", "content": "Hi"}], "store": True}
    out, req = translate("openai", "anthropic", body)
    assert "store" not in out
    assert req.ctx.warnings == ["store dropped: no anthropic equivalent"]


def test_unportable_extras_are_refused() -> None:
    body = {
        "model": "gpt-x",
        "messages": [{"role": "user", "content": "Hi"}],
        "audio": {"voice": "x"},
    }
    with pytest.raises(InvalidRequest) as caught:
        translate("openai", "gemini", body)
    assert caught.value.param == "audio"
