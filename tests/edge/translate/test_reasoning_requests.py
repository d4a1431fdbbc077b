"""Reasoning, signatures, structured output and token counting across pairs.

Reference §11 cases 37, 38, 40, 41 (reasoning), 43, 44 (structured output), 49-50 (count).
"""

from __future__ import annotations

from typing import Any

import pytest

from bytespike_edge.translate import anthropic as anthropic_codec
from bytespike_edge.translate import gemini as gemini_codec
from bytespike_edge.translate.gemini.encode import SKIP_SIGNATURE
from bytespike_edge.translate.registry import codec_for
from tests.edge.translate.helpers import gemini_valid, translate


def test_case_37_anthropic_thinking_to_openai_effort() -> None:
    body = {
        "model": "claude-x",
        "max_tokens": 32000,
        "messages": [{"role": "user", "content": "Prove it."}],
        "thinking": {"type": "enabled", "budget_tokens": 16000},
        "temperature": 1,
    }
    out, req = translate("anthropic", "openai", body)
    assert out == {
        "model": "up-model",
        "messages": [{"role": "user", "content": "Prove it."}],
        "max_completion_tokens": 32000,
        "reasoning_effort": "high",
    }
    assert req.ctx.warnings == ["temperature/top_p dropped: OpenAI reasoning models refuse them"]


@pytest.mark.parametrize(
    ("budget", "effort"), [(1024, "low"), (4096, "medium"), (16000, "high"), (24576, "xhigh")]
)
def test_budget_thresholds(budget: int, effort: str) -> None:
    body = {
        "model": "c",
        "max_tokens": 64000,
        "messages": [{"role": "user", "content": "x"}],
        "thinking": {"type": "enabled", "budget_tokens": budget},
    }
    assert translate("anthropic", "openai", body)[0]["reasoning_effort"] == effort


def test_anthropic_thinking_to_gemini_budget() -> None:
    body = {
        "model": "c",
        "max_tokens": 8000,
        "messages": [{"role": "user", "content": "x"}],
        "thinking": {"type": "enabled", "budget_tokens": 3000},
    }
    out, _ = translate("anthropic", "gemini", body)
    assert out["generationConfig"] == {
        "maxOutputTokens": 8000,
        "thinkingConfig": {"thinkingBudget": 3000, "includeThoughts": True},
    }
    gemini_valid(out)


def test_case_38_openai_effort_to_anthropic_thinking() -> None:
    body = {
        "model": "gpt-x",
        "messages": [{"role": "user", "content": "Think."}],
        "reasoning_effort": "high",
        "max_completion_tokens": 20000,
        "temperature": 0.3,
        "top_p": 0.5,
    }
    out, req = translate("openai", "anthropic", body)
    assert out == {
        "model": "up-model",
        "max_tokens": 20000,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Think."}]}],
        "thinking": {"type": "enabled", "budget_tokens": 16384},
    }
    assert req.ctx.warnings == [
        "temperature/top_p/top_k dropped: Anthropic refuses them with thinking"
    ]


def test_case_38_budget_stays_below_max_tokens() -> None:
    body = {
        "model": "gpt-x",
        "messages": [{"role": "user", "content": "Think."}],
        "reasoning_effort": "xhigh",
        "max_completion_tokens": 5000,
    }
    out, _ = translate("openai", "anthropic", body)
    assert out["thinking"] == {"type": "enabled", "budget_tokens": 4999}


def test_case_38_forced_tool_choice_turns_thinking_off() -> None:
    body = {
        "model": "gpt-x",
        "messages": [{"role": "user", "content": "Call it."}],
        "reasoning_effort": "high",
        "tools": [{"type": "function", "function": {"name": "f"}}],
        "tool_choice": "required",
    }
    out, req = translate("openai", "anthropic", body, default_max_tokens=32000)
    assert "thinking" not in out
    assert out["tool_choice"] == {"type": "any"}
    assert req.ctx.warnings == [
        "thinking disabled: Anthropic cannot think while tool_choice forces a tool"
    ]


@pytest.mark.parametrize(
    ("effort", "config"),
    [
        ("none", {"thinkingBudget": 0}),
        ("minimal", {"thinkingBudget": 0}),
        ("low", {"thinkingBudget": 2048}),
        ("high", {"thinkingBudget": 16384}),
        ("max", {"thinkingBudget": 24576}),
    ],
)
def test_openai_effort_to_gemini(effort: str, config: dict[str, Any]) -> None:
    body = {
        "model": "g",
        "messages": [{"role": "user", "content": "x"}],
        "reasoning_effort": effort,
    }
    out, _ = translate("openai", "gemini", body)
    assert out["generationConfig"] == {"thinkingConfig": config}


def test_gemini_thinking_config_to_openai_and_anthropic() -> None:
    body = {
        "contents": [{"parts": [{"text": "x"}]}],
        "generationConfig": {
            "maxOutputTokens": 30000,
            "thinkingConfig": {"thinkingBudget": 8192, "includeThoughts": True},
        },
    }
    assert translate("gemini", "openai", body)[0]["reasoning_effort"] == "high"
    assert translate("gemini", "anthropic", body)[0]["thinking"] == {
        "type": "enabled",
        "budget_tokens": 8192,
    }
    level = {
        "contents": [{"parts": [{"text": "x"}]}],
        "generationConfig": {"thinkingConfig": {"thinkingLevel": "LOW"}},
    }
    assert translate("gemini", "openai", level)[0]["reasoning_effort"] == "low"


A_HISTORY_WITH_THINKING = {
    "model": "claude-x",
    "max_tokens": 4096,
    "messages": [
        {"role": "user", "content": "Weather in Oslo and Rome?"},
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "Need two calls.", "signature": "EpIBanthropic"},
                {"type": "tool_use", "id": "toolu_1", "name": "w", "input": {"c": "Oslo"}},
                {"type": "tool_use", "id": "toolu_2", "name": "w", "input": {"c": "Rome"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sun"},
                {"type": "tool_result", "tool_use_id": "toolu_2", "content": "rain"},
            ],
        },
        {
            "role": "assistant",
            "content": [
                {
                    "type": "thinking",
                    "thinking": "Now the forecast.",
                    "signature": "gw1:gemini:Z2VtaW5pLXNpZw==",
                },
                {"type": "tool_use", "id": "toolu_3", "name": "f", "input": {}},
            ],
        },
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "toolu_3", "content": "warm"}],
        },
    ],
    "thinking": {"type": "enabled", "budget_tokens": 2048},
}


def test_case_40_anthropic_history_to_gemini_never_leaks_signatures() -> None:
    out, _ = translate("anthropic", "gemini", A_HISTORY_WITH_THINKING)
    assert out["contents"] == [
        {"role": "user", "parts": [{"text": "Weather in Oslo and Rome?"}]},
        {
            "role": "model",
            "parts": [
                {
                    "functionCall": {"name": "w", "args": {"c": "Oslo"}},
                    "thoughtSignature": SKIP_SIGNATURE,
                },
                {"functionCall": {"name": "w", "args": {"c": "Rome"}}},
            ],
        },
        {
            "role": "user",
            "parts": [
                {"functionResponse": {"name": "w", "response": {"output": "sun"}}},
                {"functionResponse": {"name": "w", "response": {"output": "rain"}}},
            ],
        },
        {
            "role": "model",
            "parts": [
                # The gateway-tagged Gemini signature is restored for Gemini, raw.
                {
                    "text": "Now the forecast.",
                    "thought": True,
                    "thoughtSignature": "Z2VtaW5pLXNpZw==",
                },
                {"functionCall": {"name": "f", "args": {}}, "thoughtSignature": SKIP_SIGNATURE},
            ],
        },
        {
            "role": "user",
            "parts": [{"functionResponse": {"name": "f", "response": {"output": "warm"}}}],
        },
    ]
    assert "EpIBanthropic" not in str(out)
    gemini_valid(out)


def test_anthropic_upstream_strips_foreign_thinking_and_disables_thinking_mid_loop() -> None:
    out, req = translate("anthropic", "anthropic", A_HISTORY_WITH_THINKING)
    assert "thinking" not in out
    assert all(b["type"] != "thinking" for m in out["messages"] for b in m["content"])
    assert req.ctx.warnings == [
        "thinking disabled: the tool loop in progress carries no Anthropic thinking block"
    ]


def test_case_41_gemini_history_to_anthropic_with_thinking() -> None:
    body = {
        "contents": [
            {"role": "user", "parts": [{"text": "Weather?"}]},
            {
                "role": "model",
                "parts": [
                    {
                        "text": "thinking about it",
                        "thought": True,
                        "thoughtSignature": "CiQBthought",
                    },
                    {"functionCall": {"name": "w", "args": {}}, "thoughtSignature": "CiQBcall"},
                ],
            },
            {
                "role": "user",
                "parts": [{"functionResponse": {"name": "w", "response": {"output": "sun"}}}],
            },
        ],
        "generationConfig": {"maxOutputTokens": 8000, "thinkingConfig": {"thinkingBudget": 4096}},
    }
    out, _ = translate("gemini", "anthropic", body)
    assert out == {
        "model": "up-model",
        "max_tokens": 8000,
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Weather?"}]},
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "call_1", "name": "w", "input": {}}],
            },
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "call_1", "content": "sun"}],
            },
        ],
    }


def test_case_43_openai_json_schema_to_gemini_and_anthropic() -> None:
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "string"}, "meta": {"type": "object", "properties": {}}},
    }
    body = {
        "model": "gpt-x",
        "messages": [{"role": "user", "content": "JSON please"}],
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "reply", "schema": schema, "strict": True},
        },
    }
    gemini, _ = translate("openai", "gemini", body)
    assert gemini["generationConfig"] == {
        "responseMimeType": "application/json",
        "responseJsonSchema": schema,
    }
    gemini_valid(gemini)
    anthropic, _ = translate("openai", "anthropic", body)
    assert anthropic["output_config"] == {
        "format": {
            "type": "json_schema",
            "schema": {
                "type": "object",
                "properties": {
                    "answer": {"type": "string"},
                    "meta": {"type": "object", "properties": {}, "additionalProperties": False},
                },
                "additionalProperties": False,
            },
        }
    }


def test_json_object_mode() -> None:
    body = {
        "model": "gpt-x",
        "messages": [{"role": "user", "content": "x"}],
        "response_format": {"type": "json_object"},
    }
    assert translate("openai", "gemini", body)[0]["generationConfig"] == {
        "responseMimeType": "application/json"
    }
    anthropic = translate("openai", "anthropic", body)[0]
    assert anthropic["system"] == "Respond with a single valid JSON object and nothing else."


def test_case_44_gemini_response_schema_to_openai() -> None:
    body = {
        "contents": [{"parts": [{"text": "x"}]}],
        "generationConfig": {
            "responseMimeType": "application/json",
            "responseSchema": {
                "type": "OBJECT",
                "properties": {
                    "name": {"type": "STRING", "nullable": True},
                    "n": {"type": "INTEGER"},
                },
                "required": ["n"],
            },
        },
    }
    out, _ = translate("gemini", "openai", body)
    assert out["response_format"] == {
        "type": "json_schema",
        "json_schema": {
            "name": "response",
            "schema": {
                "type": "object",
                "properties": {"name": {"type": ["string", "null"]}, "n": {"type": "integer"}},
                "required": ["n"],
            },
        },
    }


def test_anthropic_count_tokens_to_gemini_count_tokens() -> None:
    body = {
        "model": "claude-x",
        "system": "S",
        "messages": [{"role": "user", "content": "Count me"}],
    }
    req = codec_for("anthropic").decode_count_tokens(body)
    assert gemini_codec.encode_count_tokens(req, "gemini-x") == {
        "generateContentRequest": {
            "model": "models/gemini-x",
            "contents": [{"role": "user", "parts": [{"text": "Count me"}]}],
            "systemInstruction": {"parts": [{"text": "S"}]},
        }
    }


@pytest.mark.parametrize(
    "body",
    [
        {"contents": [{"role": "user", "parts": [{"text": "Count me"}]}]},
        {
            "generateContentRequest": {
                "model": "models/g",
                "contents": [{"role": "user", "parts": [{"text": "Count me"}]}],
            }
        },
    ],
)
def test_gemini_count_tokens_both_forms_to_anthropic(body: dict[str, Any]) -> None:
    req = codec_for("gemini").decode_count_tokens(body)
    assert anthropic_codec.encode_count_tokens(req, "claude-x") == {
        "model": "claude-x",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Count me"}]}],
    }


def test_count_token_answers() -> None:
    assert anthropic_codec.count_tokens_response(2095) == {"input_tokens": 2095}
    assert gemini_codec.count_tokens_response(31) == {"totalTokens": 31}
    assert gemini_codec.read_count_tokens({"totalTokens": 31, "promptTokensDetails": []}) == 31
    assert anthropic_codec.read_count_tokens({"input_tokens": 2095}) == 2095
    assert anthropic_codec.read_count_tokens({"input_tokens": "many"}) is None


def test_turns_left_empty_by_foreign_thinking_are_dropped() -> None:
    body = {
        "model": "c",
        "max_tokens": 100,
        "messages": [
            {"role": "user", "content": "a"},
            {
                "role": "assistant",
                "content": [{"type": "thinking", "thinking": "t", "signature": "EpIB"}],
            },
            {"role": "user", "content": "b"},
        ],
    }
    openai, _ = translate("anthropic", "openai", body)
    assert openai["messages"] == [
        {"role": "user", "content": "a"},
        {"role": "user", "content": "b"},
    ]
    gemini, _ = translate("anthropic", "gemini", body)
    assert gemini["contents"] == [{"role": "user", "parts": [{"text": "a"}, {"text": "b"}]}]
    gemini_valid(gemini)
    anthropic, _ = translate(
        "openai",
        "anthropic",
        {
            "model": "g",
            "messages": [
                {"role": "user", "content": "a"},
                {"role": "assistant", "content": "", "reasoning_content": "hmm"},
                {"role": "user", "content": "b"},
            ],
        },
    )
    assert anthropic["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}
    ]
