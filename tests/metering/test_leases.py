"""Admission leases end to end: metering's Lease RPC (real gRPC, router, JetStream, SQLite and
PostgreSQL) and the edge's `Admitter` reserving from leases against it.

Prices as in test_server: a request with 100 estimated input and 100 max output tokens
reserves HOLD = 1,250 micro-credits; the usage of `_event` costs COST = 76.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import nats
import pytest
import sqlalchemy as sa

from bytespike.auth.v1 import auth_pb2
from bytespike.metering.v1 import metering_pb2
from bytespike.usage.v1 import usage_pb2
from bytespike_common.errors import (
    DependencyUnavailable,
    InsufficientCredit,
    PermissionDenied,
    RateLimited,
)
from bytespike_common.messaging import ACCOUNT_STATUS_SUBJECT
from bytespike_edge.control.metering import Admitter
from bytespike_edge.control.routes import RouteWatcher
from bytespike_metering.schema import holds
from tests.metering.test_server import (
    COST,
    HOLD,
    Harness,
    _consistent,
    _event,
    _eventually,
    harness_for,
)


@pytest.fixture
async def harness(database_url: str, nats_url: str, tmp_path: Path) -> AsyncIterator[Harness]:
    async with harness_for(database_url, nats_url, tmp_path) as running:
        yield running


def _lease(lease_id: str, account: str = "acct_1", **extra: Any) -> metering_pb2.LeaseRequest:
    return metering_pb2.LeaseRequest(
        lease_id=lease_id, account_id=account, key_id="key_1", **{"need": HOLD, **extra}
    )


def _principal(account: str = "acct_1", **limits: int) -> auth_pb2.Principal:
    return auth_pb2.Principal(
        account_id=account,
        key_id="key_1",
        group="default",
        limits=auth_pb2.Limits(**limits),
    )


def _leased(request_id: str, lease_id: str, reserved: int, **usage: Any) -> usage_pb2.UsageEvent:
    event = _event(request_id, **usage)
    event.lease_id, event.reserved = lease_id, reserved
    return event


async def _lease_holds(harness: Harness, account: str) -> list[tuple[str, int, str]]:
    async with harness.store.engine.connect() as conn:
        rows = await conn.execute(
            sa.select(holds.c.id, holds.c.amount, holds.c.status)
            .where(holds.c.account_id == account)
            .where(holds.c.request_id.like("lease:%"))
        )
        return [(r.id, int(r.amount), r.status) for r in rows]


@contextlib.asynccontextmanager
async def edge_admitter(
    harness: Harness, nats_url: str | None = None, **options: Any
) -> AsyncIterator[Admitter]:
    """The edge's Admitter on its own channel, priced from the router's live route table."""
    metering = harness.channel
    assert metering is not None
    async with grpc.aio.insecure_channel(harness.settings.router_target) as router:
        routes = RouteWatcher(router)
        watch = asyncio.create_task(routes.run())
        nc = await nats.connect(nats_url) if nats_url else None
        admitter = Admitter(metering, timeout=2.0, fail_open=False, routes=routes, **options)
        try:
            await asyncio.wait_for(routes.ready.wait(), 10)
            await admitter.start(nc)
            yield admitter
        finally:
            await admitter.aclose()
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watch
            if nc is not None:
                await nc.close()


async def _admit(admitter: Admitter, principal: auth_pb2.Principal, n: int) -> Any:
    return await admitter.admit(
        f"req_{n}_{secrets.token_hex(3)}",
        principal,
        "m-1",
        estimated_input_tokens=100,
        max_output_tokens=100,
    )


async def test_a_lease_takes_a_share_and_settlement_draws_it_down(harness: Harness) -> None:
    await harness.top_up("acct_1", 100_000)
    lease = await harness.stub.Lease(_lease("lease_a", want=50_000))
    # At most a quarter of the available credit (lease_share = 4), at least the need.
    assert (lease.granted, lease.lease_id, lease.amount) == (True, "lease_a", 25_000)
    assert lease.leasable and lease.ttl_ms == 10_000
    # Retried with the same id: the same lease, nothing more reserved.
    assert (await harness.stub.Lease(_lease("lease_a", want=50_000))).amount == 25_000
    assert (await harness.balance("acct_1")).held == 25_000

    await harness.publish(_leased("req_1", "lease_a", HOLD))
    await harness.publish(_leased("req_1", "lease_a", HOLD), "replayed")
    await harness.publish(_leased("req_2", "lease_a", HOLD))

    async def settled() -> bool:
        return (await harness.balance("acct_1")).balance == 100_000 - 2 * COST

    await _eventually(settled)
    assert (await harness.balance("acct_1")).held == 25_000 - 2 * HOLD
    await _consistent(harness.store, "acct_1")

    # The edge hands back what it never reserved: the lease is drawn to zero and closed.
    handed = metering_pb2.LeaseRelease(lease_id="lease_a", unused=25_000 - 2 * HOLD)
    reply = await harness.stub.Lease(metering_pb2.LeaseRequest(release=handed, release_only=True))
    assert not reply.granted
    balance = await harness.balance("acct_1")
    assert (balance.held, balance.available) == (0, 100_000 - 2 * COST)
    assert await _lease_holds(harness, "acct_1") == [("lease_a", 0, "settled")]
    await _consistent(harness.store, "acct_1")


async def test_leases_shrink_to_one_request_and_then_refuse(harness: Harness) -> None:
    await harness.top_up("acct_1", 3 * HOLD)
    first = await harness.stub.Lease(_lease("l1", want=100 * HOLD))
    assert first.amount == HOLD  # a quarter of 3,750 is below the need: exactly the need
    second = await harness.stub.Lease(_lease("l2", want=100 * HOLD))
    third = await harness.stub.Lease(_lease("l3", want=100 * HOLD))
    assert (second.amount, third.amount) == (HOLD, HOLD)
    refused = await harness.stub.Lease(_lease("l4", want=100 * HOLD))
    assert not refused.granted and refused.denial == metering_pb2.DENIAL_INSUFFICIENT_CREDIT
    assert "Insufficient credit" in refused.message
    # Handing a lease back in the next call makes its credit available to that call.
    back = metering_pb2.LeaseRelease(lease_id="l1", unused=HOLD)
    assert (await harness.stub.Lease(_lease("l5", release=back))).granted
    await _consistent(harness.store, "acct_1")

    await harness.admin.SetAccountStatus(
        metering_pb2.SetAccountStatusRequest(account_id="acct_1", disabled=True)
    )
    disabled = await harness.stub.Lease(_lease("l6"))
    assert disabled.denial == metering_pb2.DENIAL_ACCOUNT_DISABLED


async def test_lease_validation_and_expiry(harness: Harness) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as invalid:
        await harness.stub.Lease(metering_pb2.LeaseRequest(account_id="acct_1"))
    assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError):
        await harness.stub.Lease(metering_pb2.LeaseRequest(release_only=True))
    # A lease for free requests only holds nothing.
    free = await harness.stub.Lease(_lease("free_lease", account="nobody", need=0))
    assert (free.granted, free.amount) == (True, 0)
    assert await _lease_holds(harness, "nobody") == []

    await harness.top_up("acct_1", 100_000)
    await harness.stub.Lease(_lease("stale", want=10_000))
    expired = await harness.store.expire_holds(dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))
    assert [h.request_id for h in expired] == ["lease:stale"]
    assert (await harness.balance("acct_1")).held == 0
    await _consistent(harness.store, "acct_1")


async def test_an_account_concurrency_policy_is_not_leasable(
    database_url: str, nats_url: str, tmp_path: Path
) -> None:
    async with harness_for(database_url, nats_url, tmp_path, account_concurrency=2) as harness:
        await harness.top_up("acct_1", 100_000)
        reply = await harness.stub.Lease(_lease("l_conc"))
        assert (reply.granted, reply.leasable) == (False, False)
        async with edge_admitter(harness) as admitter:
            # So the edge admits this account request by request, through Admit's holds.
            admissions = [await _admit(admitter, _principal(), i) for i in range(2)]
            assert all(a.hold_id and not a.lease_id for a in admissions)
            with pytest.raises(RateLimited):
                await _admit(admitter, _principal(), 2)


async def test_the_edge_admits_exactly_what_the_credit_covers(harness: Harness) -> None:
    await harness.top_up("acct_1", 10 * HOLD)
    async with edge_admitter(harness) as admitter:
        results = await asyncio.gather(
            *(_admit(admitter, _principal(), i) for i in range(50)), return_exceptions=True
        )
    admitted = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, BaseException)]
    assert len(admitted) == 10 and all(a.lease_id and a.reserved == HOLD for a in admitted)
    assert refused and all(isinstance(r, InsufficientCredit) for r in refused)
    # Settling them all at their full reservation spends exactly the balance.
    full: dict[str, Any] = {"input_tokens": 0, "cache_write_tokens": 100, "output_tokens": 100}
    for i, admission in enumerate(admitted):
        await harness.publish(_leased(f"full_{i}", admission.lease_id, admission.reserved, **full))

    async def spent() -> bool:
        audit = await harness.store.audit("acct_1")
        return audit["balance"] == 0 and audit["held"] == 0

    await _eventually(spent)
    await _consistent(harness.store, "acct_1")


async def test_the_edge_reserves_locally_and_hands_back_on_close(harness: Harness) -> None:
    await harness.top_up("acct_1", 10_000_000)
    async with edge_admitter(harness, lease_requests=100) as admitter:
        admissions = [await _admit(admitter, _principal(), i) for i in range(150)]
        # 150 requests, a few leases: the first covers 100 requests' worth.
        leases = await _lease_holds(harness, "acct_1")
        assert 1 <= len(leases) <= 3, leases
        assert {a.lease_id for a in admissions} <= {lease_id for lease_id, _, _ in leases}
        # A key with its own limits is counted centrally: one Admit hold per request.
        limited = await _admit(admitter, _principal(rpm=100), 999)
        assert limited.hold_id and not limited.lease_id
    # Closed (edge shutdown): only what its requests reserved (none has settled) is held.
    reserved = sum(a.reserved for a in admissions)

    async def handed_back() -> bool:
        return (await harness.balance("acct_1")).held == reserved + HOLD

    await _eventually(handed_back)
    await _consistent(harness.store, "acct_1")


async def test_a_disabled_account_is_refused_at_once(harness: Harness, nats_url: str) -> None:
    await harness.top_up("acct_1", 1_000_000)
    nc = await nats.connect(nats_url)
    pushed: asyncio.Queue[bytes] = asyncio.Queue()

    async def on_push(msg: Any) -> None:
        await pushed.put(msg.data)

    await nc.subscribe(ACCOUNT_STATUS_SUBJECT, cb=on_push)
    try:
        async with edge_admitter(harness, nats_url) as admitter:
            assert (await _admit(admitter, _principal(), 0)).lease_id
            await harness.admin.SetAccountStatus(
                metering_pb2.SetAccountStatusRequest(account_id="acct_1", disabled=True)
            )
            balance = metering_pb2.Balance.FromString(await asyncio.wait_for(pushed.get(), 2))
            assert (balance.account_id, balance.disabled) == ("acct_1", True)

            async def refused() -> bool:
                try:
                    await _admit(admitter, _principal(), 1)
                except PermissionDenied:
                    return True
                return False

            await _eventually(refused, timeout=1.0)
    finally:
        await nc.close()


async def test_metering_down_refuses_new_leases_but_not_live_ones(harness: Harness) -> None:
    await harness.top_up("acct_1", 1_000_000)
    async with edge_admitter(harness) as admitter:
        await _admit(admitter, _principal(), 0)
        # Point the edge at a metering that is not there: the live lease still admits ...
        dead = grpc.aio.insecure_channel("127.0.0.1:1")
        assert admitter.leases is not None
        admitter.leases._stub = type(admitter.leases._stub)(dead)
        assert (await _admit(admitter, _principal(), 1)).lease_id
        # ... an account without one is refused with 503 (fail mode "closed").
        with pytest.raises(DependencyUnavailable):
            await _admit(admitter, _principal("acct_2"), 2)
        await dead.close()


async def test_a_hand_back_metering_missed_is_retried(harness: Harness) -> None:
    await harness.top_up("acct_1", 1_000_000)
    async with edge_admitter(harness) as admitter:
        admission = await _admit(admitter, _principal(), 0)
        book = admitter.leases
        assert book is not None
        live = book._stub
        # Metering restarting: the hand-back is not delivered ...
        dead = grpc.aio.insecure_channel("127.0.0.1:1")
        book._stub = type(live)(dead)
        book.revoke("acct_1")

        async def missed() -> bool:
            return bool(book._unreturned)

        await _eventually(missed)
        # ... and once metering is back, the next sweep delivers it.
        book._stub = live
        book.sweep()

        async def returned() -> bool:
            return (await harness.balance("acct_1")).held == admission.reserved

        await _eventually(returned)
        await dead.close()
    await _consistent(harness.store, "acct_1")
