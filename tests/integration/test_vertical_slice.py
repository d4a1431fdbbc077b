"""One real request end to end: openai SDK → edge → auth, metering, router → vendor → NATS."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from typing import Any

import httpx
import openai
import pytest

from bytespike_common.devstack import Stack
from tests.fakes.process import FakeVendorProcess
from tests.integration.conftest import UPSTREAM_KEY

pytestmark = pytest.mark.integration


def _usage_record(stack: Stack, request_id: str, timeout: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with sqlite3.connect(stack.data_dir / "metering.db") as conn:
            conn.row_factory = sqlite3.Row
            row = conn.execute(
                "SELECT * FROM usage_records WHERE request_id = ?", (request_id,)
            ).fetchone()
            hold = conn.execute(
                "SELECT status FROM holds WHERE request_id = ?", (request_id,)
            ).fetchone()
        # Admitted from a lease (the usual case) there is no hold of its own to settle.
        if row is not None and (hold is None or hold["status"] == "settled"):
            return dict(row)
        time.sleep(0.1)
    raise AssertionError(f"usage for {request_id} never reached metering")


@pytest.fixture(scope="module")
async def key(stack: Stack) -> str:
    _, plaintext = await stack.create_key("acme", "integration")
    return plaintext


def _client(stack: Stack, key: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{stack.edge_url}/v1", api_key=key, max_retries=0)


async def test_completion_through_the_real_openai_provider(
    stack: Stack, key: str, vendor: FakeVendorProcess
) -> None:
    vendor.reset()
    async with _client(stack, key) as client:
        raw = await client.chat.completions.with_raw_response.create(
            model="gpt-5-5", messages=[{"role": "user", "content": "hello there"}], temperature=0.2
        )
    completion = raw.parse()
    assert completion.choices[0].message.content == "fake: hello there"
    assert completion.usage is not None and completion.usage.prompt_tokens == 17

    sent = vendor.requests()[-1]
    assert sent["path"] == "/v1/chat/completions"
    assert sent["body"]["model"] == "gpt-5.5"
    assert sent["body"]["temperature"] == 0.2
    assert sent["headers"]["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert key not in str(sent["headers"])

    record = _usage_record(stack, raw.headers["x-request-id"])
    assert record["model"] == "gpt-5-5"
    assert (record["input_tokens"], record["cache_read_tokens"]) == (12, 5)
    assert (record["output_tokens"], record["reasoning_tokens"]) == (9, 3)
    assert record["status_code"] == 200 and record["finish_reason"] == "stop"
    assert record["estimated"] == 0 and record["stream"] == 0


async def test_stream_relays_incrementally_and_bills(
    stack: Stack, key: str, vendor: FakeVendorProcess
) -> None:
    vendor.reset()
    async with _client(stack, key) as client:
        raw = await client.chat.completions.with_raw_response.create(
            model="gpt-5-5", messages=[{"role": "user", "content": "stream me"}], stream=True
        )
        chunks = [chunk async for chunk in raw.parse()]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "fake: stream me "
    # The client did not ask for usage: no usage chunk reaches it...
    assert all(c.usage is None for c in chunks)
    # ...but the gateway asked the vendor for it, and billed it.
    assert vendor.requests()[-1]["body"]["stream_options"] == {"include_usage": True}
    record = _usage_record(stack, raw.headers["x-request-id"])
    assert (record["input_tokens"], record["output_tokens"], record["stream"]) == (12, 9, 1)


async def test_stream_with_include_usage_passes_the_usage_chunk(stack: Stack, key: str) -> None:
    async with _client(stack, key) as client:
        stream = await client.chat.completions.create(
            model="gpt-5-5",
            messages=[{"role": "user", "content": "x"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [chunk async for chunk in stream]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 9


async def test_offline_mock_model(stack: Stack, key: str) -> None:
    async with _client(stack, key) as client:
        reply = await client.chat.completions.create(
            model="mock-echo", messages=[{"role": "user", "content": "ping"}]
        )
    assert reply.choices[0].message.content == "echo: ping"


async def test_caller_errors_are_openai_errors_never_500(stack: Stack, key: str) -> None:
    async with _client(stack, key) as client:
        with pytest.raises(openai.NotFoundError) as missing:
            await client.chat.completions.create(
                model="no-such-model", messages=[{"role": "user", "content": "x"}]
            )
        assert missing.value.code == "model_not_found"
        with pytest.raises(openai.InternalServerError) as unavailable:
            await client.chat.completions.create(
                model="kimi-k2-6", messages=[{"role": "user", "content": "x"}]
            )
        assert unavailable.value.status_code == 503
        assert "MOONSHOT_API_KEY" in unavailable.value.message
    async with _client(stack, "sk-byts-" + "x" * 43) as stranger:
        with pytest.raises(openai.AuthenticationError):
            await stranger.chat.completions.create(
                model="mock-echo", messages=[{"role": "user", "content": "x"}]
            )
    async with httpx.AsyncClient(base_url=stack.edge_url) as http:
        headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}
        cases = [
            (b"{not json", 400),
            (b"[]", 400),
            (b'{"model": "mock-echo"}', 400),
            (b'{"model": 7, "messages": [{"role": "user", "content": "x"}]}', 400),
        ]
        for body, status in cases:
            response = await http.post("/v1/chat/completions", content=body, headers=headers)
            assert response.status_code == status, body
            assert set(response.json()["error"]) == {"message", "type", "param", "code"}
        missing_key = await http.post("/v1/chat/completions", json={"model": "mock-echo"})
        assert missing_key.status_code == 401
        too_big = await http.post(
            "/v1/chat/completions",
            content=b'{"model": "mock-echo", "pad": "' + b"x" * (33 * 1024 * 1024) + b'"}',
            headers=headers,
        )
        assert too_big.status_code == 413
        assert too_big.json()["error"]["type"] == "invalid_request_error"


async def test_revoked_key_is_refused_within_a_second(stack: Stack) -> None:
    key_id, plaintext = await stack.create_key("acme", "to-revoke")
    async with _client(stack, plaintext) as client:
        await client.chat.completions.create(
            model="mock-echo", messages=[{"role": "user", "content": "cached now"}]
        )
        await stack.revoke_key(key_id)
        await asyncio.sleep(1.0)
        with pytest.raises(openai.AuthenticationError) as refused:
            await client.chat.completions.create(
                model="mock-echo", messages=[{"role": "user", "content": "x"}]
            )
    assert refused.value.status_code == 401
    assert refused.value.body["type"] == "invalid_request_error"  # type: ignore[index]
