"""Reference §11 cases through the whole gateway: auth forms, paths, tools, errors, counting.

Scripted vendor answers are written in the upstream protocol; assertions are on what the
official client SDK parsed and on what the vendor received.
"""

from __future__ import annotations

from typing import Any

import anthropic
import httpx
import openai
import orjson
import pytest
from google import genai
from google.genai import types as genai_types

from bytespike_common.devstack import Stack
from tests.fakes.process import FakeVendorProcess

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def key(stack: Stack) -> str:
    return (await stack.create_key("cases", "k"))[1]


def _sse(events: list[tuple[str | None, dict[str, Any]]]) -> list[str]:
    return [
        (f"event: {name}\n" if name else "") + f"data: {orjson.dumps(data).decode()}"
        for name, data in events
    ]


# --- auth and paths (cases 1-6) ------------------------------------------------------------


async def test_auth_forms_and_paths(stack: Stack, key: str, vendor: FakeVendorProcess) -> None:
    body = {
        "model": "claude-haiku-4-5",
        "max_tokens": 20,
        "messages": [{"role": "user", "content": "hi"}],
    }
    gemini_body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    async with httpx.AsyncClient(base_url=stack.edge_url, timeout=20) as http:
        ok = [
            await http.post(
                "/v1/messages",
                json=body,
                headers={"x-api-key": key, "anthropic-version": "2023-06-01"},
            ),
            await http.post(
                "/v1/messages?beta=true", json=body, headers={"authorization": f"Bearer {key}"}
            ),
            await http.post(
                "/v1beta/models/gemini-2-5-flash:generateContent",
                json=gemini_body,
                headers={"x-goog-api-key": key},
            ),
            await http.post(
                f"/v1beta/models/models/gemini-2-5-flash:generateContent?key={key}",
                json=gemini_body,
            ),
            await http.post(
                "/v1/models/gemini-2-5-flash:streamGenerateContent?alt=sse",
                json=gemini_body,
                headers={"x-goog-api-key": key},
            ),
        ]
        assert [r.status_code for r in ok] == [200] * 5, [r.text for r in ok]
        assert ok[4].text.startswith("data: ")
        # ?key= is never forwarded upstream.
        assert all("key" not in r["query"] for r in vendor.requests())

        missing = await http.post("/v1/messages", json=body)
        assert missing.status_code == 401
        assert missing.json()["type"] == "error"
        assert missing.json()["error"]["type"] == "authentication_error"
        bad = await http.post(
            "/v1beta/models/gemini-2-5-flash:generateContent",
            json=gemini_body,
            headers={"x-goog-api-key": "nope"},
        )
        assert bad.status_code == 401 and bad.json()["error"]["status"] == "UNAUTHENTICATED"
        unknown = await http.post(
            "/v1beta/models/gemini-2-5-flash:fooBar",
            json=gemini_body,
            headers={"x-goog-api-key": key},
        )
        assert unknown.status_code == 404 and unknown.json()["error"]["code"] == 404


async def test_gemini_stream_without_alt_is_a_json_array(stack: Stack, key: str) -> None:
    async with httpx.AsyncClient(base_url=stack.edge_url, timeout=20) as http:
        response = await http.post(
            "/v1beta/models/claude-haiku-4-5:streamGenerateContent",
            json={"contents": [{"role": "user", "parts": [{"text": "hi"}]}]},
            headers={"x-goog-api-key": key},
        )
    chunks = response.json()
    assert isinstance(chunks, list) and len(chunks) >= 2
    text = "".join(
        p["text"]
        for c in chunks
        for p in c["candidates"][0]["content"].get("parts", [])
        if "text" in p
    )
    assert text.strip() == "fake: hi"
    assert chunks[-1]["usageMetadata"]["totalTokenCount"] == 26


# --- count tokens (cases 49, 50) -----------------------------------------------------------


async def test_count_tokens_native_and_estimated(
    stack: Stack, key: str, vendor: FakeVendorProcess
) -> None:
    async with anthropic.AsyncAnthropic(
        base_url=stack.edge_url, api_key=key, max_retries=0
    ) as client:
        vendor.reset()
        native = await client.messages.count_tokens(
            model="claude-haiku-4-5", messages=[{"role": "user", "content": "hi"}]
        )
        assert native.input_tokens == 42
        assert vendor.requests()[-1]["path"] == "/v1/messages/count_tokens"
        assert "max_tokens" not in vendor.requests()[-1]["body"]
        via_gemini = await client.messages.count_tokens(
            model="gemini-2-5-flash", messages=[{"role": "user", "content": "hi"}]
        )
        assert via_gemini.input_tokens == 42
        assert vendor.requests()[-1]["path"] == "/v1beta/models/gemini-2.5-flash:countTokens"
        assert "generateContentRequest" in vendor.requests()[-1]["body"]
        estimate = await client.messages.with_raw_response.count_tokens(
            model="gpt-5-5", messages=[{"role": "user", "content": "hi " * 400}]
        )
        assert estimate.headers["x-bytespike-token-count"] == "estimated"
        assert 250 <= (await estimate.parse()).input_tokens <= 450
    client_g = genai.Client(
        api_key=key, http_options=genai_types.HttpOptions(base_url=stack.edge_url)
    )
    counted = await client_g.aio.models.count_tokens(model="claude-haiku-4-5", contents="hi")
    assert counted.total_tokens == 42
    async with httpx.AsyncClient(base_url=stack.edge_url) as http:
        wrapped = await http.post(
            "/v1beta/models/gemini-2-5-flash:countTokens",
            json={
                "generateContentRequest": {
                    "model": "models/gemini-2-5-flash",
                    "contents": [{"role": "user", "parts": [{"text": "x"}]}],
                }
            },
            headers={"x-goog-api-key": key},
        )
    assert wrapped.json() == {"totalTokens": 42}


# --- tools (cases 15, 16, 18, 20) ------------------------------------------------------------

OPENAI_TOOL_STREAM = [
    {"choices": [{"index": 0, "delta": {"role": "assistant", "content": "Checking"}}]},
    {
        "choices": [
            {
                "index": 0,
                "delta": {
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": "call_a1",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": ""},
                        }
                    ]
                },
            }
        ]
    },
    {
        "choices": [
            {
                "index": 0,
                "delta": {
                    "tool_calls": [{"index": 0, "function": {"arguments": '{"city":"Oslo"}'}}]
                },
            }
        ]
    },
    {
        "choices": [
            {
                "index": 0,
                "delta": {
                    "tool_calls": [
                        {
                            "index": 1,
                            "id": "call_b2",
                            "type": "function",
                            "function": {"name": "get_time", "arguments": '{"tz":"CET"}'},
                        }
                    ]
                },
            }
        ]
    },
    {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
    {"choices": [], "usage": {"prompt_tokens": 30, "completion_tokens": 12, "total_tokens": 42}},
]
TOOLS_A = [
    {
        "name": "get_weather",
        "description": "Weather",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
    {
        "name": "get_time",
        "input_schema": {"type": "object", "properties": {"tz": {"type": "string"}}},
    },
]


async def test_anthropic_client_openai_upstream_parallel_tools(
    stack: Stack, key: str, vendor: FakeVendorProcess
) -> None:
    base = {"id": "chatcmpl-t", "object": "chat.completion.chunk", "created": 1, "model": "gpt-5.5"}
    frames = [f"data: {orjson.dumps({**base, **c}).decode()}" for c in OPENAI_TOOL_STREAM] + [
        "data: [DONE]"
    ]
    vendor.reset()
    vendor.script({"sse": frames})
    async with (
        anthropic.AsyncAnthropic(base_url=stack.edge_url, api_key=key, max_retries=0) as client,
        client.messages.stream(
            model="gpt-5-5",
            max_tokens=100,
            tools=TOOLS_A,
            messages=[{"role": "user", "content": "weather?"}],
        ) as stream,
    ):
        final = await stream.get_final_message()
    assert [b.type for b in final.content] == ["text", "tool_use", "tool_use"]
    assert final.content[1].input == {"city": "Oslo"}  # type: ignore[union-attr]
    assert final.content[2].input == {"tz": "CET"}  # type: ignore[union-attr]
    # Upstream said "stop" despite tool calls: Anthropic clients still get tool_use.
    assert final.stop_reason == "tool_use"
    sent = vendor.requests()[-1]["body"]
    assert [t["function"]["name"] for t in sent["tools"]] == ["get_weather", "get_time"]


async def test_openai_client_gemini_upstream_tool_call_without_id(
    stack: Stack, key: str, vendor: FakeVendorProcess
) -> None:
    vendor.reset()
    vendor.script(
        {
            "json": {
                "candidates": [
                    {
                        "content": {
                            "role": "model",
                            "parts": [
                                {"functionCall": {"name": "get_weather", "args": {"city": "Oslo"}}}
                            ],
                        },
                        "finishReason": "STOP",
                        "index": 0,
                    }
                ],
                "usageMetadata": {
                    "promptTokenCount": 10,
                    "candidatesTokenCount": 5,
                    "totalTokenCount": 15,
                },
            }
        }
    )
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "additionalProperties": False,
                },
            },
        }
    ]
    async with openai.AsyncOpenAI(
        base_url=f"{stack.edge_url}/v1", api_key=key, max_retries=0
    ) as client:
        reply = await client.chat.completions.create(
            model="gemini-2-5-flash",
            tools=tools,
            messages=[{"role": "user", "content": "weather?"}],  # type: ignore[arg-type]
        )
        call = reply.choices[0].message.tool_calls[0]  # type: ignore[index]
        assert call.id.startswith("call_") and call.function.name == "get_weather"  # type: ignore[union-attr]
        assert orjson.loads(call.function.arguments) == {"city": "Oslo"}  # type: ignore[union-attr]
        assert reply.choices[0].finish_reason == "tool_calls"
        schema = vendor.requests()[-1]["body"]["tools"][0]["functionDeclarations"][0]
        assert "additionalProperties" not in orjson.dumps(schema).decode()

        vendor.reset()
        await client.chat.completions.create(
            model="gemini-2-5-flash",
            tools=tools,  # type: ignore[arg-type]
            messages=[
                {"role": "user", "content": "weather?"},
                {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},  # type: ignore[list-item]
                {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
            ],
        )
    contents = vendor.requests()[-1]["body"]["contents"]
    response = contents[-1]["parts"][0]["functionResponse"]
    assert response["name"] == "get_weather"
    assert isinstance(response["response"], dict)


# --- errors (cases 23, 45-48) --------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "script", "anthropic_status", "anthropic_type"),
    [
        (
            "gpt-5-5",
            {
                "status": 429,
                "json": {
                    "error": {
                        "message": "slow down",
                        "type": "rate_limit_exceeded",
                        "code": "rate_limit_exceeded",
                    }
                },
                "headers": {"retry-after": "7"},
            },
            429,
            "rate_limit_error",
        ),
        (
            "gemini-2-5-flash",
            {
                "status": 400,
                "json": {
                    "error": {
                        "code": 400,
                        "message": "API key not valid.",
                        "status": "INVALID_ARGUMENT",
                        "details": [
                            {
                                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                                "reason": "API_KEY_INVALID",
                            }
                        ],
                    }
                },
            },
            502,
            None,
        ),
        (
            "gpt-5-5",
            {
                "status": 400,
                "json": {
                    "error": {
                        "message": "This model's maximum context length is 8192 tokens.",
                        "type": "invalid_request_error",
                        "code": "context_length_exceeded",
                    }
                },
            },
            400,
            "invalid_request_error",
        ),
    ],
)
async def test_upstream_errors_in_the_anthropic_shape(
    model: str,
    script: dict[str, Any],
    anthropic_status: int,
    anthropic_type: str | None,
    stack: Stack,
    key: str,
    vendor: FakeVendorProcess,
) -> None:
    vendor.reset()
    vendor.script(script, script, script)
    async with httpx.AsyncClient(base_url=stack.edge_url, timeout=20) as http:
        response = await http.post(
            "/v1/messages",
            json={
                "model": model,
                "max_tokens": 20,
                "messages": [{"role": "user", "content": "hi"}],
            },
            headers={"x-api-key": key},
        )
    assert response.status_code == anthropic_status, response.text
    body = response.json()
    assert body["type"] == "error"
    if anthropic_type:
        assert body["error"]["type"] == anthropic_type
    if script["status"] == 429:
        assert response.headers["retry-after"] == "7"
    if "context" in orjson.dumps(script).decode():
        assert "prompt is too long" in body["error"]["message"]


async def test_mid_stream_overload_reaches_each_client_in_its_form(
    stack: Stack, key: str, vendor: FakeVendorProcess
) -> None:
    start = {
        "type": "message_start",
        "message": {
            "id": "msg_x",
            "type": "message",
            "role": "assistant",
            "model": "m",
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 5, "output_tokens": 1},
        },
    }
    frames = _sse(
        [
            ("message_start", start),
            (
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "text", "text": ""},
                },
            ),
            (
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": "partial"},
                },
            ),
            (
                "error",
                {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
            ),
        ]
    )
    vendor.reset()
    async with httpx.AsyncClient(base_url=stack.edge_url, timeout=20) as http:
        vendor.script({"sse": frames})
        openai_stream = await http.post(
            "/v1/chat/completions",
            json={
                "model": "claude-haiku-4-5",
                "stream": True,
                "messages": [{"role": "user", "content": "hi"}],
            },
            headers={"authorization": f"Bearer {key}"},
        )
        vendor.script({"sse": frames})
        gemini_stream = await http.post(
            "/v1beta/models/claude-haiku-4-5:streamGenerateContent?alt=sse",
            json={"contents": [{"role": "user", "parts": [{"text": "hi"}]}]},
            headers={"x-goog-api-key": key},
        )
    assert '"error"' in openai_stream.text and "[DONE]" not in openai_stream.text
    last_gemini = [line for line in gemini_stream.text.splitlines() if line.startswith("data: ")][
        -1
    ]
    assert orjson.loads(last_gemini[6:])["error"]["code"] == 503


async def test_blocked_prompt_is_a_refusal(
    stack: Stack, key: str, vendor: FakeVendorProcess
) -> None:
    blocked = {
        "json": {
            "promptFeedback": {"blockReason": "SAFETY"},
            "usageMetadata": {"promptTokenCount": 4, "totalTokenCount": 4},
        }
    }
    vendor.reset()
    vendor.script(blocked, blocked)
    async with anthropic.AsyncAnthropic(
        base_url=stack.edge_url, api_key=key, max_retries=0
    ) as client:
        reply = await client.messages.create(
            model="gemini-2-5-flash", max_tokens=20, messages=[{"role": "user", "content": "bad"}]
        )
    assert reply.stop_reason == "refusal"
    async with openai.AsyncOpenAI(
        base_url=f"{stack.edge_url}/v1", api_key=key, max_retries=0
    ) as oclient:
        completion = await oclient.chat.completions.create(
            model="gemini-2-5-flash", messages=[{"role": "user", "content": "bad"}]
        )
    assert completion.choices[0].finish_reason == "content_filter"


async def test_media_url_to_a_private_address_is_refused(stack: Stack, key: str) -> None:
    # Chat Completions takes PDFs only inline: the gateway must fetch — and refuses loopback.
    document = {
        "type": "document",
        "source": {"type": "url", "url": "http://127.0.0.1:9/secret.pdf"},
    }
    async with anthropic.AsyncAnthropic(
        base_url=stack.edge_url, api_key=key, max_retries=0
    ) as client:
        with pytest.raises(anthropic.BadRequestError) as refused:
            await client.messages.create(
                model="gpt-5-5",
                max_tokens=20,
                messages=[
                    {"role": "user", "content": [document, {"type": "text", "text": "summarise"}]}
                ],  # type: ignore[list-item]
            )
    assert "non-public" in refused.value.message
