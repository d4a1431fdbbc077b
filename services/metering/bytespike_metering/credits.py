"""Admin operations on accounts' money: top-ups, adjustments, status, ledger and usage reads.

Every credit change is a ledger row with a reason, an actor and a caller-chosen
idempotency key: the same key again returns the first entry and changes nothing; the same
key with different parameters is refused rather than guessed at. Every read is filtered by
one account id — there is no query here that can return another account's rows.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from bytespike_common.db import insert_ignoring_duplicates
from bytespike_metering.schema import balances, ledger, usage_records
from bytespike_metering.store import MeteringStore, now_utc

USAGE_DIMENSIONS = ("key_id", "model", "day")


class IdempotencyConflict(Exception):
    """The idempotency key was already used for a different operation."""


@dataclass(frozen=True, slots=True)
class CreditResult:
    entry: dict[str, Any]
    balance: dict[str, Any]
    replayed: bool


async def _balance_row(conn: AsyncConnection, account_id: str) -> dict[str, Any]:
    row = (await conn.execute(balances.select().where(balances.c.account_id == account_id))).one()
    return dict(row._mapping)


async def credit(
    store: MeteringStore,
    *,
    account_id: str,
    kind: str,
    amount: int,
    reason: str,
    idempotency_key: str,
    actor: str,
) -> CreditResult:
    """Appends a top-up or adjustment and moves the balance, in one transaction."""
    now = now_utc()
    async with store.write(account_id) as conn:
        inserted = await conn.execute(
            insert_ignoring_duplicates(ledger, conn)
            .values(
                account_id=account_id,
                kind=kind,
                amount=amount,
                idempotency_key=idempotency_key,
                reason=reason,
                actor=actor,
                created_at=now,
            )
            .returning(ledger.c.id)
        )
        new_id = inserted.scalar()
        entry = dict(
            (await conn.execute(ledger.select().where(ledger.c.idempotency_key == idempotency_key)))
            .one()
            ._mapping
        )
        if new_id is None:
            if (entry["account_id"], entry["kind"], entry["amount"]) != (account_id, kind, amount):
                raise IdempotencyConflict(
                    f"idempotency key {idempotency_key!r} was used for a different operation"
                )
            return CreditResult(entry, await _balance_row(conn, account_id), replayed=True)
        await conn.execute(
            balances.update()
            .where(balances.c.account_id == account_id)
            .values(balance=balances.c.balance + amount, updated_at=now)
        )
        return CreditResult(entry, await _balance_row(conn, account_id), replayed=False)


async def set_disabled(store: MeteringStore, account_id: str, disabled: bool) -> dict[str, Any]:
    async with store.write(account_id) as conn:
        await conn.execute(
            balances.update()
            .where(balances.c.account_id == account_id)
            .values(disabled=disabled, updated_at=now_utc())
        )
        return await _balance_row(conn, account_id)


async def list_ledger(
    store: MeteringStore, account_id: str, *, limit: int, before_id: int = 0
) -> list[dict[str, Any]]:
    query = ledger.select().where(ledger.c.account_id == account_id)
    if before_id > 0:
        query = query.where(ledger.c.id < before_id)
    async with store.engine.connect() as conn:
        rows = (await conn.execute(query.order_by(ledger.c.id.desc()).limit(limit))).all()
    return [dict(row._mapping) for row in rows]


def _day(conn: AsyncConnection) -> sa.ColumnElement[str]:
    started = sa.func.coalesce(usage_records.c.started_at, usage_records.c.recorded_at)
    if conn.dialect.name == "postgresql":
        return sa.func.to_char(sa.func.timezone("UTC", started), "YYYY-MM-DD")
    # SQLite stores the UTC timestamps as ISO text: the date is its first ten characters.
    return sa.func.substr(sa.cast(started, sa.String), 1, 10)


async def usage(
    store: MeteringStore,
    account_id: str,
    *,
    group_by: Sequence[str] = (),
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
) -> list[dict[str, Any]]:
    """Settled usage of one account, summed over the requested dimensions."""
    started = sa.func.coalesce(usage_records.c.started_at, usage_records.c.recorded_at)
    async with store.engine.connect() as conn:
        dimensions = {
            "key_id": usage_records.c.key_id,
            "model": usage_records.c.model,
            "day": _day(conn),
        }
        keys = [dimensions[name].label(name) for name in USAGE_DIMENSIONS if name in group_by]
        sums = [
            sa.func.sum(usage_records.c[column]).label(column)
            for column in (
                "input_tokens",
                "cache_read_tokens",
                "cache_write_tokens",
                "output_tokens",
                "reasoning_tokens",
                "images",
                "cost",
            )
        ]
        query = sa.select(*keys, sa.func.count().label("requests"), *sums).where(
            usage_records.c.account_id == account_id
        )
        if start is not None:
            query = query.where(started >= start)
        if end is not None:
            query = query.where(started < end)
        if keys:
            query = query.group_by(*keys).order_by(*keys)
        rows = (await conn.execute(query)).all()
    # PostgreSQL sums BIGINT as NUMERIC; the API speaks integers.
    return [
        {
            key: str(value) if key in USAGE_DIMENSIONS else int(value or 0)
            for key, value in row._mapping.items()
        }
        for row in rows
        if row.requests
    ]
