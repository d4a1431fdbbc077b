"""Opening holds: the single writer that turns concurrent Admits into one transaction each batch.

Admits do not each open a transaction. They queue; one writer task per process takes
everything queued and decides it in one transaction, in arrival order:

1. lock the batch's balance rows (`SELECT … FOR UPDATE` on PostgreSQL, in account order;
   SQLite's single-writer lock in `store`),
2. in Python, walk the batch: a request is admitted only if `balance - held` still covers
   its amount after the requests before it; zero-cost requests need no credit,
3. insert the admitted holds (`ON CONFLICT (request_id) DO NOTHING`: a retried Admit
   finds its first hold and reserves nothing more),
4. add each account's newly held total to `balances.held` and commit.

So 50 concurrent Admits against credit for 10 admit exactly 10, whether they land in one
batch, many batches, or on several replicas sharing PostgreSQL; and a burst costs one
commit rather than one per request.

An admission lease (`leases`) is a hold of a variable size: it asks for `amount` but takes
only what the account can spare — at most `available // share`, never less than `minimum`
(below that it is refused like an Admit), so one edge's lease never takes all of an
account's credit while it has plenty, and near the end of the credit leases shrink to one
request's worth, which is exactly an Admit.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import enum
import logging
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from bytespike_common.db import insert_ignoring_duplicates
from bytespike_common.ids import new_id
from bytespike_metering.schema import balances, holds
from bytespike_metering.store import (
    OPEN,
    MeteringStore,
    now_utc,
    sqlite_in_chunks,
    sqlite_insert,
)

log = logging.getLogger(__name__)
# Admits decided per transaction at most.
MAX_BATCH = 256


class HoldResult(enum.Enum):
    OPENED = "opened"
    # A retried Admit: the request already has a hold.
    EXISTING = "existing"
    INSUFFICIENT_CREDIT = "insufficient_credit"
    ACCOUNT_DISABLED = "account_disabled"


@dataclass(frozen=True, slots=True)
class HoldOutcome:
    result: HoldResult
    hold_id: str = ""
    amount: int = 0
    # balance - held when refused for credit.
    available: int = 0


@dataclass(eq=False)
class HoldRequest:
    request_id: str
    account_id: str
    key_id: str
    model: str
    amount: int
    estimated_tokens: int
    ttl: dt.timedelta
    # Set for a lease: the least it may be granted; `amount` is then the most it wants.
    minimum: int | None = None
    # A lease takes at most this fraction (1/share) of the available credit.
    share: int = 1
    hold_id: str = field(default_factory=lambda: new_id("hold"))
    future: asyncio.Future[HoldOutcome] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


@dataclass
class _Account:
    balance: int
    held: int
    disabled: bool
    reserved: int = 0

    @property
    def available(self) -> int:
        return self.balance - self.held - self.reserved


class HoldWriter:
    def __init__(self, store: MeteringStore) -> None:
        self._store = store
        self._queue: list[HoldRequest] = []
        self._task: asyncio.Task[None] | None = None

    async def open_hold(
        self,
        *,
        request_id: str,
        account_id: str,
        key_id: str,
        model: str,
        amount: int,
        estimated_tokens: int,
        ttl: dt.timedelta,
        minimum: int | None = None,
        share: int = 1,
        hold_id: str = "",
    ) -> HoldOutcome:
        """Reserves `amount` of the account's available credit and opens the request's hold.

        With `minimum`, a lease: grants between `minimum` and `amount` (see the module doc).
        """
        request = HoldRequest(
            request_id, account_id, key_id, model, amount, estimated_tokens, ttl, minimum, share
        )
        if hold_id:
            request.hold_id = hold_id
        self._queue.append(request)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain(), name="hold-writer")
        return await request.future

    async def _drain(self) -> None:
        while self._queue:
            batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
            try:
                outcomes = await self._decide(batch)
            except Exception as exc:
                log.warning("opening %d holds failed: %r", len(batch), exc)
                for request in batch:
                    if not request.future.done():
                        request.future.set_exception(exc)
                continue
            for request, outcome in zip(batch, outcomes, strict=True):
                if not request.future.done():
                    request.future.set_result(outcome)

    async def _decide(self, batch: Sequence[HoldRequest]) -> list[HoldOutcome]:
        now = now_utc()
        store = self._store
        async with store.write(*(r.account_id for r in batch)) as conn:
            if store.direct_sqlite:
                # All of the batch's statements in one hop to aiosqlite's thread (see
                # `store`): a dozen hops per transaction were ~1.5 ms of CPU, which made
                # every Lease call cost milliseconds.
                stamps = _SqliteStamps(
                    store.sqlite_datetime(now),
                    {r.ttl: store.sqlite_datetime(now + r.ttl) for r in batch},
                )
                return await store.on_sqlite_thread(
                    conn, lambda db: _decide_on_sqlite(db, batch, stamps)
                )
            accounts = await _lock_accounts(conn, sorted({r.account_id for r in batch}))
            outcomes, admitted = _walk(batch, accounts)
            inserted = await _insert_holds(conn, admitted, now)
            existing = await _existing_holds(
                conn, [r.request_id for r in admitted if r.hold_id not in inserted]
            )
            _conclude(batch, accounts, outcomes, inserted, existing)
            await _reserve(conn, accounts, now)
        return [outcomes[i] for i in range(len(batch))]


def _walk(
    batch: Sequence[HoldRequest], accounts: dict[str, _Account]
) -> tuple[dict[int, HoldOutcome], list[HoldRequest]]:
    """Decides the batch in arrival order against the locked balances: the refusals (and
    free leases) by index, and the requests to insert a hold for."""
    outcomes: dict[int, HoldOutcome] = {}
    admitted: list[HoldRequest] = []
    for index, request in enumerate(batch):
        account = accounts[request.account_id]
        need = request.amount if request.minimum is None else request.minimum
        if account.disabled:
            outcomes[index] = HoldOutcome(HoldResult.ACCOUNT_DISABLED)
        elif need > 0 and account.available < need:
            outcomes[index] = HoldOutcome(
                HoldResult.INSUFFICIENT_CREDIT, available=account.available
            )
        else:
            if request.minimum is not None:
                spare = max(0, account.available) // max(1, request.share)
                request.amount = min(request.amount, max(need, spare))
                if request.amount == 0:
                    # A lease for free requests only: nothing to hold.
                    outcomes[index] = HoldOutcome(HoldResult.OPENED, request.hold_id)
                    continue
            account.reserved += request.amount
            admitted.append(request)
    return outcomes, admitted


def _conclude(
    batch: Sequence[HoldRequest],
    accounts: dict[str, _Account],
    outcomes: dict[int, HoldOutcome],
    inserted: set[str],
    existing: dict[str, tuple[str, int]],
) -> None:
    """The admitted requests' outcomes: a new hold, or (a retry) the hold the request
    already had, whose amount is then not reserved again."""
    for index, request in enumerate(batch):
        if index in outcomes:
            continue
        if request.hold_id in inserted:
            outcomes[index] = HoldOutcome(HoldResult.OPENED, request.hold_id, request.amount)
        else:
            accounts[request.account_id].reserved -= request.amount
            hold_id, amount = existing[request.request_id]
            outcomes[index] = HoldOutcome(HoldResult.EXISTING, hold_id, amount)


@dataclass(frozen=True, slots=True)
class _SqliteStamps:
    """Times as SQLAlchemy binds them on SQLite (`store.sqlite_datetime`), made before the
    hop: now, and each TTL's expiry."""

    now: Any
    expires: dict[dt.timedelta, Any]


def _decide_on_sqlite(
    db: sqlite3.Connection, batch: Sequence[HoldRequest], stamps: _SqliteStamps
) -> list[HoldOutcome]:
    """`HoldWriter._decide` on SQLite, in aiosqlite's thread: the same statements (the
    single-writer lock stands in for `FOR UPDATE`)."""
    account_ids = sorted({r.account_id for r in batch})
    accounts: dict[str, _Account] = {}
    for chunk, marks in sqlite_in_chunks(account_ids):
        for account_id, balance, held, disabled in db.execute(
            "SELECT account_id, balance, held, disabled FROM balances"
            f" WHERE account_id IN ({marks})",
            chunk,
        ):
            accounts[account_id] = _Account(balance, held, bool(disabled))
    outcomes, admitted = _walk(batch, accounts)
    inserted: set[str] = set()
    insert = db.cursor()
    for r in admitted:
        insert.execute(
            _SQLITE_INSERT_HOLD,
            (
                r.hold_id,
                r.request_id,
                r.account_id,
                r.key_id,
                r.model,
                r.amount,
                r.estimated_tokens,
                OPEN,
                stamps.now,
                stamps.expires[r.ttl],
                None,
            ),
        )
        if insert.rowcount == 1:
            inserted.add(r.hold_id)
    existing: dict[str, tuple[str, int]] = {}
    retried = [r.request_id for r in admitted if r.hold_id not in inserted]
    for chunk, marks in sqlite_in_chunks(retried):
        for request_id, hold_id, amount in db.execute(
            f"SELECT request_id, id, amount FROM holds WHERE request_id IN ({marks})", chunk
        ):
            existing[request_id] = (hold_id, amount)
    _conclude(batch, accounts, outcomes, inserted, existing)
    db.executemany(
        "UPDATE balances SET held = held + ?, updated_at = ? WHERE account_id = ?",
        [(a.reserved, stamps.now, id_) for id_, a in sorted(accounts.items()) if a.reserved],
    )
    return [outcomes[i] for i in range(len(batch))]


_HOLD_COLUMNS = (
    "id",
    "request_id",
    "account_id",
    "key_id",
    "model",
    "amount",
    "estimated_tokens",
    "status",
    "created_at",
    "expires_at",
    "settled_at",
)
_SQLITE_INSERT_HOLD = sqlite_insert(holds, _HOLD_COLUMNS, ignore_duplicates=True)


async def _lock_accounts(conn: AsyncConnection, account_ids: list[str]) -> dict[str, _Account]:
    rows = await conn.execute(
        sa.select(balances.c.account_id, balances.c.balance, balances.c.held, balances.c.disabled)
        .where(balances.c.account_id.in_(account_ids))
        .order_by(balances.c.account_id)
        .with_for_update()
    )
    return {row.account_id: _Account(row.balance, row.held, bool(row.disabled)) for row in rows}


async def _insert_holds(
    conn: AsyncConnection, admitted: Sequence[HoldRequest], now: dt.datetime
) -> set[str]:
    """Inserts the holds; returns the ids of those that were new."""
    if not admitted:
        return set()
    rows: list[dict[str, Any]] = [
        {
            "id": r.hold_id,
            "request_id": r.request_id,
            "account_id": r.account_id,
            "key_id": r.key_id,
            "model": r.model,
            "amount": r.amount,
            "estimated_tokens": r.estimated_tokens,
            "status": OPEN,
            "created_at": now,
            "expires_at": now + r.ttl,
            "settled_at": None,
        }
        for r in admitted
    ]
    result = await conn.execute(insert_ignoring_duplicates(holds, conn).returning(holds.c.id), rows)
    return set(result.scalars().all())


async def _existing_holds(
    conn: AsyncConnection, request_ids: list[str]
) -> dict[str, tuple[str, int]]:
    if not request_ids:
        return {}
    rows = await conn.execute(
        sa.select(holds.c.request_id, holds.c.id, holds.c.amount).where(
            holds.c.request_id.in_(request_ids)
        )
    )
    return {row.request_id: (row.id, row.amount) for row in rows}


async def _reserve(conn: AsyncConnection, accounts: dict[str, _Account], now: dt.datetime) -> None:
    for account_id in sorted(accounts):
        if reserved := accounts[account_id].reserved:
            await conn.execute(
                balances.update()
                .where(balances.c.account_id == account_id)
                .values(held=balances.c.held + reserved, updated_at=now)
            )
