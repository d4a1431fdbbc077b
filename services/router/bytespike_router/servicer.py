from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc

from bytespike.router.v1 import router_pb2, router_pb2_grpc
from bytespike_common.routing import RouteIndex
from bytespike_router.hub import RouteTableHub


class RouterServicer(router_pb2_grpc.RouterServiceServicer):
    def __init__(self, hub: RouteTableHub) -> None:
        self._hub = hub

    async def WatchRoutes(
        self, request: router_pb2.WatchRoutesRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[router_pb2.RouteTable]:
        async for table in self._hub.watch():
            yield table

    async def Plan(
        self, request: router_pb2.PlanRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> router_pb2.PlanResponse:
        index = RouteIndex(self._hub.current)
        model = index.resolve(request.model)
        if model is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown model {request.model!r}")
        if request.group and not index.allowed(model.id, request.group):
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f"model {model.id!r} is not in group {request.group!r}",
            )
        return router_pb2.PlanResponse(model=model.id, deployments=index.plan(model))
