"""Balances and holds in SQL: the write path every money-changing operation goes through.

Every write is one transaction that keeps the invariants of `schema` (balance = sum of the
ledger, held = sum of open holds). How concurrent writers are kept apart, by backend:

- **SQLite**: one writer at a time. Every write transaction in this process takes one
  asyncio lock, so SQLite's own file lock is never contended (no `database is locked`,
  no deferred-transaction upgrade failures). SQLite therefore means one metering replica.
- **PostgreSQL**: row locks. Admission reads the balance rows it reserves from with
  `SELECT … FOR UPDATE` (see `holds`); settlement, expiry and credits change balances
  with relative `UPDATE`s. Every transaction that touches several accounts locks their
  rows in sorted order, so transactions cannot deadlock each other, and any number of
  metering replicas can share the database.

An account's balance row is created the first time metering sees the account, with the
configured initial grant written to the ledger in the same transaction.

On SQLite, aiosqlite runs every driver call in its connection's thread, and each call is a
thread hop (~100 µs of CPU on a small VM, several per statement). Hot paths with many
statements per transaction (settlement) can run them all in one hop: `on_sqlite_thread`
hands a function the transaction's own `sqlite3` connection in that thread, so its
statements are part of the same transaction and commit or roll back with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bytespike_common.db import insert_ignoring_duplicates
from bytespike_metering.schema import balances, holds, ledger, usage_records

OPEN, SETTLED, EXPIRED = "open", "settled", "expired"
GRANT, USAGE, TOP_UP, ADJUSTMENT = "grant", "usage", "top_up", "adjustment"
# Accounts whose balance row is known to exist; beyond this many, forget and re-check.
KNOWN_ACCOUNTS_MAX = 100_000
T = TypeVar("T")


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True, slots=True)
class ReleasedHold:
    """A hold closed by settlement or expiry: what to give back to the limiter."""

    request_id: str
    account_id: str
    key_id: str
    amount: int
    estimated_tokens: int


class MeteringStore:
    def __init__(self, engine: AsyncEngine, *, initial_credit: int = 0) -> None:
        self.engine = engine
        self._initial_credit = initial_credit
        self._sqlite = engine.dialect.name == "sqlite"
        self._writer = asyncio.Lock()
        self._known: set[str] = set()
        # SQLite through aiosqlite: statements can run in its thread in one hop.
        self.direct_sqlite = self._sqlite and engine.dialect.driver == "aiosqlite"
        # How SQLAlchemy stores a datetime on SQLite (text), for statements run directly.
        datetime_type = holds.c.settled_at.type.dialect_impl(engine.dialect)
        self._datetime_text = datetime_type.bind_processor(engine.dialect)

    def sqlite_datetime(self, value: dt.datetime) -> Any:
        """`value` as SQLAlchemy binds it on SQLite, for `on_sqlite_thread` functions."""
        return self._datetime_text(value) if self._datetime_text else value

    async def on_sqlite_thread(
        self, conn: AsyncConnection, fn: Callable[[sqlite3.Connection], T]
    ) -> T:
        """Runs `fn` with the transaction's `sqlite3` connection, in aiosqlite's thread.

        One thread hop for all of `fn`'s statements instead of several per statement; they
        belong to `conn`'s transaction (sqlite3 opens it implicitly at the first write, as it
        does for SQLAlchemy's statements) and commit or roll back with it. Only when
        `direct_sqlite`; `fn` must not commit, roll back or keep the connection.
        """
        if not self.direct_sqlite:
            raise RuntimeError("on_sqlite_thread needs SQLite through aiosqlite")
        raw = await conn.get_raw_connection()
        driver: Any = raw.driver_connection
        # aiosqlite's queue to its connection thread (the one its own methods use).
        result: T = await driver._execute(fn, driver._conn)
        return result

    def _lock(self) -> contextlib.AbstractAsyncContextManager[Any]:
        # SQLite: one writer. PostgreSQL: the database's row locks, taken in sorted order.
        return self._writer if self._sqlite else contextlib.nullcontext()

    @contextlib.asynccontextmanager
    async def write(self, *account_ids: str) -> AsyncIterator[AsyncConnection]:
        """A write transaction with the accounts' balance rows guaranteed to exist."""
        accounts = sorted(set(account_ids))
        async with self._lock():
            async with self.engine.begin() as conn:
                fresh = [a for a in accounts if a not in self._known]
                for account_id in fresh:
                    await self._open_account(conn, account_id)
                yield conn
            if len(self._known) > KNOWN_ACCOUNTS_MAX:
                self._known.clear()
            self._known.update(fresh)

    async def _open_account(self, conn: AsyncConnection, account_id: str) -> None:
        now = now_utc()
        statement = insert_ignoring_duplicates(balances, conn).values(
            account_id=account_id,
            balance=self._initial_credit,
            held=0,
            disabled=False,
            updated_at=now,
        )
        if (await conn.execute(statement)).rowcount == 1 and self._initial_credit:
            await conn.execute(
                ledger.insert().values(
                    account_id=account_id,
                    kind=GRANT,
                    amount=self._initial_credit,
                    idempotency_key=f"grant:{account_id}",
                    reason="initial credit",
                    actor="metering",
                    created_at=now,
                )
            )

    async def expire_holds(self, now: dt.datetime | None = None) -> list[ReleasedHold]:
        """Releases every open hold past its expiry; returns them for the limiter."""
        now = now or now_utc()
        async with self.write() as conn:
            rows = (
                await conn.execute(
                    holds.update()
                    .where(holds.c.status == OPEN)
                    .where(holds.c.expires_at < now)
                    .values(status=EXPIRED, settled_at=now)
                    .returning(*_RELEASED_COLUMNS)
                )
            ).all()
            released = [ReleasedHold(*row) for row in rows]
            await release_held(conn, released, now)
        return released

    # Reads, for the admin API and tests.

    async def balance(self, account_id: str) -> dict[str, Any]:
        async with self.write(account_id) as conn:
            row = (
                await conn.execute(balances.select().where(balances.c.account_id == account_id))
            ).one()
        return dict(row._mapping)

    async def usage(self, request_id: str) -> dict[str, Any] | None:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    usage_records.select().where(usage_records.c.request_id == request_id)
                )
            ).first()
        return dict(row._mapping) if row else None

    async def hold_status(self, request_id: str) -> str | None:
        async with self.engine.connect() as conn:
            value = await conn.scalar(
                sa.select(holds.c.status).where(holds.c.request_id == request_id)
            )
        return None if value is None else str(value)

    async def audit(self, account_id: str) -> dict[str, int]:
        """The account's balance and held next to the sums they must equal."""
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(balances.c.balance, balances.c.held).where(
                        balances.c.account_id == account_id
                    )
                )
            ).one()
            ledger_sum = await conn.scalar(
                sa.select(sa.func.coalesce(sa.func.sum(ledger.c.amount), 0)).where(
                    ledger.c.account_id == account_id
                )
            )
            held_sum = await conn.scalar(
                sa.select(sa.func.coalesce(sa.func.sum(holds.c.amount), 0))
                .where(holds.c.account_id == account_id)
                .where(holds.c.status == OPEN)
            )
        return {
            "balance": int(row.balance),
            "ledger_sum": int(ledger_sum or 0),
            "held": int(row.held),
            "open_holds_sum": int(held_sum or 0),
        }


_RELEASED_COLUMNS = (
    holds.c.request_id,
    holds.c.account_id,
    holds.c.key_id,
    holds.c.amount,
    holds.c.estimated_tokens,
)


def balance_changes(
    debits: Iterable[tuple[str, int]], released: Iterable[ReleasedHold]
) -> dict[str, tuple[int, int]]:
    """Per account, (amount to take off `balance`, amount to take off `held`), both non-zero
    at least once, in account order (the order rows are locked in)."""
    changes: dict[str, list[int]] = {}
    for account_id, amount in debits:
        changes.setdefault(account_id, [0, 0])[0] += amount
    for hold in released:
        changes.setdefault(hold.account_id, [0, 0])[1] += hold.amount
    return {a: (d, r) for a, (d, r) in sorted(changes.items()) if d or r}


_MOVE_BALANCE = (
    balances.update()
    .where(balances.c.account_id == sa.bindparam("b_account_id"))
    .values(
        balance=balances.c.balance - sa.bindparam("b_debit"),
        held=balances.c.held - sa.bindparam("b_release"),
        updated_at=sa.bindparam("b_now"),
    )
)


async def move_balances(
    conn: AsyncConnection, changes: Mapping[str, tuple[int, int]], now: dt.datetime
) -> None:
    """`balance -= debit, held -= release` per account of `balance_changes`, one statement
    per account, rows in account order."""
    if changes:
        await conn.execute(
            _MOVE_BALANCE,
            [
                {"b_account_id": a, "b_debit": d, "b_release": r, "b_now": now}
                for a, (d, r) in changes.items()
            ],
        )


def move_balances_sqlite(
    db: sqlite3.Connection, changes: Mapping[str, tuple[int, int]], now: Any
) -> None:
    """`move_balances` for `MeteringStore.on_sqlite_thread` (`now` as `sqlite_datetime`)."""
    db.executemany(
        "UPDATE balances SET balance = balance - ?, held = held - ?, updated_at = ?"
        " WHERE account_id = ?",
        [(d, r, now, a) for a, (d, r) in changes.items()],
    )


async def release_held(
    conn: AsyncConnection, released: Iterable[ReleasedHold], now: dt.datetime
) -> None:
    """Takes closed holds' amounts off their accounts' `held`, rows in sorted order."""
    await move_balances(conn, balance_changes((), released), now)


async def draw_down(conn: AsyncConnection, amounts: Mapping[str, int]) -> list[ReleasedHold]:
    """Takes `amounts[hold_id]` off each open hold, never more than it still holds.

    For admission leases (`leases`), which shrink as their requests settle and as the edge
    hands back what it did not use; one drawn to zero is closed. Returns what was taken per
    hold, for `release_held`. Hold rows are locked in id order, before any balance row,
    like every other writer.
    """
    if not amounts:
        return []
    rows = (
        await conn.execute(
            sa.select(holds.c.id, *_RELEASED_COLUMNS)
            .where(holds.c.id.in_(sorted(amounts)))
            .where(holds.c.status == OPEN)
            .order_by(holds.c.id)
            .with_for_update()
        )
    ).all()
    taken: list[ReleasedHold] = []
    for row in rows:
        take = min(int(row.amount), max(0, amounts[row.id]))
        if take:
            # Drawn to nothing, the lease is done: every request it admitted has settled and
            # the edge reserves nothing more from it (its own rest is never above this).
            values: dict[str, Any] = {"amount": holds.c.amount - take}
            if take == row.amount:
                values.update(status=SETTLED, settled_at=now_utc())
            await conn.execute(holds.update().where(holds.c.id == row.id).values(**values))
            taken.append(ReleasedHold(row.request_id, row.account_id, row.key_id, take, 0))
    return taken


# Values per `IN (…)` on SQLite, well under its limit on bound parameters.
SQLITE_IN_CHUNK = 500


def sqlite_in_chunks(values: Sequence[T]) -> Iterator[tuple[Sequence[T], str]]:
    """`values` in slices for `… IN (…)` on SQLite, each with its `?, ?, …` placeholders."""
    for start in range(0, len(values), SQLITE_IN_CHUNK):
        chunk = values[start : start + SQLITE_IN_CHUNK]
        yield chunk, ", ".join("?" * len(chunk))


def sqlite_insert(
    table: sa.Table,
    columns: Sequence[str],
    *,
    generated: Sequence[str] = (),
    ignore_duplicates: bool = False,
) -> str:
    """A positional `INSERT` into `table` in `columns` order, for rows built as tuples on
    aiosqlite's thread. Checked at import: every column but the `generated` ones must be
    listed, so a column added to or dropped from the table changes the tuple builder too."""
    if set(columns) != {c.name for c in table.columns} - set(generated):
        raise RuntimeError(f"{table.name} changed: update its column list and row builder")
    sql = (
        f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
    )
    return sql + " ON CONFLICT DO NOTHING" if ignore_duplicates else sql


def draw_down_sqlite(
    db: sqlite3.Connection, amounts: Mapping[str, int], now: Any
) -> list[ReleasedHold]:
    """`draw_down` for `MeteringStore.on_sqlite_thread` (`now` as `sqlite_datetime`)."""
    taken: list[ReleasedHold] = []
    for hold_id in sorted(amounts):
        row = db.execute(
            "SELECT request_id, account_id, key_id, amount FROM holds WHERE id = ? AND status = ?",
            (hold_id, OPEN),
        ).fetchone()
        if row is None:
            continue
        amount = int(row[3])
        take = min(amount, max(0, amounts[hold_id]))
        if not take:
            continue
        if take == amount:
            db.execute(
                "UPDATE holds SET amount = amount - ?, status = ?, settled_at = ? WHERE id = ?",
                (take, SETTLED, now, hold_id),
            )
        else:
            db.execute("UPDATE holds SET amount = amount - ? WHERE id = ?", (take, hold_id))
        taken.append(ReleasedHold(row[0], row[1], row[2], take, 0))
    return taken


def released_columns() -> tuple[Any, ...]:
    return _RELEASED_COLUMNS
