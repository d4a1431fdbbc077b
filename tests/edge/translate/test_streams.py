"""Stream translation for the nine upstream → client pairs: a recorded upstream stream in,
the exact client frame sequence out, then parsed by the client's SDK.
Reference §11 cases 14-20 and §8; errors and keepalives are in test_stream_errors.py."""

from __future__ import annotations

import re
from typing import Any

import orjson

from bytespike_edge.translate.context import TranslationContext
from bytespike_edge.translate.ir import IRRequest, WireProtocol
from tests.edge.translate import sdk
from tests.edge.translate.fixtures import (
    A_SIG,
    ANTHROPIC_STREAM,
    GEMINI_STREAM,
    OPENAI_STREAM,
    Frames,
)
from tests.edge.translate.helpers import relay, sse_events

STREAMS = {"anthropic": ANTHROPIC_STREAM, "openai": OPENAI_STREAM, "gemini": GEMINI_STREAM}
MINTED = re.compile(r"(toolu|call)_[0-9a-f]{24}")


def run(
    upstream: str,
    client: str,
    *,
    include_usage: bool = True,
    frames: Frames | None = None,
    include_thoughts: bool = False,
) -> tuple[bytes, list[tuple[str | None, Any]]]:
    ctx = TranslationContext(client=WireProtocol(client))
    ctx.include_usage, ctx.include_thoughts = include_usage, include_thoughts
    raw = relay(upstream, client, frames or STREAMS[upstream], IRRequest("m", [], ctx))
    parsed: list[tuple[str | None, Any]] = []
    for event, data in sse_events(raw):
        value: Any = data if data == "[DONE]" else orjson.loads(data)
        if isinstance(value, dict):
            value.pop("created", None)  # wall-clock time
        parsed.append((event, value))
    return raw, parsed


def minted(value: str) -> bool:
    return MINTED.fullmatch(value) is not None


# --- Anthropic clients ---------------------------------------------------------------------

A_USAGE_END = {
    "input_tokens": 31,
    "cache_creation_input_tokens": 0,
    "cache_read_input_tokens": 1800,
    "output_tokens": 96,
    "output_tokens_details": {"thinking_tokens": 40},
}


def a_start(msg_id: str, input_tokens: int, cached: int) -> tuple[str, Any]:
    usage = {
        "input_tokens": input_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": cached,
        "output_tokens": 0,
    }
    message: dict[str, Any] = {
        "id": msg_id,
        "type": "message",
        "role": "assistant",
        "model": "client-model",
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": usage,
    }
    return "message_start", {"type": "message_start", "message": message}


def a_block(index: int, block: dict[str, Any], *deltas: dict[str, Any]) -> list[tuple[str, Any]]:
    frames: list[tuple[str, Any]] = [
        (
            "content_block_start",
            {"type": "content_block_start", "index": index, "content_block": block},
        )
    ]
    frames += [
        ("content_block_delta", {"type": "content_block_delta", "index": index, "delta": d})
        for d in deltas
    ]
    return [*frames, ("content_block_stop", {"type": "content_block_stop", "index": index})]


def a_end(stop_reason: str) -> list[tuple[str, Any]]:
    delta = {
        "type": "message_delta",
        "delta": {"stop_reason": stop_reason, "stop_sequence": None},
        "usage": A_USAGE_END,
    }
    return [("message_delta", delta), ("message_stop", {"type": "message_stop"})]


def text(value: str) -> dict[str, Any]:
    return {"type": "text_delta", "text": value}


def args(value: str) -> dict[str, Any]:
    return {"type": "input_json_delta", "partial_json": value}


def tool(call_id: str, name: str) -> dict[str, Any]:
    return {"type": "tool_use", "id": call_id, "name": name, "input": {}}


THINKING_BLOCK = {"type": "thinking", "thinking": "", "signature": ""}
TEXT_BLOCK = {"type": "text", "text": ""}


def test_anthropic_to_anthropic_stream() -> None:
    raw, frames = run("anthropic", "anthropic")
    assert frames == [
        a_start("msg_01A2b3", 31, 1800),
        *a_block(
            0,
            THINKING_BLOCK,
            {"type": "thinking_delta", "thinking": "Need the forecast first."},
            {"type": "signature_delta", "signature": A_SIG},
        ),
        *a_block(1, TEXT_BLOCK, text("Let me check.")),
        *a_block(2, tool("toolu_01Q", "get_weather"), args('{"city": "Os'), args('lo"}')),
        *a_end("tool_use"),
    ]
    message = sdk.anthropic_stream(raw)
    assert [b.type for b in message.content] == ["thinking", "text", "tool_use"]
    assert message.content[0].signature == A_SIG  # type: ignore[union-attr]


def test_cases_14_15_openai_to_anthropic_stream() -> None:
    raw, frames = run("openai", "anthropic")
    # Every frame has an event name; text block 0, tool blocks 1 and 2; tool_use although
    # the upstream said "stop"; usage from the upstream's usage chunk in message_delta.
    assert frames == [
        a_start("msg_chatcmpl-9Ab", 0, 0),
        *a_block(0, TEXT_BLOCK, text("Checking")),
        *a_block(1, tool("call_a1", "get_weather"), args('{"city":"Oslo"}')),
        *a_block(2, tool("call_b2", "get_time"), args('{"tz":"CET"}')),
        *a_end("tool_use"),
    ]
    message = sdk.anthropic_stream(raw)
    assert message.content[0].text == "Checking"  # type: ignore[union-attr]
    assert [b.input for b in message.content[1:]] == [{"city": "Oslo"}, {"tz": "CET"}]  # type: ignore[union-attr]
    assert (
        message.stop_reason,
        message.usage.input_tokens,
        message.usage.cache_read_input_tokens,
    ) == ("tool_use", 31, 1800)
    assert message.usage.output_tokens == 96


def test_case_19_gemini_to_anthropic_stream() -> None:
    raw, frames = run("gemini", "anthropic")
    start, call = frames[0], frames[7]
    call_id = call[1]["content_block"]["id"]
    assert minted(call_id) and call_id.startswith("toolu_")
    # Thinking before text; the trailing signature-only part opens no block after the text;
    # no raw Gemini signature appears anywhere.
    assert frames == [
        a_start("msg_f3Qd", 1831, 0),
        *a_block(
            0, THINKING_BLOCK, {"type": "thinking_delta", "thinking": "Need the forecast first."}
        ),
        *a_block(1, TEXT_BLOCK, text("Let me check.")),
        *a_block(2, tool(call_id, "get_weather"), args('{"city":"Oslo"}')),
        *a_end("tool_use"),
    ]
    assert start[0] == "message_start"
    assert b"Q2lRQmNzamFmeg==" not in raw and b"U2lnTGF0ZQ==" not in raw
    message = sdk.anthropic_stream(raw)
    assert [b.type for b in message.content] == ["thinking", "text", "tool_use"]
    assert (message.usage.input_tokens, message.usage.output_tokens) == (31, 96)


def test_gemini_signature_while_thinking_is_open_is_tagged() -> None:
    frames: Frames = [
        (
            None,
            '{"candidates":[{"content":{"parts":[{"text":"hmm","thought":true,"thoughtSignature":"U2ln"}]}}],"responseId":"r"}',
        ),
        (
            None,
            '{"candidates":[{"content":{"parts":[{"text":"Done."}]},"finishReason":"STOP"}],"responseId":"r"}',
        ),
    ]
    raw, _ = run("gemini", "anthropic", frames=frames)
    message = sdk.anthropic_stream(raw)
    assert message.content[0].signature == "gw1:gemini:U2ln"  # type: ignore[union-attr]
    assert message.content[1].text == "Done."  # type: ignore[union-attr]


# --- OpenAI clients ------------------------------------------------------------------------


def o_chunk(chunk_id: str, delta: dict[str, Any], finish: str | None = None) -> tuple[None, Any]:
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    return None, {
        "id": chunk_id,
        "object": "chat.completion.chunk",
        "model": "client-model",
        "choices": [choice],
        "usage": None,
    }


def o_call(index: int, call_id: str, name: str) -> dict[str, Any]:
    call = {
        "index": index,
        "id": call_id,
        "type": "function",
        "function": {"name": name, "arguments": ""},
    }
    return {"tool_calls": [call]}


def o_args(index: int, value: str) -> dict[str, Any]:
    return {"tool_calls": [{"index": index, "function": {"arguments": value}}]}


O_USAGE = {
    "prompt_tokens": 1831,
    "completion_tokens": 96,
    "total_tokens": 1927,
    "prompt_tokens_details": {"cached_tokens": 1800},
    "completion_tokens_details": {"reasoning_tokens": 40},
}


def o_tail(chunk_id: str) -> list[tuple[None, Any]]:
    usage = {
        "id": chunk_id,
        "object": "chat.completion.chunk",
        "model": "client-model",
        "choices": [],
        "usage": O_USAGE,
    }
    return [o_chunk(chunk_id, {}, "tool_calls"), (None, usage), (None, "[DONE]")]


ROLE = {"role": "assistant", "content": ""}


def test_case_16_anthropic_to_openai_stream() -> None:
    raw, frames = run("anthropic", "openai")
    cid = "chatcmpl-msg_01A2b3"
    assert frames == [
        o_chunk(cid, ROLE),
        o_chunk(cid, {"content": "Let me check."}),
        o_chunk(cid, o_call(0, "toolu_01Q", "get_weather")),
        o_chunk(cid, o_args(0, '{"city": "Os')),
        o_chunk(cid, o_args(0, 'lo"}')),
        *o_tail(cid),
    ]
    chunks = sdk.openai_chunks(raw)
    assert [len(c.choices) for c in chunks] == [1, 1, 1, 1, 1, 1, 0]
    assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens == 1831


def test_case_17_openai_client_without_include_usage() -> None:
    raw, frames = run("anthropic", "openai", include_usage=False)
    assert frames[-1] == (None, "[DONE]")
    chunks = [value for _, value in frames[:-1]]
    assert all("usage" not in c for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    assert all(c.usage is None for c in sdk.openai_chunks(raw))


def test_openai_to_openai_stream() -> None:
    _, frames = run("openai", "openai")
    cid = "chatcmpl-9Ab"
    assert frames == [
        o_chunk(cid, ROLE),
        o_chunk(cid, {"content": "Checking"}),
        o_chunk(cid, o_call(0, "call_a1", "get_weather")),
        o_chunk(cid, o_args(0, '{"city":"Oslo"}')),
        o_chunk(cid, o_call(1, "call_b2", "get_time")),
        o_chunk(cid, o_args(1, '{"tz":"CET"}')),
        *o_tail(cid),
    ]


def test_case_20_gemini_to_openai_stream() -> None:
    raw, frames = run("gemini", "openai")
    call_id = frames[2][1]["choices"][0]["delta"]["tool_calls"][0]["id"]
    assert minted(call_id) and call_id.startswith("call_")
    cid = "chatcmpl-f3Qd"
    assert frames == [
        o_chunk(cid, ROLE),
        o_chunk(cid, {"content": "Let me check."}),
        o_chunk(cid, o_call(0, call_id, "get_weather")),
        o_chunk(cid, o_args(0, '{"city":"Oslo"}')),
        *o_tail(cid),
    ]
    sdk.openai_chunks(raw)


def test_reasoning_content_only_for_opted_in_openai_clients() -> None:
    _, plain = run("anthropic", "openai")
    assert all("reasoning_content" not in str(v) for _, v in plain)
    _, opted = run("anthropic", "openai", include_thoughts=True)
    assert opted[1][1]["choices"][0]["delta"] == {"reasoning_content": "Need the forecast first."}


# --- Gemini clients ------------------------------------------------------------------------


def g_chunk(
    response_id: str, parts: list[Any], usage: dict[str, Any] | None, finish: str | None = None
) -> tuple[None, Any]:
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
    if finish:
        candidate["finishReason"] = finish
    chunk: dict[str, Any] = {"candidates": [candidate]}
    if usage is not None:
        chunk["usageMetadata"] = usage
    return None, {**chunk, "modelVersion": "client-model", "responseId": response_id}


G_PROMPT = {"promptTokenCount": 1831, "totalTokenCount": 1831}
G_USAGE = {
    "promptTokenCount": 1831,
    "candidatesTokenCount": 56,
    "totalTokenCount": 1927,
    "cachedContentTokenCount": 1800,
    "thoughtsTokenCount": 40,
}


def test_case_18_anthropic_to_gemini_stream() -> None:
    raw, frames = run("anthropic", "gemini")
    assert frames == [
        g_chunk("msg_01A2b3", [{"text": "Let me check."}], G_PROMPT),
        g_chunk(
            "msg_01A2b3",
            [
                {
                    "functionCall": {
                        "name": "get_weather",
                        "args": {"city": "Oslo"},
                        "id": "toolu_01Q",
                    }
                }
            ],
            G_PROMPT,
        ),
        g_chunk("msg_01A2b3", [{"text": ""}], G_USAGE, "STOP"),
    ]
    assert raw.startswith(b"data: ") and b"\n\ndata: " in raw and b"[DONE]" not in raw
    chunks = sdk.gemini_chunks(raw)
    assert len(chunks) == 3
    assert chunks[1].function_calls is not None and chunks[1].function_calls[0].args == {
        "city": "Oslo"
    }
    assert (
        chunks[-1].usage_metadata is not None
        and chunks[-1].usage_metadata.total_token_count == 1927
    )


def test_openai_to_gemini_stream() -> None:
    _, frames = run("openai", "gemini")
    assert frames == [
        g_chunk("chatcmpl-9Ab", [{"text": "Checking"}], None),
        g_chunk(
            "chatcmpl-9Ab",
            [{"functionCall": {"name": "get_weather", "args": {"city": "Oslo"}, "id": "call_a1"}}],
            G_PROMPT,
        ),
        g_chunk(
            "chatcmpl-9Ab",
            [{"functionCall": {"name": "get_time", "args": {"tz": "CET"}, "id": "call_b2"}}],
            G_PROMPT,
        ),
        g_chunk("chatcmpl-9Ab", [{"text": ""}], G_USAGE, "STOP"),
    ]


def test_gemini_to_gemini_stream() -> None:
    raw, frames = run("gemini", "gemini", include_thoughts=True)
    call = {
        "functionCall": {"name": "get_weather", "args": {"city": "Oslo"}},
        "thoughtSignature": "Q2lRQmNzamFmeg==",
    }
    assert frames == [
        g_chunk("f3Qd", [{"text": "Need the forecast first.", "thought": True}], G_PROMPT),
        g_chunk("f3Qd", [{"text": "Let me check."}], G_PROMPT),
        g_chunk("f3Qd", [call], G_PROMPT),
        g_chunk("f3Qd", [{"text": ""}], G_USAGE, "STOP"),
    ]
    assert [c.text for c in sdk.gemini_chunks(raw)[1:2]] == ["Let me check."]


def test_anthropic_thinking_reaches_gemini_clients_that_asked() -> None:
    _, frames = run("anthropic", "gemini", include_thoughts=True)
    assert frames[0] == g_chunk(
        "msg_01A2b3", [{"text": "Need the forecast first.", "thought": True}], G_PROMPT
    )


def test_case_32_malformed_streamed_arguments_reach_anthropic_as_valid_json() -> None:
    o = '{"id":"c","choices":[{"index":0,"delta":%s,"finish_reason":%s}]}'
    frames: Frames = [
        (
            None,
            o
            % (
                '{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"f","arguments":"{\\"a\\": 1,"}}]}',
                "null",
            ),
        ),
        (None, o % ("{}", '"tool_calls"')),
        (None, "[DONE]"),
    ]
    raw, out = run("openai", "anthropic", frames=frames)
    assert out[2] == (
        "content_block_delta",
        {"type": "content_block_delta", "index": 0, "delta": args('{"_raw":"{\\"a\\": 1,"}')},
    )
    assert sdk.anthropic_stream(raw).content[0].input == {"_raw": '{"a": 1,'}  # type: ignore[union-attr]


def test_interleaved_openai_tool_fragments_are_reassembled_in_order() -> None:
    o = '{"id":"c","choices":[{"index":0,"delta":{"tool_calls":[%s]},"finish_reason":null}]}'
    frames: Frames = [
        (
            None,
            o
            % '{"index":0,"id":"call_1","function":{"name":"a","arguments":"{\\"x\\""}},{"index":1,"id":"call_2","function":{"name":"b","arguments":"{}"}}',
        ),
        (None, o % '{"index":0,"function":{"arguments":": 1}"}}'),
        (None, '{"id":"c","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}'),
        (None, "[DONE]"),
    ]
    raw, _ = run("openai", "anthropic", frames=frames)
    message = sdk.anthropic_stream(raw)
    assert [(b.name, b.input) for b in message.content] == [("a", {"x": 1}), ("b", {})]  # type: ignore[union-attr]


def test_repaired_streamed_arguments_are_valid_json() -> None:
    o = '{"id":"c","choices":[{"index":0,"delta":%s,"finish_reason":%s}]}'
    call = '{"index":0,"id":"call_1","type":"function","function":{"name":"f","arguments":"{\\"a\\": 1} trailing"}}'
    frames: Frames = [
        (None, o % ('{"tool_calls":[' + call + "]}", "null")),
        (None, o % ("{}", '"tool_calls"')),
        (None, "[DONE]"),
    ]
    raw, out = run("openai", "anthropic", frames=frames)
    assert out[2][1]["delta"] == args('{"a":1}')
    assert sdk.anthropic_stream(raw).content[0].input == {"a": 1}  # type: ignore[union-attr]
