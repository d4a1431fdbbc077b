"""How big a lease the edge's `LeaseBook` asks for: `lease_requests` requests' worth, or about
`LEASE_HORIZON` of the account's recent spending when that is more, in whole requests (a
fake metering that grants what is asked, and a fake clock); and that the rest of a lease
handed back inside a renewal metering never received is handed back later."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest

from bytespike.metering.v1 import metering_pb2
from bytespike_edge.control import leases
from bytespike_edge.control.leases import LeaseBook

COST = 1_000


class FakeMetering:
    """Grants every lease what it wants (or `cap`), for `ttl_ms`; records the requests."""

    def __init__(self, cap: int | None = None, ttl_ms: int = 10_000) -> None:
        self.requests: list[metering_pb2.LeaseRequest] = []
        self.cap = cap
        self.ttl_ms = ttl_ms
        self.down = False

    async def Lease(self, request: metering_pb2.LeaseRequest, **_: Any) -> Any:
        if self.down:
            raise grpc.aio.AioRpcError(
                grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata()
            )
        self.requests.append(request)
        if request.release_only:
            return metering_pb2.LeaseResponse(leasable=True)
        amount = request.want if self.cap is None else min(request.want, self.cap)
        return metering_pb2.LeaseResponse(
            granted=True,
            lease_id=request.lease_id,
            amount=max(amount, request.need),
            ttl_ms=self.ttl_ms,
            leasable=True,
        )

    def wants(self) -> list[int]:
        return [r.want for r in self.requests if not r.release_only]


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


async def _settle() -> None:
    # Background renewals and hand-backs are tasks: let them run.
    for _ in range(5):
        await asyncio.sleep(0)


async def _spend(book: LeaseBook, clock: Clock, requests: int, seconds: float) -> None:
    """Admits `requests` requests of COST spread over `seconds`."""
    for _ in range(requests):
        clock.now += seconds / requests
        if book.reserve("acct", "key", COST) is None:
            assert await book.acquire("acct", "key", COST)
        await _settle()


async def test_a_busy_account_gets_leases_sized_by_its_rate() -> None:
    metering, clock = FakeMetering(), Clock()
    book = LeaseBook(metering, timeout=1.0, lease_requests=10, clock=clock)  # type: ignore[arg-type]
    # 8 requests in 0.2 s (40 requests/s): the first lease of 10 is down to a quarter.
    await _spend(book, clock, 8, 0.2)
    first, second = metering.wants()
    assert first == 10 * COST
    # The background renewal asks for about a second of that rate: 40-50 requests.
    assert 40 * COST <= second <= 50 * COST and second % COST == 0
    await book.aclose()


async def test_a_slow_account_keeps_the_configured_size() -> None:
    metering, clock = FakeMetering(), Clock()
    book = LeaseBook(metering, timeout=1.0, lease_requests=10, clock=clock)  # type: ignore[arg-type]
    # 2 requests a second: a second's worth is less than 10 requests.
    await _spend(book, clock, 9, 4.5)
    assert metering.wants() == [10 * COST, 10 * COST]
    await book.aclose()


async def test_sizing_is_bounded_by_the_ttl_and_a_burst_is_not_a_rate() -> None:
    metering, clock = FakeMetering(ttl_ms=500), Clock()
    book = LeaseBook(metering, timeout=1.0, lease_requests=10, clock=clock)  # type: ignore[arg-type]
    # 8 requests at once: measured over MIN_RATE_WINDOW (80/s), for a 0.5 s ttl: 40.
    await _spend(book, clock, 8, 0.0)
    assert metering.wants()[1] == int(8 * COST / leases.MIN_RATE_WINDOW * 0.5)
    await book.aclose()


async def test_every_micro_credit_granted_is_reserved_or_handed_back() -> None:
    # Metering grants at most a share of the available credit, whatever the edge asks for.
    metering, clock = FakeMetering(cap=12 * COST), Clock()
    book = LeaseBook(metering, timeout=1.0, lease_requests=10, clock=clock)  # type: ignore[arg-type]
    await _spend(book, clock, 60, 0.3)
    assert max(metering.wants()) > 12 * COST
    await book.aclose()
    granted = sum(min(want, 12 * COST) for want in metering.wants())
    handed_back = sum(r.release.unused for r in metering.requests if r.HasField("release"))
    assert granted == 60 * COST + handed_back


async def test_a_rest_handed_back_in_a_renewal_metering_missed_is_retried() -> None:
    # Metering grants a little less than asked: 10 requests and 25 more.
    metering, clock = FakeMetering(cap=10 * COST + 25), Clock()
    book = LeaseBook(metering, timeout=1.0, lease_requests=11, clock=clock)  # type: ignore[arg-type]
    assert await book.acquire("acct", "key", COST)
    # Metering restarts: the background renewal fails, the lease is drawn to 25.
    metering.down = True
    for _ in range(9):
        assert book.reserve("acct", "key", COST)
        await _settle()
    # Too little for a request: renewed inline, the rest handed back in that call, which
    # metering never receives.
    with pytest.raises(grpc.aio.AioRpcError):
        await book.acquire("acct", "key", COST)
    metering.down = False
    book.sweep()
    await _settle()
    [handed] = [r for r in metering.requests if r.release_only]
    assert (handed.release.unused, handed.release.lease_id) == (25, metering.requests[0].lease_id)
    await book.aclose()
