"""The same request over the three client protocols is billed identically (issue: metering).

Each upstream protocol reports the same usage in its own convention (the fake vendor:
canonically 12 uncached input, 5 cache-read, 9 output); the ledger must hold the same
charge whichever client protocol asked, equal to the hand-computed cost.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time

import anthropic
import openai
import pytest
from google import genai
from google.genai import types as genai_types

from bytespike_common.devstack import Stack

pytestmark = pytest.mark.integration

# micro-credits: Σ tokens * price per 1M (catalog/catalog.yaml), rounded half up once.
EXPECTED = {
    "gpt-5-5": 106,  # 12 * 1.25 + 5 * 0.125 + 9 * 10 = 105.625
    "claude-haiku-4-5": 58,  # 12 * 1 + 5 * 0.1 + 9 * 5 = 57.5
    "gemini-2-5-flash": 26,  # 12 * 0.3 + 5 * 0.03 + 9 * 2.5 = 26.25
}


async def _charges(stack: Stack, key_id: str, count: int) -> list[int]:
    deadline = time.monotonic() + 15
    while True:
        with sqlite3.connect(stack.data_dir / "metering.db") as conn:
            rows = conn.execute(
                "SELECT amount FROM ledger WHERE key_id = ? AND request_id IS NOT NULL", (key_id,)
            ).fetchall()
        if len(rows) >= count or time.monotonic() > deadline:
            return [-amount for (amount,) in rows]
        await asyncio.sleep(0.1)


@pytest.mark.parametrize("model", list(EXPECTED))
async def test_identical_ledger_entries_over_three_protocols(stack: Stack, model: str) -> None:
    key_id, key = await stack.create_key("billing-3p", f"k-{model}")
    prompt = "bill me"
    async with openai.AsyncOpenAI(base_url=f"{stack.edge_url}/v1", api_key=key) as oai:
        await oai.chat.completions.create(
            model=model, max_tokens=64, messages=[{"role": "user", "content": prompt}]
        )
    async with anthropic.AsyncAnthropic(base_url=stack.edge_url, api_key=key) as ant:
        await ant.messages.create(
            model=model, max_tokens=64, messages=[{"role": "user", "content": prompt}]
        )
    gem = genai.Client(api_key=key, http_options=genai_types.HttpOptions(base_url=stack.edge_url))
    await gem.aio.models.generate_content(
        model=model, contents=prompt, config=genai_types.GenerateContentConfig(max_output_tokens=64)
    )
    assert await _charges(stack, key_id, 3) == [EXPECTED[model]] * 3
