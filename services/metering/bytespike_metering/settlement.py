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
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from bytespike.usage.v1 import usage_pb2
from bytespike_common import pricing, telemetry
from bytespike_common.db import insert_ignoring_duplicates
from bytespike_common.pricing import RateCard
from bytespike_metering.limits import Limiter
from bytespike_metering.schema import balances, holds, ledger, usage_records
from bytespike_metering.store import (
    OPEN,
    SETTLED,
    USAGE,
    MeteringStore,
    ReleasedHold,
    draw_down,
    now_utc,
    release_held,
    released_columns,
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


def _usage_row(charge: Charge, recorded_at: dt.datetime) -> dict[str, Any]:
    event, usage = charge.event, charge.event.usage
    return {
        "request_id": event.request_id,
        "account_id": event.account_id,
        "key_id": event.key_id,
        "group_name": event.group,
        "model": event.model,
        "provider_id": event.provider_id,
        "deployment_id": event.deployment_id,
        "client_protocol": event.client_protocol,
        "upstream_protocol": event.upstream_protocol,
        "stream": event.stream,
        "input_tokens": usage.input_tokens,
        "cache_read_tokens": usage.cache_read_tokens,
        "cache_write_tokens": usage.cache_write_tokens,
        "output_tokens": usage.output_tokens,
        "reasoning_tokens": usage.reasoning_tokens,
        "images": usage.images,
        "video_ms": pricing.video_milliseconds(usage.video_seconds),
        "estimated": usage.estimated,
        "status_code": event.status_code,
        "finish_reason": event.finish_reason,
        "error_cause": event.error_cause,
        "client_disconnected": event.client_disconnected,
        "cost": charge.cost,
        "started_at": event.started_at.ToDatetime(dt.UTC) if event.HasField("started_at") else None,
        "recorded_at": recorded_at,
    }


def _ledger_row(charge: Charge, now: dt.datetime) -> dict[str, Any]:
    event = charge.event
    return {
        "account_id": event.account_id,
        "kind": USAGE,
        "amount": -charge.cost,
        "request_id": event.request_id,
        "idempotency_key": None,
        "reason": "",
        "actor": "",
        "key_id": event.key_id,
        "model": event.model,
        "created_at": now,
    }


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
        inserted = await conn.execute(
            insert_ignoring_duplicates(usage_records, conn).returning(usage_records.c.request_id),
            [_usage_row(c, now) for c in charges],
        )
        new_ids = set(inserted.scalars().all())
        new = [c for c in charges if c.event.request_id in new_ids]
        if not new:
            return [], []
        released = await _close_holds(conn, [c.event.request_id for c in new], now)
        drawn = await draw_down(conn, _lease_draws(new))
        billed = [c for c in new if c.cost]
        if billed:
            await conn.execute(ledger.insert(), [_ledger_row(c, now) for c in billed])
        await _debit(conn, billed, now)
        await release_held(conn, [*released, *drawn], now)
    return new, released


def _lease_draws(charges: Sequence[Charge]) -> dict[str, int]:
    """What each admission lease reserved for these requests: the amounts to draw it down by."""
    draws: dict[str, int] = {}
    for charge in charges:
        if lease_id := charge.event.lease_id:
            draws[lease_id] = draws.get(lease_id, 0) + charge.event.reserved
    return draws


async def _close_holds(
    conn: AsyncConnection, request_ids: list[str], now: dt.datetime
) -> list[ReleasedHold]:
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


async def _debit(conn: AsyncConnection, billed: Sequence[Charge], now: dt.datetime) -> None:
    per_account: dict[str, int] = {}
    for charge in billed:
        account = charge.event.account_id
        per_account[account] = per_account.get(account, 0) + charge.cost
    for account_id in sorted(per_account):
        await conn.execute(
            balances.update()
            .where(balances.c.account_id == account_id)
            .values(balance=balances.c.balance - per_account[account_id], updated_at=now)
        )


class Settler:
    """Prices a batch of events, records it, then gives the limiter back what it held."""

    def __init__(
        self, store: MeteringStore, limiter: Limiter, rate_card: Callable[[], RateCard | None]
    ) -> None:
        self._store = store
        self._limiter = limiter
        self._rate_card = rate_card

    def charge(self, event: usage_pb2.UsageEvent, card: RateCard) -> Charge:
        rate = card.rate(event.model, event.group)
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
        new, released = await record_charges(self._store, [self.charge(e, card) for e in events])
        for c in new:
            telemetry.record_settlement(c.event.model, c.cost, c.event.finished_at)
        await self._give_back(new, released)
        return len(new)

    async def _give_back(self, new: Sequence[Charge], released: Sequence[ReleasedHold]) -> None:
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
