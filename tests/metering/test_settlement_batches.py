"""Settlement of mixed batches on SQLite (statements run in aiosqlite's thread in one hop)
and PostgreSQL (SQLAlchemy): lease draw-downs, per-request holds, replays, atomicity."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import pytest
import sqlalchemy as sa

from bytespike.metering.v1 import metering_pb2
from bytespike.usage.v1 import usage_pb2
from bytespike_common import db
from bytespike_metering import credits
from bytespike_metering.holds import HoldResult, HoldWriter
from bytespike_metering.leases import LEASE_REQUEST_PREFIX, LeaseGranter, LeasePolicy
from bytespike_metering.schema import ledger
from bytespike_metering.server import MIGRATIONS, VERSION_TABLE
from bytespike_metering.settlement import Charge, record_charges
from bytespike_metering.store import MeteringStore

POLICY = LeasePolicy(ttl=dt.timedelta(seconds=10), hold_ttl=dt.timedelta(seconds=120), share=1)


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[MeteringStore]:
    engine = db.create_engine(database_url)
    await db.migrate(engine, MIGRATIONS, VERSION_TABLE)
    try:
        store = MeteringStore(engine)
        await credits.credit(
            store,
            account_id="acct",
            kind="top_up",
            amount=100_000,
            reason="test",
            idempotency_key="t1",
            actor="tests",
        )
        yield store
    finally:
        await engine.dispose()


def _charge(request_id: str, cost: int, *, lease_id: str = "", reserved: int = 0) -> Charge:
    event = usage_pb2.UsageEvent(
        request_id=request_id,
        account_id="acct",
        key_id="key",
        model="m",
        lease_id=lease_id,
        reserved=reserved,
        usage=usage_pb2.Usage(input_tokens=3, output_tokens=4),
    )
    event.started_at.FromDatetime(dt.datetime(2026, 3, 1, 12, 0, 0, 250_000, tzinfo=dt.UTC))
    return Charge(event, cost)


async def _lease(store: MeteringStore, lease_id: str, amount: int) -> None:
    granter = LeaseGranter(store, HoldWriter(store), POLICY)
    reply = await granter.lease(
        metering_pb2.LeaseRequest(
            lease_id=lease_id, account_id="acct", key_id="key", want=amount, need=1
        )
    )
    assert reply.granted and reply.amount == amount


async def _consistent(store: MeteringStore) -> dict[str, int]:
    audit = await store.audit("acct")
    assert audit["balance"] == audit["ledger_sum"], audit
    assert audit["held"] == audit["open_holds_sum"], audit
    return audit


def test_sqlite_settles_in_one_hop(sqlite_url: str) -> None:
    assert MeteringStore(db.create_engine(sqlite_url)).direct_sqlite


async def test_a_mixed_batch_draws_leases_and_closes_holds(store: MeteringStore) -> None:
    await _lease(store, "lease-a", 5_000)
    await _lease(store, "lease-b", 300)
    writer = HoldWriter(store)
    admitted = await writer.open_hold(
        request_id="admitted",
        account_id="acct",
        key_id="key",
        model="m",
        amount=700,
        estimated_tokens=9,
        ttl=dt.timedelta(minutes=5),
    )
    assert admitted.result is HoldResult.OPENED
    assert (await _consistent(store))["held"] == 6_000

    batch = [
        _charge("r1", 120, lease_id="lease-a", reserved=1_000),
        _charge("r2", 0, lease_id="lease-a", reserved=1_000),
        # Drawn to zero: the lease is closed.
        _charge("r3", 250, lease_id="lease-b", reserved=300),
        _charge("admitted", 500),
        _charge("r1", 120, lease_id="lease-a", reserved=1_000),
    ]
    new, released = await record_charges(store, batch)
    assert [c.event.request_id for c in new] == ["r1", "r2", "r3", "admitted"]
    assert [(h.request_id, h.amount, h.estimated_tokens) for h in released] == [
        ("admitted", 700, 9)
    ]
    audit = await _consistent(store)
    assert audit["balance"] == 100_000 - 120 - 250 - 500
    assert audit["held"] == 3_000
    assert await store.hold_status(LEASE_REQUEST_PREFIX + "lease-a") == "open"
    assert await store.hold_status(LEASE_REQUEST_PREFIX + "lease-b") == "settled"
    assert await store.hold_status("admitted") == "settled"
    record = await store.usage("r1")
    assert record is not None
    assert (record["cost"], record["input_tokens"], record["output_tokens"]) == (120, 3, 4)
    assert record["started_at"].replace(tzinfo=None) == dt.datetime(2026, 3, 1, 12, 0, 0, 250_000)
    assert record["stream"] is False and record["estimated"] is False

    # Replayed, alone or with a new event: only the new one is charged and drawn.
    assert await record_charges(store, batch) == ([], [])
    new, _ = await record_charges(
        store, [batch[0], _charge("r4", 10, lease_id="lease-a", reserved=1_000)]
    )
    assert [c.event.request_id for c in new] == ["r4"]
    audit = await _consistent(store)
    assert audit["balance"] == 100_000 - 120 - 250 - 500 - 10 and audit["held"] == 2_000


async def test_a_failing_batch_changes_nothing(store: MeteringStore) -> None:
    await _lease(store, "lease-a", 5_000)
    # A ledger row already charging "r2" makes the batch's ledger insert fail.
    async with store.engine.begin() as conn:
        await conn.execute(
            sa.insert(ledger).values(
                account_id="other",
                kind="usage",
                amount=0,
                request_id="r2",
                created_at=dt.datetime.now(dt.UTC),
            )
        )
    before = await _consistent(store)
    with pytest.raises(Exception, match=r"(?i)unique"):
        await record_charges(
            store,
            [
                _charge("r1", 100, lease_id="lease-a", reserved=1_000),
                _charge("r2", 100, lease_id="lease-a", reserved=1_000),
            ],
        )
    assert await store.usage("r1") is None
    assert await _consistent(store) == before
    # The store is still usable afterwards.
    new, _ = await record_charges(store, [_charge("r3", 100, lease_id="lease-a", reserved=1_000)])
    assert len(new) == 1
    assert (await _consistent(store))["held"] == 4_000


async def test_holds_and_hand_backs_decide_in_one_hop_on_sqlite(
    store: MeteringStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On SQLite a batch of Admits and Leases, and a lease hand-back, each run their
    statements in one hop to aiosqlite's thread (a dozen hops each cost ~1.5 ms of CPU).
    The same batch on PostgreSQL: the same outcomes."""
    hops: list[str] = []
    on_thread = store.on_sqlite_thread

    async def counted(conn: Any, fn: Any) -> Any:
        hops.append("hop")
        return await on_thread(conn, fn)

    monkeypatch.setattr(store, "on_sqlite_thread", counted)
    writer = HoldWriter(store)
    ttl = dt.timedelta(minutes=5)

    def admit(request_id: str, amount: int, account: str = "acct") -> Any:
        return writer.open_hold(
            request_id=request_id,
            account_id=account,
            key_id="key",
            model="m",
            amount=amount,
            estimated_tokens=3,
            ttl=ttl,
        )

    def lease(lease_id: str, want: int, need: int) -> Any:
        return writer.open_hold(
            request_id=LEASE_REQUEST_PREFIX + lease_id,
            account_id="acct",
            key_id="key",
            model="",
            amount=want,
            estimated_tokens=0,
            ttl=ttl,
            minimum=need,
            share=2,
            hold_id=lease_id,
        )

    # One batch (queued together): in arrival order against 100,000 of credit.
    outcomes = await asyncio.gather(
        admit("a1", 30_000),
        lease("l1", 60_000, 1_000),  # half of the 70,000 left
        admit("a1", 30_000),  # a retry within the batch: the first hold, nothing more
        # The retry counted as reserved until the batch learns it was one: 5,000 left.
        admit("a2", 40_000),
        lease("l2", 0, 0),  # free requests only: nothing held
        admit("n1", 5, account="new-acct"),  # no credit at all
    )
    assert [(o.result, o.amount) for o in outcomes] == [
        (HoldResult.OPENED, 30_000),
        (HoldResult.OPENED, 35_000),
        (HoldResult.EXISTING, 30_000),
        (HoldResult.INSUFFICIENT_CREDIT, 0),
        (HoldResult.OPENED, 0),
        (HoldResult.INSUFFICIENT_CREDIT, 0),
    ]
    assert outcomes[3].available == 5_000
    assert (await _consistent(store))["held"] == 65_000
    # A retried Admit in a later batch finds its hold.
    again = await admit("a1", 30_000)
    assert (again.result, again.hold_id) == (HoldResult.EXISTING, outcomes[0].hold_id)

    granter = LeaseGranter(store, writer, POLICY)
    assert await granter.release("l1", 10_000) == 10_000
    assert await granter.release("l1", 99_999) == 25_000
    assert await store.hold_status(LEASE_REQUEST_PREFIX + "l1") == "settled"
    assert (await _consistent(store))["held"] == 30_000
    assert len(hops) == (4 if store.direct_sqlite else 0)
