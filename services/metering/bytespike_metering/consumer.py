"""Settlement: the durable JetStream pull consumer of usage events.

Pull a batch, record it in one transaction, then ack each message. A crash between the
commit and the acks redelivers the batch, which the request-id key makes harmless; a
database error naks the batch for redelivery; an undecodable message is terminated (it can
never succeed) and logged.

A transaction's cost is mostly per batch, not per event, so when events are arriving
faster than they are settled (a pull brings several, but not a full batch) the consumer
waits `BATCH_LINGER` for more before settling: under load that multiplies the batch size
(~40 events a transaction at 1,000 events/s instead of ~15 with 10 ms) for at most 50 ms of
settlement delay. A lone event is settled at once, as before. Events pulled but not yet
settled when the consumer is stopped are nak'd, so a restarted metering gets them at once
rather than after the ack wait.
The acks are not awaited one by one on the wire: the client queues them and writes the
whole batch's in one flush. They stay explicit, one per message: `AckPolicy.ALL` would let
one replica's ack of its last message ack another replica's unsettled ones on a shared
durable (and a durable's ack policy cannot be changed in place).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence

import nats.errors
from google.protobuf.message import DecodeError
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from bytespike.usage.v1 import usage_pb2
from bytespike_common import telemetry

log = logging.getLogger(__name__)
RETRY_DELAY = 1.0
# How long a short pull waits for more events before settling, and how long the top-up
# pull may then wait for the first of them.
BATCH_LINGER = 0.05
TOP_UP_TIMEOUT = 0.005
# Records a batch and returns how many events were new.
Settle = Callable[[Sequence[usage_pb2.UsageEvent]], Awaitable[int]]


class UsageConsumer:
    def __init__(
        self,
        js: JetStreamContext,
        settle: Settle,
        *,
        stream: str,
        subject_prefix: str,
        durable: str,
        batch_size: int,
    ) -> None:
        self._js = js
        self._settle = settle
        self._stream = stream
        self._subject = f"{subject_prefix}.>"
        self._durable = durable
        self._batch_size = batch_size
        self.settled = 0
        self.running = False

    async def run(self) -> None:
        subscription = await self._js.pull_subscribe(
            self._subject,
            durable=self._durable,
            stream=self._stream,
            config=ConsumerConfig(
                ack_policy=AckPolicy.EXPLICIT,
                deliver_policy=DeliverPolicy.ALL,
                ack_wait=30,
                max_ack_pending=20_000,
            ),
        )
        self.running = True
        try:
            while True:
                try:
                    messages = await self._pull(subscription)
                except (nats.errors.TimeoutError, TimeoutError):
                    # No events within the pull's timeout (nats-py raises either class).
                    continue
                except nats.errors.Error as exc:
                    # A reconnecting client: keep pulling once it is back.
                    log.warning("usage pull failed (%r); retrying", exc)
                    await asyncio.sleep(RETRY_DELAY)
                    continue
                await self._handle(messages)
        finally:
            self.running = False
            # Without this a drain on shutdown waits for the pending pull request to expire.
            with contextlib.suppress(Exception):
                await asyncio.shield(subscription.unsubscribe())

    async def _pull(self, subscription: JetStreamContext.PullSubscription) -> list[Msg]:
        messages = await subscription.fetch(self._batch_size, timeout=1)
        if 1 < len(messages) < self._batch_size:
            try:
                await asyncio.sleep(BATCH_LINGER)
                # Nothing more (or a failed top-up pull): settle what came.
                with contextlib.suppress(nats.errors.Error, TimeoutError):
                    messages += await subscription.fetch(
                        self._batch_size - len(messages), timeout=TOP_UP_TIMEOUT
                    )
            except asyncio.CancelledError:
                await _give_back(messages)
                raise
        return messages

    async def _handle(self, messages: list[Msg]) -> None:
        events: list[usage_pb2.UsageEvent] = []
        good: list[Msg] = []
        for message in messages:
            event = usage_pb2.UsageEvent()
            try:
                event.ParseFromString(message.data)
            except DecodeError:
                log.error("dropping undecodable usage message on %s", message.subject)
                await message.term()
                continue
            if not event.request_id:
                log.error("dropping usage message without request_id on %s", message.subject)
                await message.term()
                continue
            events.append(event)
            good.append(message)
        try:
            with telemetry.consume_spans(good, self._stream, self._durable):
                self.settled += await self._settle(events)
        except asyncio.CancelledError:
            # Stopping: whether or not the batch committed, redeliver it now (a replay
            # is harmless) instead of after the ack wait.
            await _give_back(good)
            raise
        except Exception:
            log.exception("settling %d usage events failed; they will be redelivered", len(events))
            for message in good:
                await message.nak(delay=RETRY_DELAY)
            await asyncio.sleep(RETRY_DELAY)
            return
        for message in good:
            await message.ack()


async def _give_back(messages: Sequence[Msg]) -> None:
    """Naks pulled messages for immediate redelivery, best effort (the connection may be
    closing; unacked messages are redelivered after the ack wait anyway)."""
    with contextlib.suppress(Exception):
        for message in messages:
            await asyncio.shield(message.nak())
