"""NATS: connections, the JetStream usage stream, and the core subjects for invalidations.

Usage events go on JetStream stream `USAGE` (subjects `usage.v1.<account>`), published with
`Nats-Msg-Id = request_id` so a retried publish is dropped by the server's duplicate window,
and acked before the edge forgets them. Cache invalidations are fire-and-forget core NATS.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import nats
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError

log = logging.getLogger(__name__)

USAGE_STREAM = "USAGE"
USAGE_SUBJECT_PREFIX = "usage.v1"
KEY_REVOKED_SUBJECT = "auth.v1.key_revoked"
CATALOG_CHANGED_SUBJECT = "router.v1.catalog_changed"
# Metering -> edges: an account was disabled or enabled (payload: metering.v1.Balance).
ACCOUNT_STATUS_SUBJECT = "metering.v1.account_status"
# Duplicate-detection window for Nats-Msg-Id: longer than any edge's publish retries.
DUPLICATE_WINDOW_SECONDS = 600


@functools.lru_cache(maxsize=65_536)
def usage_subject(account_id: str, prefix: str = USAGE_SUBJECT_PREFIX) -> str:
    # Subject tokens cannot contain '.', '*', '>' or whitespace.
    token = "".join(c if c.isalnum() or c in "-_" else "_" for c in account_id) or "_"
    return f"{prefix}.{token}"


async def connect(url: str, name: str, **options: Any) -> NATS:
    async def on_error(exc: Exception) -> None:
        log.warning("nats error: %s", exc)

    async def on_disconnect() -> None:
        log.warning("nats disconnected")

    async def on_reconnect() -> None:
        log.info("nats reconnected")

    return await nats.connect(
        servers=[url],
        name=name,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        error_cb=on_error,
        disconnected_cb=on_disconnect,
        reconnected_cb=on_reconnect,
        **options,
    )


async def ensure_usage_stream(
    js: JetStreamContext, stream: str = USAGE_STREAM, prefix: str = USAGE_SUBJECT_PREFIX
) -> None:
    """Creates the usage stream if missing (idempotent; every producer and consumer calls it)."""
    config = StreamConfig(
        name=stream,
        subjects=[f"{prefix}.>"],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        duplicate_window=DUPLICATE_WINDOW_SECONDS,
        max_age=7 * 24 * 3600,
    )
    try:
        await js.stream_info(stream)
    except NotFoundError:
        await js.add_stream(config)
        log.info("created JetStream stream %s on %s.>", stream, prefix)
