"""MeteringAdminService: credits, balances, the ledger and usage, for the admin surface.

Account ids are auth's; metering trusts the caller (the admin API, on its own port) to have
resolved and authorised them. Every RPC names exactly one account and reads only its rows.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any, NoReturn

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from nats.aio.client import Client as NATS
from nats.errors import Error as NatsError

from bytespike.metering.v1 import metering_pb2, metering_pb2_grpc
from bytespike_common.messaging import ACCOUNT_STATUS_SUBJECT
from bytespike_metering import credits
from bytespike_metering.store import ADJUSTMENT, TOP_UP, MeteringStore

log = logging.getLogger(__name__)
MAX_LEDGER_PAGE = 1000
DEFAULT_LEDGER_PAGE = 100
_DIMENSIONS = {
    metering_pb2.USAGE_DIMENSION_KEY: "key_id",
    metering_pb2.USAGE_DIMENSION_MODEL: "model",
    metering_pb2.USAGE_DIMENSION_DAY: "day",
}


def _timestamp(value: dt.datetime | None) -> Timestamp | None:
    if value is None:
        return None
    stamp = Timestamp()
    # SQLite hands back naive datetimes; every stored time is UTC.
    stamp.FromDatetime(value if value.tzinfo else value.replace(tzinfo=dt.UTC))
    return stamp


def balance_message(row: dict[str, Any]) -> metering_pb2.Balance:
    return metering_pb2.Balance(
        account_id=row["account_id"],
        balance=row["balance"],
        held=row["held"],
        available=row["balance"] - row["held"],
        disabled=bool(row["disabled"]),
        updated_at=_timestamp(row["updated_at"]),
    )


def entry_message(row: dict[str, Any]) -> metering_pb2.LedgerEntry:
    return metering_pb2.LedgerEntry(
        id=row["id"],
        account_id=row["account_id"],
        kind=row["kind"],
        amount=row["amount"],
        request_id=row["request_id"] or "",
        idempotency_key=row["idempotency_key"] or "",
        reason=row["reason"],
        actor=row["actor"],
        key_id=row["key_id"],
        model=row["model"],
        created_at=_timestamp(row["created_at"]),
    )


async def _invalid(context: grpc.aio.ServicerContext[Any, Any], message: str) -> NoReturn:
    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, message)
    raise AssertionError("unreachable")


class MeteringAdminServicer(metering_pb2_grpc.MeteringAdminServiceServicer):
    def __init__(self, store: MeteringStore, nc: NATS | None = None) -> None:
        self._store = store
        # Edges admit from leases without asking metering: a status change is pushed to them.
        self._nc = nc

    async def TopUp(
        self, request: metering_pb2.CreditRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> metering_pb2.CreditResponse:
        if request.amount <= 0:
            await _invalid(context, "a top-up amount must be positive")
        return await self._credit(request, TOP_UP, context)

    async def Adjust(
        self, request: metering_pb2.CreditRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> metering_pb2.CreditResponse:
        if request.amount == 0:
            await _invalid(context, "an adjustment amount cannot be zero")
        return await self._credit(request, ADJUSTMENT, context)

    async def _credit(
        self,
        request: metering_pb2.CreditRequest,
        kind: str,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> metering_pb2.CreditResponse:
        if not request.account_id or not request.reason.strip() or not request.idempotency_key:
            await _invalid(context, "account_id, reason and idempotency_key are required")
        try:
            result = await credits.credit(
                self._store,
                account_id=request.account_id,
                kind=kind,
                amount=request.amount,
                reason=request.reason.strip(),
                idempotency_key=request.idempotency_key,
                actor=request.actor,
            )
        except credits.IdempotencyConflict as exc:
            await context.abort(grpc.StatusCode.ALREADY_EXISTS, str(exc))
        return metering_pb2.CreditResponse(
            entry=entry_message(result.entry),
            balance=balance_message(result.balance),
            replayed=result.replayed,
        )

    async def GetBalance(
        self, request: metering_pb2.GetBalanceRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> metering_pb2.Balance:
        if not request.account_id:
            await _invalid(context, "account_id is required")
        return balance_message(await self._store.balance(request.account_id))

    async def SetAccountStatus(
        self,
        request: metering_pb2.SetAccountStatusRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> metering_pb2.Balance:
        if not request.account_id:
            await _invalid(context, "account_id is required")
        row = await credits.set_disabled(self._store, request.account_id, request.disabled)
        message = balance_message(row)
        await self._announce(message)
        return message

    async def _announce(self, balance: metering_pb2.Balance) -> None:
        """Tells every edge; a lost push only lasts until the edge's lease is renewed."""
        if self._nc is None:
            return
        try:
            await self._nc.publish(ACCOUNT_STATUS_SUBJECT, balance.SerializeToString())
            await self._nc.flush(timeout=2)
        except (NatsError, TimeoutError) as exc:
            log.warning("account status push for %s failed: %r", balance.account_id, exc)

    async def ListLedger(
        self, request: metering_pb2.ListLedgerRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> metering_pb2.ListLedgerResponse:
        if not request.account_id:
            await _invalid(context, "account_id is required")
        limit = min(request.limit or DEFAULT_LEDGER_PAGE, MAX_LEDGER_PAGE)
        rows = await credits.list_ledger(
            self._store, request.account_id, limit=max(1, limit), before_id=request.before_id
        )
        return metering_pb2.ListLedgerResponse(entries=[entry_message(r) for r in rows])

    async def GetUsage(
        self, request: metering_pb2.GetUsageRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> metering_pb2.GetUsageResponse:
        if not request.account_id:
            await _invalid(context, "account_id is required")
        if any(d not in _DIMENSIONS for d in request.group_by):
            await _invalid(context, "group_by accepts KEY, MODEL and DAY")
        rows = await credits.usage(
            self._store,
            request.account_id,
            group_by=[_DIMENSIONS[d] for d in request.group_by],
            start=request.start.ToDatetime(dt.UTC) if request.HasField("start") else None,
            end=request.end.ToDatetime(dt.UTC) if request.HasField("end") else None,
        )
        return metering_pb2.GetUsageResponse(rows=[metering_pb2.UsageRow(**row) for row in rows])
