"""Recorded upstream answers, taken from the reference's examples (§2.3-§2.4, §3.3-§3.4,
§5.2-§5.3): the same turn (thinking, text, tool calls; 1,831 prompt tokens of which 1,800
cached; 96 output tokens of which 40 reasoning) as each vendor sends it."""

from __future__ import annotations

from typing import Any

A_SIG = "EpIBanthropicSignature"
G_SIG = "Q2lRQmNzamFmeg=="

ANTHROPIC_RESPONSE: dict[str, Any] = {
    "id": "msg_01A2b3C4d5",
    "type": "message",
    "role": "assistant",
    "model": "claude-example",
    "content": [
        {"type": "thinking", "thinking": "Need the forecast first.", "signature": A_SIG},
        {"type": "text", "text": "Let me check."},
        {"type": "tool_use", "id": "toolu_01Q", "name": "get_weather", "input": {"city": "Oslo"}},
    ],
    "stop_reason": "tool_use",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 31,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 1800,
        "output_tokens": 96,
        "output_tokens_details": {"thinking_tokens": 40},
    },
}

OPENAI_RESPONSE: dict[str, Any] = {
    "id": "chatcmpl-9Ab",
    "object": "chat.completion",
    "created": 1761000000,
    "model": "gpt-example",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": None,
                "refusal": None,
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
            "logprobs": None,
            "finish_reason": "tool_calls",
        }
    ],
    "usage": {
        "prompt_tokens": 1831,
        "completion_tokens": 96,
        "total_tokens": 1927,
        "prompt_tokens_details": {"cached_tokens": 1800, "cache_write_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 40},
    },
}

GEMINI_RESPONSE: dict[str, Any] = {
    "candidates": [
        {
            "content": {
                "role": "model",
                "parts": [
                    {"text": "Need the forecast first.", "thought": True},
                    {
                        "functionCall": {"name": "get_weather", "args": {"city": "Oslo"}},
                        "thoughtSignature": G_SIG,
                    },
                    {"functionCall": {"name": "get_time", "args": {"tz": "CET"}}},
                ],
            },
            "finishReason": "STOP",
            "index": 0,
        }
    ],
    "usageMetadata": {
        "promptTokenCount": 1831,
        "cachedContentTokenCount": 1800,
        "candidatesTokenCount": 56,
        "thoughtsTokenCount": 40,
        "totalTokenCount": 1927,
    },
    "modelVersion": "gemini-example",
    "responseId": "f3Qd",
}

Frames = list[tuple[str | None, str]]


def _a(name: str, data: str) -> tuple[str | None, str]:
    return name, data


ANTHROPIC_STREAM: Frames = [
    _a(
        "message_start",
        '{"type":"message_start","message":{"id":"msg_01A2b3","type":"message","role":"assistant","model":"claude-example","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":31,"cache_creation_input_tokens":0,"cache_read_input_tokens":1800,"output_tokens":1}}}',
    ),
    _a("ping", '{"type":"ping"}'),
    _a(
        "content_block_start",
        '{"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":"","signature":""}}',
    ),
    _a(
        "content_block_delta",
        '{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"Need the forecast first."}}',
    ),
    _a(
        "content_block_delta",
        '{"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"EpIBanthropicSignature"}}',
    ),
    _a("content_block_stop", '{"type":"content_block_stop","index":0}'),
    _a(
        "content_block_start",
        '{"type":"content_block_start","index":1,"content_block":{"type":"text","text":""}}',
    ),
    _a(
        "content_block_delta",
        '{"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"Let me check."}}',
    ),
    _a("content_block_stop", '{"type":"content_block_stop","index":1}'),
    _a(
        "content_block_start",
        '{"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"toolu_01Q","name":"get_weather","input":{}}}',
    ),
    _a(
        "content_block_delta",
        '{"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":""}}',
    ),
    _a(
        "content_block_delta",
        '{"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"{\\"city\\": \\"Os"}}',
    ),
    _a(
        "content_block_delta",
        '{"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"lo\\"}"}}',
    ),
    _a("content_block_stop", '{"type":"content_block_stop","index":2}'),
    _a(
        "message_delta",
        '{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":96,"output_tokens_details":{"thinking_tokens":40}}}',
    ),
    _a("message_stop", '{"type":"message_stop"}'),
]

_O = '{"id":"chatcmpl-9Ab","object":"chat.completion.chunk","created":1761000000,"model":"gpt-example",'
OPENAI_STREAM: Frames = [
    (
        None,
        _O
        + '"choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"finish_reason":null}],"usage":null}',
    ),
    (
        None,
        _O
        + '"choices":[{"index":0,"delta":{"content":"Checking"},"finish_reason":null}],"usage":null}',
    ),
    (
        None,
        _O
        + '"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_a1","type":"function","function":{"name":"get_weather","arguments":""}}]},"finish_reason":null}],"usage":null}',
    ),
    (
        None,
        _O
        + '"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\\"city\\":\\"Oslo\\"}"}}]},"finish_reason":null}],"usage":null}',
    ),
    (
        None,
        _O
        + '"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_b2","type":"function","function":{"name":"get_time","arguments":""}}]},"finish_reason":null}],"usage":null}',
    ),
    (
        None,
        _O
        + '"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":"{\\"tz\\":\\"CET\\"}"}}]},"finish_reason":null}],"usage":null}',
    ),
    # Some compatible servers say "stop" despite tool calls (§3.4); the client must see tool use.
    (None, _O + '"choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":null}'),
    (
        None,
        _O
        + '"choices":[],"usage":{"prompt_tokens":1831,"completion_tokens":96,"total_tokens":1927,"prompt_tokens_details":{"cached_tokens":1800},"completion_tokens_details":{"reasoning_tokens":40}}}',
    ),
    (None, "[DONE]"),
]

_G = ',"modelVersion":"gemini-example","responseId":"f3Qd"}'
GEMINI_STREAM: Frames = [
    (
        None,
        '{"candidates":[{"content":{"role":"model","parts":[{"text":"Need the forecast first.","thought":true}]},"index":0}],"usageMetadata":{"promptTokenCount":1831,"totalTokenCount":1831}'
        + _G,
    ),
    (
        None,
        '{"candidates":[{"content":{"role":"model","parts":[{"text":"Let me check."}]},"index":0}],"usageMetadata":{"promptTokenCount":1831,"totalTokenCount":1831}'
        + _G,
    ),
    (
        None,
        '{"candidates":[{"content":{"role":"model","parts":[{"functionCall":{"name":"get_weather","args":{"city":"Oslo"}},"thoughtSignature":"Q2lRQmNzamFmeg=="}]},"index":0}],"usageMetadata":{"promptTokenCount":1831,"totalTokenCount":1831}'
        + _G,
    ),
    # A trailing signature-only part after the text must not open a thinking block (§9.18).
    (
        None,
        '{"candidates":[{"content":{"role":"model","parts":[{"text":"","thoughtSignature":"U2lnTGF0ZQ=="}]},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":1831,"cachedContentTokenCount":1800,"candidatesTokenCount":56,"thoughtsTokenCount":40,"totalTokenCount":1927}'
        + _G,
    ),
]
