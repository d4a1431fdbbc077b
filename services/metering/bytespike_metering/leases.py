"""Admission leases: a budget an edge admits one account's requests from, locally.

An Admit per request puts a metering round trip and a database commit in front of every
upstream call. A lease puts them in front of many: the edge asks for a budget (one hold,
opened by the same single writer as Admit's holds, see `holds`), reserves each request's
maximum cost from it in memory, and names the lease and the amount in the request's usage
event; settlement draws the lease down by that amount as it charges the actual cost
(`settlement`). So `held` keeps meaning "reserved for requests not yet settled", and the
account's balance is never promised twice:

- a lease takes at most 1/`share` of the available credit (never less than the request
  waiting for it), so while an account has plenty, several edges each hold a slice; near
  the end of the credit leases shrink to one request's worth, which is exactly an Admit;
- the edge admits from a lease for `ttl` at most, then hands back what it did not reserve
  (`release`), usually inside its next Lease call; the hold itself expires after
  `hold_ttl` (the sweeper), so a crashed edge locks its budget only that long;
- accounts with a concurrency policy need a count per request: they are not leasable and
  the edge calls Admit (keys with their own RPM/TPM/concurrency never ask for a lease).
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from dataclasses import dataclass
from typing import Any

from bytespike.metering.v1 import metering_pb2
from bytespike_metering.holds import HoldResult, HoldWriter
from bytespike_metering.store import (
    MeteringStore,
    ReleasedHold,
    balance_changes,
    draw_down,
    draw_down_sqlite,
    move_balances_sqlite,
    now_utc,
    release_held,
)

LEASE_REQUEST_PREFIX = "lease:"


@dataclass(frozen=True, slots=True)
class LeasePolicy:
    # How long an edge admits from one lease before renewing it.
    ttl: dt.timedelta
    # How long the lease's hold lives if the edge never hands it back.
    hold_ttl: dt.timedelta
    # A lease takes at most available // share.
    share: int
    # Leases need a per-request count (an account concurrency policy is set).
    disabled: bool = False


class LeaseGranter:
    def __init__(self, store: MeteringStore, holds: HoldWriter, policy: LeasePolicy) -> None:
        self._store = store
        self._holds = holds
        self._policy = policy

    async def lease(self, request: metering_pb2.LeaseRequest) -> metering_pb2.LeaseResponse:
        if request.HasField("release") and request.release.lease_id:
            await self.release(request.release.lease_id, request.release.unused)
        if request.release_only:
            return metering_pb2.LeaseResponse(leasable=not self._policy.disabled)
        if self._policy.disabled:
            return metering_pb2.LeaseResponse(leasable=False)
        need = max(0, request.need)
        outcome = await self._holds.open_hold(
            request_id=LEASE_REQUEST_PREFIX + request.lease_id,
            account_id=request.account_id,
            key_id=request.key_id,
            model="",
            amount=max(need, request.want),
            estimated_tokens=0,
            ttl=self._policy.hold_ttl,
            minimum=need,
            share=self._policy.share,
            hold_id=request.lease_id,
        )
        if outcome.result in (HoldResult.OPENED, HoldResult.EXISTING):
            return metering_pb2.LeaseResponse(
                granted=True,
                lease_id=outcome.hold_id,
                amount=outcome.amount,
                ttl_ms=int(self._policy.ttl.total_seconds() * 1000),
                leasable=True,
            )
        if outcome.result is HoldResult.ACCOUNT_DISABLED:
            return metering_pb2.LeaseResponse(
                leasable=True,
                denial=metering_pb2.DENIAL_ACCOUNT_DISABLED,
                message="This account is disabled.",
            )
        return metering_pb2.LeaseResponse(
            leasable=True,
            denial=metering_pb2.DENIAL_INSUFFICIENT_CREDIT,
            message=(
                f"Insufficient credit: this request may cost up to {need} micro-credits and "
                f"{max(0, outcome.available)} are available. Top up, or lower max_tokens."
            ),
        )

    async def release(self, lease_id: str, unused: int) -> int:
        """Gives an account back what a lease did not reserve; returns the amount given."""
        if unused <= 0:
            return 0
        amounts, now, store = {lease_id: unused}, now_utc(), self._store
        async with store.write() as conn:
            if store.direct_sqlite:
                # One hop to aiosqlite's thread for the whole hand-back (see `store`).
                stamp = store.sqlite_datetime(now)
                taken = await store.on_sqlite_thread(
                    conn, lambda db: _release_on_sqlite(db, amounts, stamp)
                )
            else:
                taken = await draw_down(conn, amounts)
                await release_held(conn, taken, now)
        return sum(hold.amount for hold in taken)


def _release_on_sqlite(
    db: sqlite3.Connection, amounts: dict[str, int], stamp: Any
) -> list[ReleasedHold]:
    """`draw_down` and `release_held` on SQLite, in aiosqlite's thread."""
    taken = draw_down_sqlite(db, amounts, stamp)
    move_balances_sqlite(db, balance_changes((), taken), stamp)
    return taken
