"""Tool definitions and tool-call history across pairs (reference §11 cases 20, 26-28,
30-31); the tool_choice matrix (case 29) is in test_tool_choice.py.
"""

from __future__ import annotations

import re

from bytespike_edge.translate.context import decode_id
from tests.edge.translate.helpers import gemini_valid, translate


def test_case_26_openai_tools_to_anthropic() -> None:
    body = {
        "model": "gpt-x",
        "messages": [{"role": "user", "content": "Hi"}],
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": "Weather",
                    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
                    "strict": True,
                },
            },
            {"type": "function", "function": {"name": "now"}},
        ],
        "tool_choice": "auto",
        "parallel_tool_calls": False,
    }
    out, _ = translate("openai", "anthropic", body)
    assert out["tools"] == [
        {
            "name": "get_weather",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
            "description": "Weather",
            "strict": True,
        },
        {"name": "now", "input_schema": {"type": "object", "properties": {}}},
    ]
    assert out["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}


def test_case_27_openai_tool_history_to_anthropic() -> None:
    body = {
        "model": "gpt-x",
        "messages": [
            {"role": "user", "content": "Weather and time in Oslo?"},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {
                        "id": "call_a1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
                    },
                    {
                        "id": "call_b2",
                        "type": "function",
                        "function": {"name": "get_time", "arguments": '{"tz":"CET"}'},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "call_a1", "content": "Sunny"},
            {
                "role": "tool",
                "tool_call_id": "call_b2",
                "content": [{"type": "text", "text": "12:00"}],
            },
            {"role": "user", "content": "Thanks, and tomorrow?"},
        ],
    }
    out, _ = translate("openai", "anthropic", body)
    assert out["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Weather and time in Oslo?"}]},
        {
            "role": "assistant",
            "content": [
                {
                    "type": "tool_use",
                    "id": "call_a1",
                    "name": "get_weather",
                    "input": {"city": "Oslo"},
                },
                {"type": "tool_use", "id": "call_b2", "name": "get_time", "input": {"tz": "CET"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "call_a1", "content": "Sunny"},
                {"type": "tool_result", "tool_use_id": "call_b2", "content": "12:00"},
                {"type": "text", "text": "Thanks, and tomorrow?"},
            ],
        },
    ]


def test_case_28_anthropic_error_result_to_gemini() -> None:
    body = {
        "model": "claude-x",
        "max_tokens": 100,
        "messages": [
            {"role": "user", "content": "Read both"},
            {
                "role": "assistant",
                "content": [
                    {"type": "tool_use", "id": "toolu_1", "name": "read", "input": {"path": "a"}},
                    {"type": "tool_use", "id": "toolu_2", "name": "read", "input": {"path": "b"}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "A"},
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_2",
                        "is_error": True,
                        "content": [{"type": "text", "text": "ENOENT"}],
                    },
                ],
            },
        ],
    }
    out, _ = translate("anthropic", "gemini", body)
    calls, results = out["contents"][1]["parts"], out["contents"][2]["parts"]
    assert results == [
        {"functionResponse": {"name": "read", "response": {"output": "A"}}},
        {"functionResponse": {"name": "read", "response": {"error": "ENOENT"}}},
    ]
    assert len(calls) == len(results) == 2
    gemini_valid(out)


def test_case_30_schema_sanitised_for_gemini_tools() -> None:
    body = {
        "model": "gpt-x",
        "messages": [{"role": "user", "content": "Hi"}],
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "search",
                    "parameters": {
                        "$schema": "http://json-schema.org/draft-07/schema#",
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "q": {"type": ["string", "null"]},
                            "opts": {"$ref": "#/$defs/O"},
                        },
                        "$defs": {
                            "O": {"type": "object", "properties": {"n": {"type": "integer"}}}
                        },
                    },
                },
            },
            {
                "type": "function",
                "function": {"name": "ping", "parameters": {"type": "object", "properties": {}}},
            },
        ],
    }
    out, _ = translate("openai", "gemini", body)
    assert out["tools"] == [
        {
            "functionDeclarations": [
                {
                    "name": "search",
                    "parameters": {
                        "type": "OBJECT",
                        "properties": {
                            "q": {"type": "STRING", "nullable": True},
                            "opts": {"type": "OBJECT", "properties": {"n": {"type": "INTEGER"}}},
                        },
                    },
                },
                {"name": "ping"},
            ]
        }
    ]
    gemini_valid(out)
    json_schema, _ = translate("openai", "gemini", body, gemini_json_schema=True)
    declaration = json_schema["tools"][0]["functionDeclarations"][0]
    assert declaration["parametersJsonSchema"] == body["tools"][0]["function"]["parameters"]  # type: ignore[index]


def test_case_31_names_and_ids_rewritten_for_anthropic() -> None:
    body = {
        "contents": [
            {"role": "user", "parts": [{"text": "read it"}]},
            {
                "role": "model",
                "parts": [
                    {
                        "functionCall": {
                            "id": "functions.read:0",
                            "name": "mcp.server:read",
                            "args": {"p": 1},
                        }
                    }
                ],
            },
            {
                "role": "user",
                "parts": [
                    {
                        "functionResponse": {
                            "id": "functions.read:0",
                            "name": "mcp.server:read",
                            "response": {"output": "x"},
                        }
                    }
                ],
            },
        ],
        "tools": [{"functionDeclarations": [{"name": "mcp.server:read"}]}],
        "toolConfig": {
            "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["mcp.server:read"]}
        },
    }
    out, req = translate("gemini", "anthropic", body)
    call = out["messages"][1]["content"][0]
    result = out["messages"][2]["content"][0]
    assert call["name"] == "mcp_server_read"
    assert re.fullmatch(r"[A-Za-z0-9_-]+", call["id"])
    assert result["tool_use_id"] == call["id"]
    assert decode_id(call["id"]) == "functions.read:0"
    assert out["tools"] == [
        {"name": "mcp_server_read", "input_schema": {"type": "object", "properties": {}}}
    ]
    assert out["tool_choice"] == {"type": "tool", "name": "mcp_server_read"}
    assert req.ctx.names.to_client("mcp_server_read") == "mcp.server:read"


def test_case_31_openai_never_receives_ids_over_40_chars() -> None:
    long_id = "toolu_" + "x" * 60
    body = {
        "model": "claude-x",
        "max_tokens": 10,
        "messages": [
            {"role": "user", "content": "go"},
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": long_id, "name": "f", "input": {}}],
            },
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": long_id, "content": "done"}],
            },
        ],
    }
    out, _ = translate("anthropic", "openai", body)
    call_id = out["messages"][1]["tool_calls"][0]["id"]
    assert len(call_id) <= 40
    assert out["messages"][2] == {"role": "tool", "tool_call_id": call_id, "content": "done"}


def test_case_20_minted_call_id_comes_back_as_a_named_function_response() -> None:
    # The OpenAI client got `call_<random>` for an id-less Gemini call and echoes it.
    minted = "call_5f1e2d3c4b5a69788796a5b4"
    body = {
        "model": "gemini-x",
        "messages": [
            {"role": "user", "content": "Weather?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": minted,
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": minted, "content": '{"temp": 21}'},
        ],
    }
    out, _ = translate("openai", "gemini", body)
    assert out["contents"][1:] == [
        {
            "role": "model",
            "parts": [
                {
                    "functionCall": {"name": "get_weather", "args": {"city": "Oslo"}},
                    "thoughtSignature": "skip_thought_signature_validator",
                }
            ],
        },
        {
            "role": "user",
            "parts": [
                {
                    "functionResponse": {
                        "name": "get_weather",
                        "response": {"output": '{"temp": 21}'},
                    }
                }
            ],
        },
    ]
    gemini_valid(out)


def test_gemini_calls_without_ids_are_paired_by_name() -> None:
    body = {
        "contents": [
            {"role": "user", "parts": [{"text": "both"}]},
            {
                "role": "model",
                "parts": [
                    {"functionCall": {"name": "a", "args": {}}},
                    {"functionCall": {"name": "b", "args": {}}},
                ],
            },
            {
                "role": "user",
                "parts": [
                    {"functionResponse": {"name": "b", "response": {"r": 2}}},
                    {"functionResponse": {"name": "a", "response": {"output": {"r": 1}}}},
                ],
            },
        ]
    }
    out, _ = translate("gemini", "openai", body)
    calls = out["messages"][1]["tool_calls"]
    assert [c["id"] for c in calls] == ["call_1", "call_2"]
    assert out["messages"][2:] == [
        {"role": "tool", "tool_call_id": "call_2", "content": '{"r":2}'},
        {"role": "tool", "tool_call_id": "call_1", "content": '{"r":1}'},
    ]
