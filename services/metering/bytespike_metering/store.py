"""Holds and usage records in SQL."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from bytespike.usage.v1 import usage_pb2
from bytespike_common.db import insert_ignoring_duplicates
from bytespike_common.ids import new_id
from bytespike_metering.schema import holds, usage_records

OPEN, SETTLED, EXPIRED = "open", "settled", "expired"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _usage_row(event: usage_pb2.UsageEvent, recorded_at: dt.datetime) -> dict[str, Any]:
    usage = event.usage
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
        "estimated": usage.estimated,
        "status_code": event.status_code,
        "finish_reason": event.finish_reason,
        "error_cause": event.error_cause,
        "client_disconnected": event.client_disconnected,
        "started_at": event.started_at.ToDatetime(dt.UTC) if event.HasField("started_at") else None,
        "recorded_at": recorded_at,
    }


class MeteringStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def open_hold(
        self,
        *,
        request_id: str,
        account_id: str,
        key_id: str,
        model: str,
        amount: int,
        ttl: dt.timedelta,
    ) -> str:
        """Opens the hold for a request; a retried Admit for the same request gets the same hold."""
        now = _now()
        hold_id = new_id("hold")
        async with self._engine.begin() as conn:
            statement = insert_ignoring_duplicates(holds, conn).values(
                id=hold_id,
                request_id=request_id,
                account_id=account_id,
                key_id=key_id,
                model=model,
                amount=amount,
                status=OPEN,
                created_at=now,
                expires_at=now + ttl,
            )
            await conn.execute(statement)
            existing = await conn.scalar(
                sa.select(holds.c.id).where(holds.c.request_id == request_id)
            )
        return str(existing)

    async def settle(self, events: Sequence[usage_pb2.UsageEvent]) -> int:
        """Records a batch of usage events and releases their holds, in one transaction.

        Returns how many events were new; replays are ignored by the primary key.
        """
        if not events:
            return 0
        now = _now()
        async with self._engine.begin() as conn:
            rows = [_usage_row(event, now) for event in events]
            result = await conn.execute(insert_ignoring_duplicates(usage_records, conn), rows)
            await conn.execute(
                holds.update()
                .where(holds.c.request_id.in_([e.request_id for e in events]))
                .where(holds.c.status == OPEN)
                .values(status=SETTLED, settled_at=now)
            )
        return max(result.rowcount, 0)

    async def expire_holds(self) -> int:
        async with self._engine.begin() as conn:
            result = await conn.execute(
                holds.update()
                .where(holds.c.status == OPEN)
                .where(holds.c.expires_at < _now())
                .values(status=EXPIRED)
            )
        return result.rowcount

    async def usage(self, request_id: str) -> dict[str, Any] | None:
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    usage_records.select().where(usage_records.c.request_id == request_id)
                )
            ).first()
        return dict(row._mapping) if row else None

    async def hold_status(self, request_id: str) -> str | None:
        async with self._engine.connect() as conn:
            value = await conn.scalar(
                sa.select(holds.c.status).where(holds.c.request_id == request_id)
            )
        return None if value is None else str(value)
