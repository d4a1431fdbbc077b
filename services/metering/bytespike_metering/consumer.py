"""Settlement: the durable JetStream pull consumer of usage events.

Pull a batch, record it in one transaction, then ack each message. A crash between the
commit and the acks redelivers the batch, which the request-id key makes harmless; a
database error naks the batch for redelivery; an undecodable message is terminated (it can
never succeed) and logged.
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
                    messages = await subscription.fetch(self._batch_size, timeout=1)
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
        except Exception:
            log.exception("settling %d usage events failed; they will be redelivered", len(events))
            for message in good:
                await message.nak(delay=RETRY_DELAY)
            await asyncio.sleep(RETRY_DELAY)
            return
        for message in good:
            await message.ack()
