"""MeteringService.Admit over gRPC: validation and the mapping of failures to status codes.

The decision itself is `admission.Admitter`'s. A missing price (no rate card yet, or a
model the card does not know) is UNAVAILABLE: the edge applies its metering fail mode,
exactly as if metering were down, rather than serving a request nobody can price.
"""

from __future__ import annotations

from typing import Any

import grpc

from bytespike.metering.v1 import metering_pb2, metering_pb2_grpc
from bytespike_metering.admission import Admitter, PriceUnknown


class MeteringServicer(metering_pb2_grpc.MeteringServiceServicer):
    def __init__(self, admitter: Admitter) -> None:
        self._admitter = admitter

    async def Admit(
        self, request: metering_pb2.AdmitRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> metering_pb2.AdmitResponse:
        if not request.request_id or not request.account_id or not request.model:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, "request_id, account_id and model are required"
            )
        try:
            return await self._admitter.admit(request)
        except PriceUnknown as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
            raise AssertionError("unreachable") from exc
