"""Every client protocol against every upstream protocol, with the official SDKs as clients.

The shipped catalog's OpenAI, Anthropic and Gemini providers point at one fake vendor that
answers each protocol with the same text and the same usage in its own convention
(canonically 12 uncached input, 5 cache-read, 9 output of which 3 reasoning). Each test
asserts what the SDK parsed and what the vendor received.
"""

from __future__ import annotations

from typing import Any

import anthropic
import openai
import pytest
from google import genai
from google.genai import types as genai_types

from bytespike_common.devstack import Stack
from tests.fakes.process import FakeVendorProcess
from tests.integration.conftest import UPSTREAM_KEY

pytestmark = pytest.mark.integration

# model → (upstream protocol, upstream model name, path the vendor must see)
UPSTREAMS = {
    "gpt-5-5": ("openai", "gpt-5.5"),
    "claude-haiku-4-5": ("anthropic", "claude-haiku-4-5"),
    "gemini-2-5-flash": ("gemini", "gemini-2.5-flash"),
}


@pytest.fixture(scope="module")
async def key(stack: Stack) -> str:
    return (await stack.create_key("conformance", "k"))[1]


def _check_upstream(vendor: FakeVendorProcess, model: str, stream: bool) -> dict[str, Any]:
    protocol, upstream_model = UPSTREAMS[model]
    sent = vendor.requests()[-1]
    if protocol == "openai":
        assert sent["path"] == "/v1/chat/completions"
        assert sent["body"]["model"] == upstream_model
        assert sent["headers"]["authorization"] == f"Bearer {UPSTREAM_KEY}"
        assert sent["body"]["messages"][-1]["role"] == "user"
        if stream:
            assert sent["body"]["stream_options"]["include_usage"] is True
    elif protocol == "anthropic":
        assert sent["path"] == "/v1/messages"
        assert sent["body"]["model"] == upstream_model
        assert sent["headers"]["x-api-key"] == UPSTREAM_KEY
        assert sent["headers"]["anthropic-version"] == "2023-06-01"
        assert isinstance(sent["body"]["max_tokens"], int)
        assert sent["body"].get("stream", False) is stream
    else:
        method = "streamGenerateContent" if stream else "generateContent"
        assert sent["path"] == f"/v1beta/models/{upstream_model}:{method}"
        assert sent["headers"]["x-goog-api-key"] == UPSTREAM_KEY
        assert sent["body"]["contents"][-1]["role"] == "user"
        if stream:
            assert sent["query"] == {"alt": "sse"}
    # The caller's key never reaches a vendor.
    assert "sk-byts-" not in str(sent["headers"])
    return sent


@pytest.mark.parametrize("model", list(UPSTREAMS))
async def test_openai_sdk(model: str, stack: Stack, key: str, vendor: FakeVendorProcess) -> None:
    async with openai.AsyncOpenAI(
        base_url=f"{stack.edge_url}/v1", api_key=key, max_retries=0
    ) as client:
        vendor.reset()
        reply = await client.chat.completions.create(
            model=model,
            messages=[
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "hello"},
            ],
            max_tokens=50,
        )
        _check_upstream(vendor, model, stream=False)
        assert reply.choices[0].message.content == "fake: hello"
        assert reply.choices[0].finish_reason == "stop"
        assert reply.usage is not None
        assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (17, 9)
        assert reply.usage.prompt_tokens_details.cached_tokens == 5  # type: ignore[union-attr]

        vendor.reset()
        stream = await client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": "hello"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [chunk async for chunk in stream]
        _check_upstream(vendor, model, stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip() == "fake: hello"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 9


@pytest.mark.parametrize("model", list(UPSTREAMS))
async def test_anthropic_sdk(model: str, stack: Stack, key: str, vendor: FakeVendorProcess) -> None:
    async with anthropic.AsyncAnthropic(
        base_url=stack.edge_url, api_key=key, max_retries=0
    ) as client:
        vendor.reset()
        reply = await client.messages.create(
            model=model,
            max_tokens=50,
            system="Be brief.",
            messages=[{"role": "user", "content": "hello"}],
        )
        _check_upstream(vendor, model, stream=False)
        assert reply.content[0].type == "text" and reply.content[0].text == "fake: hello"
        assert reply.stop_reason == "end_turn"
        assert reply.usage.input_tokens == 12
        assert reply.usage.cache_read_input_tokens == 5
        assert reply.usage.output_tokens == 9

        vendor.reset()
        async with client.messages.stream(
            model=model, max_tokens=50, messages=[{"role": "user", "content": "hello"}]
        ) as stream:
            final = await stream.get_final_message()
        _check_upstream(vendor, model, stream=True)
    assert "".join(b.text for b in final.content if b.type == "text").strip() == "fake: hello"
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 9
    assert final.usage.input_tokens == 12


@pytest.mark.parametrize("model", list(UPSTREAMS))
async def test_google_genai_sdk(
    model: str, stack: Stack, key: str, vendor: FakeVendorProcess
) -> None:
    client = genai.Client(
        api_key=key, http_options=genai_types.HttpOptions(base_url=stack.edge_url)
    )
    vendor.reset()
    reply = await client.aio.models.generate_content(
        model=model,
        contents="hello",
        config=genai_types.GenerateContentConfig(
            system_instruction="Be brief.", max_output_tokens=50
        ),
    )
    _check_upstream(vendor, model, stream=False)
    assert reply.text == "fake: hello"
    assert reply.candidates[0].finish_reason == genai_types.FinishReason.STOP  # type: ignore[index]
    usage = reply.usage_metadata
    assert usage is not None
    assert (usage.prompt_token_count, usage.cached_content_token_count) == (17, 5)
    assert (usage.candidates_token_count, usage.thoughts_token_count) == (6, 3)

    vendor.reset()
    chunks = [
        c
        async for c in await client.aio.models.generate_content_stream(
            model=model, contents="hello"
        )
    ]
    _check_upstream(vendor, model, stream=True)
    assert "".join(c.text or "" for c in chunks).strip() == "fake: hello"
    assert chunks[-1].usage_metadata is not None
    assert chunks[-1].usage_metadata.total_token_count == 26
