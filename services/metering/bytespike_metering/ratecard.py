"""The current rate card, kept from the router's WatchRoutes stream.

Metering prices nothing until the first snapshot arrives (Admit answers UNAVAILABLE, the
consumer waits, health stays NOT_SERVING); after that a lost router only means the last
card stays in force while the stream reconnects.
"""

from __future__ import annotations

import asyncio
import logging
import socket

import grpc

from bytespike.router.v1 import router_pb2, router_pb2_grpc
from bytespike_common.pricing import RateCard

log = logging.getLogger(__name__)
MAX_BACKOFF = 2.0


class RateCardWatcher:
    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._stub = router_pb2_grpc.RouterServiceStub(channel)
        self.card: RateCard | None = None
        self.ready = asyncio.Event()

    def install(self, table: router_pb2.RouteTable) -> None:
        self.card = RateCard(table)
        self.ready.set()
        log.info("rate card %s: %d model names priced", table.version, len(self.card))

    async def run(self) -> None:
        backoff = 0.1
        request = router_pb2.WatchRoutesRequest(client_id=f"metering@{socket.gethostname()}")
        while True:
            try:
                async for table in self._stub.WatchRoutes(request):
                    self.install(table)
                    backoff = 0.1
            except grpc.aio.AioRpcError as exc:
                log.warning("route stream lost (%s); retrying in %.1fs", exc.code().name, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)
