"""Holds the route table the router pushes over WatchRoutes; reconnects if the stream breaks.

An edge that loses the router keeps serving its last table.
"""

from __future__ import annotations

import asyncio
import logging
import socket

import grpc

from bytespike.router.v1 import router_pb2, router_pb2_grpc
from bytespike_common.routing import RouteIndex

log = logging.getLogger(__name__)
MAX_BACKOFF = 2.0


class RouteWatcher:
    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._stub = router_pb2_grpc.RouterServiceStub(channel)
        self.index: RouteIndex | None = None
        self.ready = asyncio.Event()

    async def run(self) -> None:
        backoff = 0.1
        request = router_pb2.WatchRoutesRequest(client_id=f"edge@{socket.gethostname()}")
        while True:
            try:
                async for table in self._stub.WatchRoutes(request):
                    self.index = RouteIndex(table)
                    self.ready.set()
                    backoff = 0.1
                    log.info("route table %s: %d models", table.version, len(table.models))
            except grpc.aio.AioRpcError as exc:
                log.warning("route stream lost (%s); retrying in %.1fs", exc.code().name, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)
