"""Settlement: a batch of usage events becomes usage records, ledger charges and freed holds.

In one transaction per batch: record each event's usage keyed by request id (a replayed
event inserts nothing and so charges nothing), close its hold (or, for a request admitted
from an admission lease, draw the lease down by what the request reserved), append a
`usage` ledger row for its cost, and move the balances — `balance -= cost`, `held -= hold
amount`. Only after the commit does the limiter hear about it: the request's concurrency
slots are freed and its key's TPM window is corrected from the estimate to the actual
tokens. A crash between
the two costs nothing durable: memory windows die with the process, Redis slots expire.

Costs come from the rate card in force at settlement (see `pricing`), computed once here;
the edge never computes a cost.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from bytespike.usage.v1 import usage_pb2
from bytespike_common import pricing, telemetry
from bytespike_common.db import insert_ignoring_duplicates
from bytespike_common.pricing import RateCard
from bytespike_metering.limits import Limiter
from bytespike_metering.schema import holds, ledger, usage_records
from bytespike_metering.store import (
    OPEN,
    SETTLED,
    USAGE,
    MeteringStore,
    ReleasedHold,
    balance_changes,
    draw_down,
    draw_down_sqlite,
    move_balances,
    move_balances_sqlite,
    now_utc,
    released_columns,
    sqlite_in_chunks,
    sqlite_insert,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Charge:
    event: usage_pb2.UsageEvent
    cost: int


def slot_names(key_id: str) -> list[str]:
    """The concurrency limits a request can occupy (see `admission`)."""
    return [f"conc:key:{key_id}", "conc:account"]


def tpm_window(key_id: str) -> str:
    return f"tpm:key:{key_id}"


def _usage_values(charge: Charge, recorded_at: Any, started_at: Any) -> tuple[Any, ...]:
    """A `usage_records` row, in `_USAGE_COLUMNS` order (a tuple: built once per event)."""
    event, usage = charge.event, charge.event.usage
    return (
        event.request_id,
        event.account_id,
        event.key_id,
        event.group,
        event.model,
        event.provider_id,
        event.deployment_id,
        event.client_protocol,
        event.upstream_protocol,
        event.stream,
        usage.input_tokens,
        usage.cache_read_tokens,
        usage.cache_write_tokens,
        usage.output_tokens,
        usage.reasoning_tokens,
        usage.images,
        pricing.video_milliseconds(usage.video_seconds),
        usage.estimated,
        event.status_code,
        event.finish_reason,
        event.error_cause,
        event.client_disconnected,
        charge.cost,
        started_at,
        recorded_at,
    )


_USAGE_COLUMNS = (
    "request_id",
    "account_id",
    "key_id",
    "group_name",
    "model",
    "provider_id",
    "deployment_id",
    "client_protocol",
    "upstream_protocol",
    "stream",
    "input_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
    "images",
    "video_ms",
    "estimated",
    "status_code",
    "finish_reason",
    "error_cause",
    "client_disconnected",
    "cost",
    "started_at",
    "recorded_at",
)


def _ledger_values(charge: Charge, now: Any) -> tuple[Any, ...]:
    """A `usage` ledger row, in `_LEDGER_COLUMNS` order (a tuple, like `_usage_values`)."""
    event = charge.event
    return (
        event.account_id,
        USAGE,
        -charge.cost,
        event.request_id,
        None,
        "",
        "",
        event.key_id,
        event.model,
        now,
    )


_LEDGER_COLUMNS = (
    "account_id",
    "kind",
    "amount",
    "request_id",
    "idempotency_key",
    "reason",
    "actor",
    "key_id",
    "model",
    "created_at",
)


async def record_charges(
    store: MeteringStore, charges: Sequence[Charge]
) -> tuple[list[Charge], list[ReleasedHold]]:
    """The DB half of settlement: returns the charges that were new and the holds closed."""
    # One request twice in a batch (a redelivery racing the original) counts once.
    unique: dict[str, Charge] = {}
    for charge in charges:
        unique.setdefault(charge.event.request_id, charge)
    charges = list(unique.values())
    if not charges:
        return [], []
    now = now_utc()
    async with store.write(*(c.event.account_id for c in charges)) as conn:
        if store.direct_sqlite:
            stamp = store.sqlite_datetime(now)
            return await store.on_sqlite_thread(
                conn, lambda db: _record_on_sqlite(db, charges, now, stamp)
            )
        return await _record(conn, charges, now)


async def _record(
    conn: AsyncConnection, charges: list[Charge], now: dt.datetime
) -> tuple[list[Charge], list[ReleasedHold]]:
    """`record_charges` through SQLAlchemy (PostgreSQL): a few statements per batch."""
    rows = [
        dict(zip(_USAGE_COLUMNS, _usage_values(c, now, _started_at(c)), strict=True))
        for c in charges
    ]
    inserted = await conn.execute(_insert_usage(conn), rows)
    new_ids = set(inserted.scalars().all())
    new = [c for c in charges if c.event.request_id in new_ids]
    if not new:
        return [], []
    released = await _close_holds(conn, _hold_requests(new), now)
    drawn = await draw_down(conn, _lease_draws(new))
    billed = [c for c in new if c.cost]
    if billed:
        await conn.execute(
            ledger.insert(),
            [dict(zip(_LEDGER_COLUMNS, _ledger_values(c, now), strict=True)) for c in billed],
        )
    await move_balances(conn, _balance_changes(billed, [*released, *drawn]), now)
    return new, released


def _record_on_sqlite(
    db: sqlite3.Connection, charges: list[Charge], now: dt.datetime, stamp: Any
) -> tuple[list[Charge], list[ReleasedHold]]:
    """`record_charges` on SQLite: the same statements, all in aiosqlite's thread at once."""
    new: list[Charge] = []
    insert = db.cursor()
    for charge in charges:
        insert.execute(
            _SQLITE_INSERT_USAGE, _usage_values(charge, stamp, _sqlite_started_at(charge.event))
        )
        if insert.rowcount == 1:
            new.append(charge)
    if not new:
        return [], []
    released: list[ReleasedHold] = []
    request_ids = _hold_requests(new)
    for chunk, marks in sqlite_in_chunks(request_ids):
        rows = db.execute(
            "UPDATE holds SET status = ?, settled_at = ? WHERE status = ?"
            f" AND request_id IN ({marks})"
            " RETURNING request_id, account_id, key_id, amount, estimated_tokens",
            (SETTLED, stamp, OPEN, *chunk),
        ).fetchall()
        released.extend(ReleasedHold(*row) for row in rows)
    drawn = draw_down_sqlite(db, _lease_draws(new), stamp)
    billed = [c for c in new if c.cost]
    if billed:
        db.executemany(_SQLITE_INSERT_LEDGER, [_ledger_values(c, stamp) for c in billed])
    move_balances_sqlite(db, _balance_changes(billed, [*released, *drawn]), stamp)
    return new, released


def _started_at(charge: Charge) -> dt.datetime | None:
    event = charge.event
    return event.started_at.ToDatetime(dt.UTC) if event.HasField("started_at") else None


_EPOCH = dt.datetime(1970, 1, 1)


def _sqlite_started_at(event: usage_pb2.UsageEvent) -> str | None:
    """`started_at` as SQLAlchemy writes a `DateTime` on SQLite (the UTC wall time to the
    microsecond, `YYYY-MM-DD HH:MM:SS.ffffff`): what `store.sqlite_datetime(_started_at(c))`
    gives, at a fraction of the cost of protobuf's `ToDatetime` and SQLAlchemy's formatting
    (several µs per event; `tests/metering/test_settlement_rows.py` checks they agree). The
    events of a batch started within a few seconds of each other, so the date and time of
    the second are formatted once per second and only the microseconds per event."""
    if not event.HasField("started_at"):
        return None
    started = event.started_at
    seconds, nanos = started.seconds, started.nanos
    if not 0 <= nanos < 1_000_000_000:
        # Not a valid Timestamp; written as the datetime arithmetic makes it.
        moment = _EPOCH + dt.timedelta(seconds=seconds, microseconds=nanos // 1000)
        return moment.isoformat(" ", "microseconds")
    return f"{_second_text(seconds)}.{nanos // 1000:06d}"


@functools.lru_cache(maxsize=64)
def _second_text(seconds: int) -> str:
    """`YYYY-MM-DD HH:MM:SS` of a whole second since the epoch (UTC)."""
    return (_EPOCH + dt.timedelta(seconds=seconds)).isoformat(" ")


def _hold_requests(charges: Sequence[Charge]) -> list[str]:
    """The requests that may have a hold of their own: all but those admitted from a lease
    (the edge reserved those from the lease and never called Admit for them)."""
    return [c.event.request_id for c in charges if not c.event.lease_id]


def _lease_draws(charges: Sequence[Charge]) -> dict[str, int]:
    """What each admission lease reserved for these requests: the amounts to draw it down by."""
    draws: dict[str, int] = {}
    for charge in charges:
        if lease_id := charge.event.lease_id:
            draws[lease_id] = draws.get(lease_id, 0) + charge.event.reserved
    return draws


def _balance_changes(
    billed: Sequence[Charge], released: Sequence[ReleasedHold]
) -> dict[str, tuple[int, int]]:
    return balance_changes(((c.event.account_id, c.cost) for c in billed), released)


_SQLITE_INSERT_USAGE = sqlite_insert(usage_records, _USAGE_COLUMNS, ignore_duplicates=True)
_SQLITE_INSERT_LEDGER = sqlite_insert(ledger, _LEDGER_COLUMNS, generated=("id",))
_INSERT_USAGE: dict[str, Any] = {}


def _insert_usage(conn: AsyncConnection) -> Any:
    """`INSERT … ON CONFLICT DO NOTHING RETURNING request_id`, built once per dialect."""
    name = conn.dialect.name
    if name not in _INSERT_USAGE:
        _INSERT_USAGE[name] = insert_ignoring_duplicates(usage_records, conn).returning(
            usage_records.c.request_id
        )
    return _INSERT_USAGE[name]


async def _close_holds(
    conn: AsyncConnection, request_ids: list[str], now: dt.datetime
) -> list[ReleasedHold]:
    if not request_ids:
        return []
    rows = (
        await conn.execute(
            holds.update()
            .where(holds.c.request_id.in_(request_ids))
            .where(holds.c.status == OPEN)
            .values(status=SETTLED, settled_at=now)
            .returning(*released_columns())
        )
    ).all()
    return [ReleasedHold(*row) for row in rows]


def record_settlements(new: Sequence[Charge]) -> None:
    """`telemetry.record_settlement` for a batch of new charges: the same metrics, but the
    credits counter moved once per model rather than once per event, and the clock read
    once (the whole batch committed at one moment). The lag stays one observation per event.
    """
    charged: dict[str, int] = {}
    lags: list[float] = []
    for charge in new:
        event = charge.event
        if charge.cost > 0:
            # Only a priced charge labels by model (see `record_settlement`).
            charged[event.model] = charged.get(event.model, 0) + charge.cost
        finished = event.finished_at
        if finished.seconds:
            lags.append(finished.seconds + finished.nanos / 1e9)
    for model, cost in charged.items():
        telemetry.CREDITS_CHARGED.labels(model).inc(cost)
    now = time.time()
    for finished_at in lags:
        telemetry.SETTLEMENT_LAG.observe(max(0.0, now - finished_at))


class Settler:
    """Prices a batch of events, records it, then gives the limiter back what it held."""

    def __init__(
        self, store: MeteringStore, limiter: Limiter, rate_card: Callable[[], RateCard | None]
    ) -> None:
        self._store = store
        self._limiter = limiter
        self._rate_card = rate_card

    def charge(
        self,
        event: usage_pb2.UsageEvent,
        card: RateCard,
        rates: dict[tuple[str, str], pricing.Rate | None] | None = None,
    ) -> Charge:
        """Prices one event; `rates` caches the card's lookups for a batch."""
        if rates is None:
            rate = card.rate(event.model, event.group)
        else:
            key = (event.model, event.group)
            if key in rates:
                rate = rates[key]
            else:
                rate = rates[key] = card.rate(*key)
        if rate is None:
            # The model left the catalog while the request ran. Record the usage (it is
            # never lost and can be re-billed from usage_records) but charge nothing.
            log.error(
                "no price for model %r; request %s recorded unbilled", event.model, event.request_id
            )
            return Charge(event, 0)
        return Charge(event, pricing.cost(event.usage, rate))

    async def settle(self, events: Sequence[usage_pb2.UsageEvent]) -> int:
        """Returns how many events were new (replays are ignored)."""
        card = self._rate_card()
        if card is None:
            raise RuntimeError("no rate card yet; cannot price usage")
        rates: dict[tuple[str, str], pricing.Rate | None] = {}
        charges = [self.charge(e, card, rates) for e in events]
        new, released = await record_charges(self._store, charges)
        record_settlements(new)
        await self._give_back(new, released)
        return len(new)

    async def _give_back(self, new: Sequence[Charge], released: Sequence[ReleasedHold]) -> None:
        if not released:
            # Requests admitted from a lease hold no slot nor window of their own.
            return
        actual = {c.event.request_id: pricing.total_tokens(c.event.usage) for c in new}
        for hold in released:
            try:
                await self._limiter.release(
                    hold.account_id, slot_names(hold.key_id), hold.request_id
                )
                if hold.estimated_tokens:
                    delta = actual.get(hold.request_id, 0) - hold.estimated_tokens
                    await self._limiter.adjust(hold.account_id, [(tpm_window(hold.key_id), delta)])
            except Exception:
                # The money is committed; a limiter hiccup only delays a slot's expiry.
                log.exception("limiter release for %s failed", hold.request_id)
