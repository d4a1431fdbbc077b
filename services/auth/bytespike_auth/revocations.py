"""Tells every edge to drop a cached principal the moment its key stops being valid."""

from __future__ import annotations

import logging

from nats.aio.client import Client as NATS

from bytespike_common.messaging import KEY_REVOKED_SUBJECT

log = logging.getLogger(__name__)


class RevocationPublisher:
    def __init__(self, nc: NATS, subject: str = KEY_REVOKED_SUBJECT) -> None:
        self._nc = nc
        self._subject = subject

    async def publish(self, key_hash: str) -> None:
        # Core NATS, flushed: edges that miss it (disconnected) still expire the entry by TTL.
        await self._nc.publish(self._subject, key_hash.encode())
        await self._nc.flush(timeout=2)
