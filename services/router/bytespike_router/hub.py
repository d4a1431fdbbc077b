"""Holds the current route table and wakes every WatchRoutes stream when it changes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

from bytespike.router.v1 import router_pb2


class RouteTableHub:
    def __init__(self, table: router_pb2.RouteTable) -> None:
        self._table = table
        self._generation = 0
        self._changed = asyncio.Condition()

    @property
    def current(self) -> router_pb2.RouteTable:
        return self._table

    async def publish(self, table: router_pb2.RouteTable) -> bool:
        """Installs a new table; returns False (and wakes nobody) if nothing changed."""
        if table.version == self._table.version:
            return False
        async with self._changed:
            self._table = table
            self._generation += 1
            self._changed.notify_all()
        return True

    async def watch(self) -> AsyncIterator[router_pb2.RouteTable]:
        """The current table at once, then each new one (intermediate ones may be skipped)."""
        seen = self._generation
        yield self._table
        while True:
            async with self._changed:
                await self._changed.wait_for(self._newer_than(seen))
                seen = self._generation
                table = self._table
            yield table

    def _newer_than(self, generation: int) -> Callable[[], bool]:
        return lambda: self._generation != generation
