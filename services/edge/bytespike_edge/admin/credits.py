"""Credits and usage: `/admin/v1/accounts/{account}/{credits/topup,credits/adjust,balance,
ledger,usage}`, over metering's `MeteringAdminService`.

Every endpoint takes `AccountDep` like the key endpoints: the account is resolved through
auth once and checked against the caller's scope, and metering is only ever asked about that
account's id. So an account-scoped token reads its own balance, ledger and usage and gets 403
for any other account; changing credit (top-up, adjustment) needs the operator token, since
an account granting itself credit would defeat billing.

Amounts cross the API in credits as exact decimal strings (`"12.5"`) next to integer
micro-credits (`_micro`); no float ever holds money. Metering unreachable is 503.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import APIRouter, Header, Query, Response
from fastapi.exceptions import RequestValidationError

from bytespike.auth.v1 import auth_pb2
from bytespike.metering.v1 import metering_pb2
from bytespike_edge.admin import schemas
from bytespike_edge.admin.accounts import ERRORS as ACCOUNT_ERRORS
from bytespike_edge.admin.convert import time_of, timestamp
from bytespike_edge.admin.deps import AccountDep, MeteringAdmin, MeteringDep, OperatorDep
from bytespike_edge.admin.security import Caller

router = APIRouter(prefix="/admin/v1/accounts/{account}", tags=["credits"])

ERRORS: dict[int | str, dict[str, str]] = {
    **ACCOUNT_ERRORS,
    503: {"description": "Metering (or auth) is unreachable; nothing changed."},
}
CREDIT_ERRORS: dict[int | str, dict[str, str]] = {
    **ERRORS,
    200: {"description": "A replay: the idempotency key was used before, nothing changed."},
    409: {"description": "The idempotency key was used for a different operation."},
}
MAX_LEDGER_PAGE = 1000  # metering's own maximum
_DIMENSIONS: dict[schemas.UsageDimension, metering_pb2.UsageDimension.ValueType] = {
    "key": metering_pb2.USAGE_DIMENSION_KEY,
    "model": metering_pb2.USAGE_DIMENSION_MODEL,
    "day": metering_pb2.USAGE_DIMENSION_DAY,
}
IdempotencyHeader = Annotated[
    schemas.IdempotencyKey | None,
    Header(alias="Idempotency-Key", description="Same as the body's `idempotency_key`."),
]


def _actor(caller: Caller) -> str:
    """Who the ledger says made a change: the admin token's identity."""
    return "operator" if caller.is_operator else f"account-token:{caller.account}"


def _idempotency_key(header: str | None, body: str | None) -> str:
    if header and body and header != body:
        message = "differs from the body's idempotency_key; give one of them"
        raise RequestValidationError(
            [{"type": "value_error", "loc": ["header", "Idempotency-Key"], "msg": message}]
        )
    # Without a key a retry cannot be recognised; the generated one still names the entry.
    return header or body or f"admin-{secrets.token_hex(16)}"


def balance_out(account: auth_pb2.Account, balance: metering_pb2.Balance) -> schemas.Balance:
    return schemas.Balance(
        account_id=account.id,
        account=account.name,
        balance=schemas.credits_text(balance.balance),
        balance_micro=balance.balance,
        held=schemas.credits_text(balance.held),
        held_micro=balance.held,
        available=schemas.credits_text(balance.available),
        available_micro=balance.available,
        updated_at=time_of(balance, "updated_at"),
    )


def entry_out(entry: metering_pb2.LedgerEntry) -> schemas.LedgerEntry:
    return schemas.LedgerEntry(
        id=entry.id,
        kind=entry.kind,
        amount=schemas.credits_text(entry.amount),
        amount_micro=entry.amount,
        reason=entry.reason or None,
        actor=entry.actor or None,
        idempotency_key=entry.idempotency_key or None,
        request_id=entry.request_id or None,
        key_id=entry.key_id or None,
        model=entry.model or None,
        created_at=time_of(entry, "created_at"),
    )


def usage_row_out(row: metering_pb2.UsageRow) -> schemas.UsageRow:
    return schemas.UsageRow(
        key_id=row.key_id or None,
        model=row.model or None,
        day=row.day or None,
        requests=row.requests,
        input_tokens=row.input_tokens,
        cache_read_tokens=row.cache_read_tokens,
        cache_write_tokens=row.cache_write_tokens,
        output_tokens=row.output_tokens,
        reasoning_tokens=row.reasoning_tokens,
        images=row.images,
        cost=schemas.credits_text(row.cost),
        cost_micro=row.cost,
    )


async def _credit(
    metering: MeteringAdmin,
    method: Callable[..., Awaitable[metering_pb2.CreditResponse]],
    account: auth_pb2.Account,
    body: schemas.TopUp | schemas.Adjustment,
    *,
    caller: Caller,
    header_key: str | None,
    response: Response,
) -> schemas.CreditResult:
    reply = await metering.call(
        method,
        metering_pb2.CreditRequest(
            account_id=account.id,
            amount=body.amount,
            reason=body.reason,
            idempotency_key=_idempotency_key(header_key, body.idempotency_key),
            actor=_actor(caller),
        ),
    )
    if reply.replayed:
        response.status_code = 200
    return schemas.CreditResult(
        entry=entry_out(reply.entry),
        balance=balance_out(account, reply.balance),
        replayed=reply.replayed,
    )


@router.post(
    "/credits/topup",
    status_code=201,
    summary="Add credit (operator)",
    responses=CREDIT_ERRORS,
)
async def top_up(
    *,
    body: schemas.TopUp,
    account: AccountDep,
    caller: OperatorDep,
    metering: MeteringDep,
    response: Response,
    idempotency_key: IdempotencyHeader = None,
) -> schemas.CreditResult:
    """Appends a `top_up` ledger entry and raises the balance, in one transaction."""
    return await _credit(
        metering,
        metering.stub.TopUp,
        account,
        body,
        caller=caller,
        header_key=idempotency_key,
        response=response,
    )


@router.post(
    "/credits/adjust",
    status_code=201,
    summary="Correct a balance up or down (operator)",
    responses=CREDIT_ERRORS,
)
async def adjust(
    *,
    body: schemas.Adjustment,
    account: AccountDep,
    caller: OperatorDep,
    metering: MeteringDep,
    response: Response,
    idempotency_key: IdempotencyHeader = None,
) -> schemas.CreditResult:
    """Appends an `adjustment` ledger entry of either sign. The balance may go below zero."""
    return await _credit(
        metering,
        metering.stub.Adjust,
        account,
        body,
        caller=caller,
        header_key=idempotency_key,
        response=response,
    )


@router.get("/balance", summary="An account's balance, held and available credit", responses=ERRORS)
async def balance(account: AccountDep, metering: MeteringDep) -> schemas.Balance:
    reply = await metering.call(
        metering.stub.GetBalance, metering_pb2.GetBalanceRequest(account_id=account.id)
    )
    return balance_out(account, reply)


@router.get("/ledger", summary="An account's ledger, newest first", responses=ERRORS)
async def ledger(
    account: AccountDep,
    metering: MeteringDep,
    limit: Annotated[int, Query(ge=1, le=MAX_LEDGER_PAGE)] = 100,
    before: Annotated[
        int | None, Query(ge=1, description="`next_before` of the previous page.")
    ] = None,
) -> schemas.LedgerPage:
    async def page(size: int, before_id: int) -> list[metering_pb2.LedgerEntry]:
        request = metering_pb2.ListLedgerRequest(
            account_id=account.id, limit=size, before_id=before_id
        )
        return list((await metering.call(metering.stub.ListLedger, request)).entries)

    # One entry beyond the page says whether there is more; at metering's maximum page
    # size, a one-entry probe after the last one says it instead.
    entries = await page(min(limit + 1, MAX_LEDGER_PAGE), before or 0)
    has_more = len(entries) > limit
    if len(entries) == limit == MAX_LEDGER_PAGE:
        has_more = bool(await page(1, entries[-1].id))
    entries = entries[:limit]
    return schemas.LedgerPage(
        data=[entry_out(e) for e in entries],
        has_more=has_more,
        next_before=entries[-1].id if has_more else None,
    )


def _dimensions(group_by: list[str]) -> list[schemas.UsageDimension]:
    """`key,model` or repeated `group_by` parameters, in a fixed order, each once."""
    names = {name.strip() for value in group_by for name in value.split(",") if name.strip()}
    unknown = sorted(names - set(_DIMENSIONS))
    if unknown:
        message = f"unknown dimension {unknown[0]!r}: use key, model and/or day"
        raise RequestValidationError(
            [{"type": "value_error", "loc": ["query", "group_by"], "msg": message}]
        )
    return [name for name in _DIMENSIONS if name in names]


@router.get(
    "/usage",
    summary="An account's settled usage, by key, model and/or UTC day",
    responses=ERRORS,
)
async def usage(
    account: AccountDep,
    metering: MeteringDep,
    group_by: Annotated[
        list[str] | None,
        Query(description="`key`, `model`, `day`, comma-separated or repeated; none = totals."),
    ] = None,
    since: Annotated[
        schemas.UsageTime | None,
        Query(description="Requests started at or after: RFC 3339, or a UTC day YYYY-MM-DD."),
    ] = None,
    until: Annotated[
        schemas.UsageTime | None,
        Query(description="Requests started before (exclusive): RFC 3339 or YYYY-MM-DD."),
    ] = None,
) -> schemas.Usage:
    dimensions = _dimensions(group_by or [])
    if since is not None and until is not None and until <= since:
        raise RequestValidationError(
            [{"type": "value_error", "loc": ["query", "until"], "msg": "must be after since"}]
        )
    reply = await metering.call(
        metering.stub.GetUsage,
        metering_pb2.GetUsageRequest(
            account_id=account.id,
            start=timestamp(since),
            end=timestamp(until),
            group_by=[_DIMENSIONS[name] for name in dimensions],
        ),
    )
    return schemas.Usage(
        account_id=account.id,
        since=since,
        until=until,
        group_by=dimensions,
        data=[usage_row_out(row) for row in reply.rows],
    )
