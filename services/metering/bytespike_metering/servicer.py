"""MeteringService.Admit: the one synchronous metering call on the hot path.

Today it opens the hold that the request's usage event settles. Credit balances, RPM/TPM
and concurrency windows plug in here (the AdmitRequest already carries the key's limits).
"""

from __future__ import annotations

import datetime as dt

import grpc

from bytespike.metering.v1 import metering_pb2, metering_pb2_grpc
from bytespike_metering.store import MeteringStore


class MeteringServicer(metering_pb2_grpc.MeteringServiceServicer):
    def __init__(self, store: MeteringStore, hold_ttl: dt.timedelta) -> None:
        self._store = store
        self._hold_ttl = hold_ttl

    async def Admit(
        self, request: metering_pb2.AdmitRequest, context: grpc.aio.ServicerContext
    ) -> metering_pb2.AdmitResponse:
        if not request.request_id or not request.account_id or not request.model:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, "request_id, account_id and model are required"
            )
        hold_id = await self._store.open_hold(
            request_id=request.request_id,
            account_id=request.account_id,
            key_id=request.key_id,
            model=request.model,
            amount=0,
            ttl=self._hold_ttl,
        )
        return metering_pb2.AdmitResponse(admitted=True, hold_id=hold_id)
