"""Balances, holds, the ledger and settlement on SQLite and PostgreSQL.

The invariants checked after every scenario: balance = sum of the ledger, held = sum of the
open holds, and a balance never goes negative while holds cover the charges.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from bytespike.usage.v1 import usage_pb2
from bytespike_common import db
from bytespike_common.pricing import Prices, Rate
from bytespike_metering import credits
from bytespike_metering.holds import HoldOutcome, HoldResult, HoldWriter
from bytespike_metering.limits import MemoryLimiter
from bytespike_metering.schema import ledger
from bytespike_metering.server import MIGRATIONS, VERSION_TABLE
from bytespike_metering.settlement import Charge, Settler, record_charges
from bytespike_metering.store import MeteringStore, sqlite_insert

TTL = dt.timedelta(minutes=5)


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[MeteringStore]:
    engine = db.create_engine(database_url)
    await db.migrate(engine, MIGRATIONS, VERSION_TABLE)
    try:
        yield MeteringStore(engine, initial_credit=0)
    finally:
        await engine.dispose()


@pytest.fixture
def writer(store: MeteringStore) -> HoldWriter:
    return HoldWriter(store)


async def _assert_consistent(store: MeteringStore, account_id: str) -> dict[str, int]:
    audit = await store.audit(account_id)
    assert audit["balance"] == audit["ledger_sum"], audit
    assert audit["held"] == audit["open_holds_sum"], audit
    return audit


async def _top_up(store: MeteringStore, account_id: str, amount: int, key: str) -> None:
    await credits.credit(
        store,
        account_id=account_id,
        kind="top_up",
        amount=amount,
        reason="test",
        idempotency_key=key,
        actor="tests",
    )


async def _hold(
    writer: HoldWriter, request_id: str, amount: int, account: str = "acct"
) -> HoldOutcome:
    return await writer.open_hold(
        request_id=request_id,
        account_id=account,
        key_id="key",
        model="m",
        amount=amount,
        estimated_tokens=0,
        ttl=TTL,
    )


def _charge(request_id: str, cost: int, account: str = "acct", **usage: Any) -> Charge:
    started = Timestamp()
    started.FromDatetime(dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC))
    event = usage_pb2.UsageEvent(
        request_id=request_id,
        account_id=account,
        key_id="key-b" if usage.pop("key", 0) else "key",
        model="m",
        usage=usage_pb2.Usage(**usage),
        started_at=started,
    )
    return Charge(event, cost)


@pytest.mark.parametrize("writers", [1, 5], ids=["one-writer", "five-replicas"])
async def test_fifty_concurrent_holds_with_credit_for_ten(
    store: MeteringStore, writers: int
) -> None:
    """One writer batches; five act like replicas racing on the same balance row."""
    if writers > 1 and store.engine.dialect.name == "sqlite":
        pytest.skip("SQLite is one metering replica by design")
    await _top_up(store, "acct", 1_000, "t1")
    pool = [HoldWriter(MeteringStore(store.engine)) for _ in range(writers)]
    outcomes = await asyncio.gather(*(_hold(pool[i % writers], f"req-{i}", 100) for i in range(50)))
    opened = [o for o in outcomes if o.result is HoldResult.OPENED]
    assert len(opened) == 10
    assert {o.result for o in outcomes} == {HoldResult.OPENED, HoldResult.INSUFFICIENT_CREDIT}
    audit = await _assert_consistent(store, "acct")
    assert audit["held"] == 1_000 and audit["balance"] == 1_000

    # Every admitted request costs its full hold: the balance lands exactly on zero.
    ids = [f"req-{i}" for i, o in enumerate(outcomes) if o.result is HoldResult.OPENED]
    await record_charges(store, [_charge(r, 100, input_tokens=1) for r in ids])
    audit = await _assert_consistent(store, "acct")
    assert audit == {"balance": 0, "ledger_sum": 0, "held": 0, "open_holds_sum": 0}


async def test_settlement_charges_once_and_releases_the_hold(
    store: MeteringStore, writer: HoldWriter
) -> None:
    await _top_up(store, "acct", 10_000, "t1")
    assert (await _hold(writer, "req-1", 5_000)).result is HoldResult.OPENED
    assert (await _hold(writer, "req-1", 5_000)).result is HoldResult.EXISTING
    assert (await store.audit("acct"))["held"] == 5_000

    new, released = await record_charges(store, [_charge("req-1", 1_234, output_tokens=7)])
    assert [c.event.request_id for c in new] == ["req-1"]
    assert [(h.request_id, h.amount) for h in released] == [("req-1", 5_000)]
    # Redelivered, alone and inside a batch with itself: nothing changes.
    assert await record_charges(store, [_charge("req-1", 1_234)]) == ([], [])
    new, _ = await record_charges(store, [_charge("req-2", 10), _charge("req-2", 10)])
    assert len(new) == 1
    audit = await _assert_consistent(store, "acct")
    assert audit["balance"] == 10_000 - 1_234 - 10 and audit["held"] == 0
    assert await store.hold_status("req-1") == "settled"
    record = await store.usage("req-1")
    assert record is not None and record["cost"] == 1_234 and record["output_tokens"] == 7


async def test_zero_cost_requests_pass_without_credit(
    store: MeteringStore, writer: HoldWriter
) -> None:
    assert (await _hold(writer, "free", 0)).result is HoldResult.OPENED
    assert (await _hold(writer, "paid", 1)).result is HoldResult.INSUFFICIENT_CREDIT
    await record_charges(store, [_charge("free", 0, input_tokens=5)])
    entries = await credits.list_ledger(store, "acct", limit=10)
    assert entries == []  # nothing charged, nothing written
    await _assert_consistent(store, "acct")


async def test_disabled_accounts_are_refused(store: MeteringStore, writer: HoldWriter) -> None:
    await _top_up(store, "acct", 1_000, "t1")
    row = await credits.set_disabled(store, "acct", True)
    assert row["disabled"]
    assert (await _hold(writer, "r1", 0)).result is HoldResult.ACCOUNT_DISABLED
    await credits.set_disabled(store, "acct", False)
    assert (await _hold(writer, "r1", 10)).result is HoldResult.OPENED


async def test_initial_grant_is_a_ledger_row(database_url: str) -> None:
    engine = db.create_engine(database_url)
    await db.migrate(engine, MIGRATIONS, VERSION_TABLE)
    try:
        store = MeteringStore(engine, initial_credit=5_000)
        assert (await store.balance("new"))["balance"] == 5_000
        # A second replica (another store) does not grant twice.
        assert (await MeteringStore(engine, initial_credit=5_000).balance("new"))[
            "balance"
        ] == 5_000
        [grant] = await credits.list_ledger(store, "new", limit=10)
        assert (grant["kind"], grant["amount"], grant["actor"]) == ("grant", 5_000, "metering")
        await _assert_consistent(store, "new")
    finally:
        await engine.dispose()


async def test_top_up_and_adjust_are_idempotent(store: MeteringStore) -> None:
    first = await credits.credit(
        store,
        account_id="acct",
        kind="top_up",
        amount=700,
        reason="invoice 42",
        idempotency_key="inv-42",
        actor="alice",
    )
    again = await credits.credit(
        store,
        account_id="acct",
        kind="top_up",
        amount=700,
        reason="invoice 42",
        idempotency_key="inv-42",
        actor="alice",
    )
    assert not first.replayed and again.replayed
    assert again.entry["id"] == first.entry["id"] and again.balance["balance"] == 700
    with pytest.raises(credits.IdempotencyConflict):
        await credits.credit(
            store,
            account_id="acct",
            kind="top_up",
            amount=900,
            reason="typo",
            idempotency_key="inv-42",
            actor="alice",
        )
    down = await credits.credit(
        store,
        account_id="acct",
        kind="adjustment",
        amount=-200,
        reason="refund reversal",
        idempotency_key="adj-1",
        actor="bob",
    )
    assert down.balance["balance"] == 500
    assert down.entry["reason"] == "refund reversal" and down.entry["actor"] == "bob"
    await _assert_consistent(store, "acct")


async def test_expired_holds_give_their_credit_back(
    store: MeteringStore, writer: HoldWriter
) -> None:
    await _top_up(store, "acct", 100, "t1")
    assert (await _hold(writer, "r1", 100)).result is HoldResult.OPENED
    assert (await _hold(writer, "r2", 1)).result is HoldResult.INSUFFICIENT_CREDIT
    assert await store.expire_holds() == []  # not yet
    expired = await store.expire_holds(dt.datetime.now(dt.UTC) + TTL * 2)
    assert [h.request_id for h in expired] == ["r1"]
    assert await store.hold_status("r1") == "expired"
    assert (await _hold(writer, "r2", 100)).result is HoldResult.OPENED
    # Usage arriving after expiry is still charged; the expired hold is not released twice.
    await record_charges(store, [_charge("r1", 60)])
    audit = await _assert_consistent(store, "acct")
    assert audit["balance"] == 40 and audit["held"] == 100


async def test_usage_is_aggregated_per_account_only(store: MeteringStore) -> None:
    await record_charges(
        store,
        [
            _charge("a1", 10, input_tokens=1, output_tokens=2),
            _charge("a2", 20, input_tokens=3, output_tokens=4, key=1),
            _charge("a3", 30, input_tokens=5, cache_read_tokens=6, key=1),
            _charge("b1", 999, account="other", input_tokens=1000),
        ],
    )
    total = await credits.usage(store, "acct")
    assert total == [
        {
            "requests": 3,
            "input_tokens": 9,
            "cache_read_tokens": 6,
            "cache_write_tokens": 0,
            "output_tokens": 6,
            "reasoning_tokens": 0,
            "images": 0,
            "cost": 60,
        }
    ]
    by_key = await credits.usage(store, "acct", group_by=["key_id", "day"])
    assert [(r["key_id"], r["day"], r["requests"], r["cost"]) for r in by_key] == [
        ("key", "2026-03-01", 1, 10),
        ("key-b", "2026-03-01", 2, 50),
    ]
    later = dt.datetime(2026, 3, 2, tzinfo=dt.UTC)
    assert await credits.usage(store, "acct", start=later) == []
    assert (await credits.usage(store, "acct", end=later))[0]["requests"] == 3
    assert await credits.usage(store, "nobody") == []
    ledger = await credits.list_ledger(store, "acct", limit=2)
    assert [e["request_id"] for e in ledger] == ["a3", "a2"]
    older = await credits.list_ledger(store, "acct", limit=10, before_id=ledger[-1]["id"])
    assert [e["request_id"] for e in older] == ["a1"]


async def test_settler_prices_from_the_rate_card(store: MeteringStore) -> None:
    class Card:
        def rate(self, model: str, group: str) -> Rate | None:
            return Rate(Prices(input_per_mtok=2_000_000)) if model == "m" else None

    settler = Settler(store, MemoryLimiter(60_000), Card)  # type: ignore[arg-type]
    charged = _charge("r1", 0, input_tokens=1_500).event
    unknown = usage_pb2.UsageEvent(request_id="r2", account_id="acct", model="gone")
    assert await settler.settle([charged, unknown]) == 2
    assert (await store.usage("r1") or {})["cost"] == 3_000
    assert (await store.usage("r2") or {})["cost"] == 0
    assert (await _assert_consistent(store, "acct"))["balance"] == -3_000


def test_a_sqlite_insert_must_name_every_column_of_its_table() -> None:
    columns = [c.name for c in ledger.columns if c.name != "id"]
    sql = sqlite_insert(ledger, columns, generated=("id",))
    assert sql.startswith("INSERT INTO ledger (") and sql.count("?") == len(columns)
    with pytest.raises(RuntimeError, match="ledger changed"):
        sqlite_insert(ledger, columns[:-1], generated=("id",))
