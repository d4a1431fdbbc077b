"""Tells every edge to drop cached principals the moment they stop being valid.

The subject carries one key hash per message; an edge that receives it forgets that cached
principal and asks auth again on the next request. It is used for revocations and for any
change that makes a cached principal stale (an account disabled, its policy changed).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from nats.aio.client import Client as NATS

from bytespike_auth.store import KeyStore
from bytespike_common.messaging import KEY_REVOKED_SUBJECT

log = logging.getLogger(__name__)


class RevocationPublisher:
    def __init__(self, nc: NATS, subject: str = KEY_REVOKED_SUBJECT) -> None:
        self._nc = nc
        self._subject = subject

    async def publish(self, key_hash: str) -> None:
        await self.publish_many([key_hash])

    async def publish_many(self, key_hashes: Sequence[str]) -> None:
        if not key_hashes:
            return
        for key_hash in key_hashes:
            await self._nc.publish(self._subject, key_hash.encode())
        # Core NATS, flushed: edges that miss it (disconnected) still expire the entry by TTL.
        await self._nc.flush(timeout=2)


class RevocationScheduler:
    """Applies scheduled revocations (rotation grace periods) as their time comes.

    The schedule lives in the database (`revoke_at`), so a restart loses nothing: the first
    sweep after start-up catches up. Authenticate already refuses a key whose `revoke_at`
    has passed, and the edge checks it on cached principals; the sweep makes the status
    durable and pushes the invalidation.
    """

    def __init__(
        self, store: KeyStore, publisher: RevocationPublisher, interval: float = 1.0
    ) -> None:
        self._store = store
        self._publisher = publisher
        self._interval = interval
        self._task: asyncio.Task[None] | None = None

    async def sweep(self) -> list[str]:
        hashes = await self._store.apply_due_revocations()
        if hashes:
            await self._publisher.publish_many(hashes)
            log.info("%d scheduled key revocations took effect", len(hashes))
        return hashes

    async def _run(self) -> None:
        while True:
            try:
                await self.sweep()
            except Exception:
                # A database or NATS hiccup: the next sweep retries the same rows.
                log.warning("revocation sweep failed", exc_info=True)
            await asyncio.sleep(self._interval)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="revocation-sweep")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
