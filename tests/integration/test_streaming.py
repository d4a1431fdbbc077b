"""Streams as clients live them: keepalives during silences, and walking away mid-stream."""

from __future__ import annotations

import asyncio
import sqlite3
import time

import httpx
import openai
import orjson
import pytest

from bytespike_common.devstack import Stack
from tests.fakes.process import FakeVendorProcess

pytestmark = pytest.mark.integration

CHUNK = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m"}


def _frames(words: list[str]) -> list[str]:
    return [
        "data: "
        + orjson.dumps({**CHUNK, "choices": [{"index": 0, "delta": {"content": w}}]}).decode()
        for w in words
    ]


@pytest.fixture(scope="module")
async def key(stack: Stack) -> str:
    return (await stack.create_key("streams", "k"))[1]


async def test_keepalives_fill_long_silences(
    stack: Stack, key: str, vendor: FakeVendorProcess
) -> None:
    vendor.reset()
    vendor.script({"sse": [*_frames(["slow ", "answer"]), "data: [DONE]"], "chunk_delay": 1.0})
    async with (
        httpx.AsyncClient(base_url=stack.edge_url, timeout=10) as http,
        http.stream(
            "POST",
            "/v1/chat/completions",
            headers={"authorization": f"Bearer {key}"},
            json={
                "model": "gpt-5-5",
                "stream": True,
                "messages": [{"role": "user", "content": "x"}],
            },
        ) as response,
    ):
        lines = [line async for line in response.aiter_lines()]
    assert lines.count(": keepalive") >= 2
    assert lines[-2:] == ["data: [DONE]", ""] or lines[-1] == "data: [DONE]"

    vendor.script({"sse": [*_frames(["still ", "parses"]), "data: [DONE]"], "chunk_delay": 1.0})
    async with openai.AsyncOpenAI(base_url=f"{stack.edge_url}/v1", api_key=key) as client:
        stream = await client.chat.completions.create(
            model="gpt-5-5", messages=[{"role": "user", "content": "x"}], stream=True
        )
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "still parses"


async def test_client_disconnect_cancels_upstream_and_bills_what_was_sent(
    stack: Stack, key: str, vendor: FakeVendorProcess
) -> None:
    vendor.reset()
    vendor.script({"sse": _frames([f"w{i} " for i in range(40)]), "chunk_delay": 0.1})
    async with (
        httpx.AsyncClient(base_url=stack.edge_url, timeout=10) as http,
        http.stream(
            "POST",
            "/v1/chat/completions",
            headers={"authorization": f"Bearer {key}"},
            json={
                "model": "gpt-5-5",
                "stream": True,
                "messages": [{"role": "user", "content": "x"}],
            },
        ) as response,
    ):
        request_id = response.headers["x-request-id"]
        seen = 0
        async for line in response.aiter_lines():
            seen += line.startswith("data: ")
            if seen == 5:
                break
    deadline = time.monotonic() + 3
    while vendor.cancelled() == 0:
        assert time.monotonic() < deadline, "the upstream request was never cancelled"
        await asyncio.sleep(0.05)

    deadline = time.monotonic() + 10
    row = None
    while row is None and time.monotonic() < deadline:
        with sqlite3.connect(stack.data_dir / "metering.db") as conn:
            conn.row_factory = sqlite3.Row
            row = conn.execute(
                "SELECT * FROM usage_records WHERE request_id = ?", (request_id,)
            ).fetchone()
        await asyncio.sleep(0.1)
    assert row is not None
    assert row["client_disconnected"] == 1 and row["estimated"] == 1
    # Billed for what was generated (about one token per relayed frame), not for nothing.
    assert 3 <= row["output_tokens"] <= 40
