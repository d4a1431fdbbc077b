"""Throttling windows: sliding-window math on a fake clock, and both backends' semantics."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as redis

from bytespike_metering.limits import Limiter, MemoryLimiter, Slot, Window, retry_after_ms
from bytespike_metering.limits_redis import RedisLimiter

MINUTE_MS = 60_000


class Clock:
    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def limiter(request: pytest.FixtureRequest) -> AsyncIterator[Limiter]:
    if request.param == "memory":
        yield MemoryLimiter(MINUTE_MS)
        return
    url = os.environ.get("BYTESPIKE_TEST_REDIS_URL")
    if not url:
        pytest.skip("BYTESPIKE_TEST_REDIS_URL is not set")
    prefix = f"bytespike-test-{secrets.token_hex(6)}"
    backend = RedisLimiter.from_url(url, prefix=prefix, window_ms=MINUTE_MS)
    try:
        yield backend
    finally:
        client = redis.Redis.from_url(url)
        keys = [key async for key in client.scan_iter(match=f"{prefix}:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()
        await backend.aclose()


async def test_rpm_window_refuses_past_the_limit(limiter: Limiter) -> None:
    rpm = [Window("rpm:key:k", 3, 1, "key RPM")]
    for _ in range(3):
        assert (await limiter.acquire("acct", rpm, [], "r", 1000)).admitted
    refused = await limiter.acquire("acct", rpm, [], "r", 1000)
    assert not refused.admitted and refused.refused_by == "key RPM"
    assert 0 < refused.retry_after_ms <= 2 * MINUTE_MS
    # Another scope (account) has its own windows.
    assert (await limiter.acquire("other", rpm, [], "r", 1000)).admitted


async def test_all_or_nothing_across_limits(limiter: Limiter) -> None:
    tpm = Window("tpm:key:k", 100, 60, "key TPM")
    slot = Slot("conc:key:k", 1, "key concurrency")
    assert (await limiter.acquire("acct", [tpm], [slot], "req-1", 60_000)).admitted
    # The slot is full: the TPM amount must not be taken either.
    refused = await limiter.acquire("acct", [Window("tpm:key:k", 100, 40)], [slot], "req-2", 1)
    assert not refused.admitted and refused.refused_by == "key concurrency"
    await limiter.release("acct", ["conc:key:k"], "req-1")
    assert (await limiter.acquire("acct", [Window("tpm:key:k", 100, 40)], [slot], "r3", 1)).admitted


async def test_adjust_corrects_tokens_and_never_goes_negative(limiter: Limiter) -> None:
    window = Window("tpm:key:k", 1_000, 900)
    assert (await limiter.acquire("acct", [window], [], "r1", 1)).admitted
    assert not (
        await limiter.acquire("acct", [Window("tpm:key:k", 1_000, 200)], [], "r2", 1)
    ).admitted
    # Settlement found 100 actual tokens, not 900.
    await limiter.adjust("acct", [("tpm:key:k", -800)])
    assert (await limiter.acquire("acct", [Window("tpm:key:k", 1_000, 200)], [], "r3", 1)).admitted
    await limiter.adjust("acct", [("tpm:key:k", -10_000)])
    assert (
        await limiter.acquire("acct", [Window("tpm:key:k", 1_000, 1_000)], [], "r4", 1)
    ).admitted


async def test_a_request_larger_than_the_limit_never_fits(limiter: Limiter) -> None:
    refused = await limiter.acquire("acct", [Window("tpm:key:k", 100, 101)], [], "r", 1)
    assert not refused.admitted and refused.retry_after_ms == MINUTE_MS


async def test_concurrent_acquires_take_exactly_the_limit(limiter: Limiter) -> None:
    slot = Slot("conc:account", 10)
    results = await asyncio.gather(
        *(limiter.acquire("acct", [], [slot], f"req-{i}", 60_000) for i in range(50))
    )
    assert sum(r.admitted for r in results) == 10
    # Re-acquiring a slot one already holds is not a second slot.
    assert (await limiter.acquire("acct", [], [slot], "req-0", 60_000)).admitted is any(
        r.admitted for r in results[:1]
    )


async def test_slots_expire_if_never_released(limiter: Limiter) -> None:
    slot = Slot("conc:key:k", 1)
    assert (await limiter.acquire("acct", [], [slot], "lost", 50)).admitted
    assert not (await limiter.acquire("acct", [], [slot], "next", 50)).admitted
    await asyncio.sleep(0.1)
    assert (await limiter.acquire("acct", [], [slot], "next", 50)).admitted


async def test_sliding_window_on_a_fake_clock() -> None:
    clock = Clock(1_000 * 60.0)  # the start of a window
    limiter = MemoryLimiter(MINUTE_MS, clock=clock)
    rpm = [Window("rpm", 10, 1)]
    for _ in range(10):
        assert (await limiter.acquire("a", rpm, [], "r", 1)).admitted
    clock.now += 30
    refused = await limiter.acquire("a", rpm, [], "r", 1)
    # The next window must have slid 6 s (10 x 54/60 + 1 = 10) in: 30 s + 6 s from now.
    assert refused.retry_after_ms == 36_000
    clock.now += 35.999
    assert not (await limiter.acquire("a", rpm, [], "r", 1)).admitted
    clock.now += 0.001
    assert (await limiter.acquire("a", rpm, [], "r", 1)).admitted
    # Two windows later nothing of it remains.
    clock.now += 120
    for _ in range(10):
        assert (await limiter.acquire("a", rpm, [], "r", 1)).admitted


def test_retry_after_inside_the_current_window() -> None:
    # Previous window had 10, current has 2, 15 s into the window, limit 10: needs the
    # previous part down to 7, i.e. 10 x (1 - e/60) <= 7 -> e = 18 s -> 3 s from now.
    assert retry_after_ms(10, 2, 15_000, MINUTE_MS, limit=10, amount=1) == 3_000
