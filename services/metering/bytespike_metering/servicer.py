"""MeteringService.Admit and Lease over gRPC: validation, and failures mapped to status codes.

The decision itself is `admission.Admitter`'s. A missing price (no rate card yet, or a
model the card does not know) is UNAVAILABLE: the edge applies its metering fail mode,
exactly as if metering were down, rather than serving a request nobody can price.
"""

from __future__ import annotations

from typing import Any

import grpc

from bytespike.metering.v1 import metering_pb2, metering_pb2_grpc
from bytespike_metering.admission import Admitter, PriceUnknown
from bytespike_metering.leases import LeaseGranter


class MeteringServicer(metering_pb2_grpc.MeteringServiceServicer):
    def __init__(self, admitter: Admitter, leases: LeaseGranter) -> None:
        self._admitter = admitter
        self._leases = leases

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

    async def Lease(
        self, request: metering_pb2.LeaseRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> metering_pb2.LeaseResponse:
        releasing = request.HasField("release") and bool(request.release.lease_id)
        if request.release_only and not releasing:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "release_only needs a release")
        if not request.release_only and (not request.lease_id or not request.account_id):
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, "lease_id and account_id are required"
            )
        return await self._leases.lease(request)
