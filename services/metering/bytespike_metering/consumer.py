"""Settlement: the durable JetStream pull consumer of usage events.

Take a batch of messages (each one event, or an edge's `UsageBatch` of one account's
events: `bytespike_common.usage_wire`), record their events in one transaction, then ack
each message. A crash between the
commit and the acks redelivers the batch, which the request-id key makes harmless; a
database error naks the batch for redelivery; an undecodable message is terminated (it can
never succeed) and logged.

Pulling is nats-py's `fetch` done by hand, without its machinery per message (a task, a
timer and a uuid for each `next_msg`): a pull request is a publish to the durable's
`CONSUMER.MSG.NEXT` subject with a reply subject of its own under the consumer's inbox,
whose callback subscription buffers the messages and notes the request's end (its count
delivered, or a status message: `404` nothing more, `408` expired). A pull asks for
what is waiting now (`no_wait`), delivered in one burst; only when nothing is, one event
is waited for (requests of one that expire every `PULL_EXPIRES` and are renewed). No
request stays open while a batch lingers or settles, so events arriving meanwhile wait on
the server and come in the next burst rather than in a socket write each. A request the
server refuses (`409` consumer deleted, leadership change; `503` no JetStream) or whose
end never comes (lost in a reconnect) is retried after `RETRY_DELAY`; the client renews
the subscription itself after a reconnect.

A transaction's cost is mostly per batch, not per event, so when events are arriving
faster than they are settled (a pull brings several, but not a full batch) the consumer
waits `BATCH_LINGER` and pulls again before settling: under load that multiplies the
batch size (~40 events a transaction at 1,000 events/s instead of ~15 with 10 ms) for at
most 50 ms of settlement delay. A lone event is settled at once. Events pulled but not yet
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
import functools
import itertools
import logging
from collections.abc import Awaitable, Callable, Sequence

import nats.errors
from google.protobuf.message import DecodeError
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from bytespike.usage.v1 import usage_pb2
from bytespike_common import telemetry, usage_wire

log = logging.getLogger(__name__)
RETRY_DELAY = 1.0
# How long a short pull waits for more events before settling.
BATCH_LINGER = 0.05
# How long a request waiting for the next event stays open on the server, and how long
# after that (or after a `no_wait` request) a request the server never ended is given up.
PULL_EXPIRES = 1.0
PULL_GRACE = 1.0
# Status codes that end a pull request normally: nothing (more) to deliver, expired.
_PULL_ENDED = frozenset({"404", "408"})
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
        # Pull requests and acks are plain publishes on the context's connection.
        self._nc = js._nc
        self._settle = settle
        self._stream = stream
        self._subject = f"{subject_prefix}.>"
        self._durable = durable
        self._batch_size = batch_size
        self._next_subject = f"{js._prefix}.CONSUMER.MSG.NEXT.{stream}.{durable}"
        self._inbox = ""
        self._replies = itertools.count()
        # Pulled, not yet taken for settlement, in delivery order.
        self._buffer: list[Msg] = []
        # The pull request in progress: its reply subject ("" when none), how many events
        # it asked for and has delivered, why the server refused it, and its end.
        self._request = ""
        self._wanted = 0
        self._delivered = 0
        self._refused = ""
        self._ended = asyncio.Event()
        self.settled = 0
        self.running = False

    async def run(self) -> None:
        await self._ensure_durable()
        self._inbox = self._nc.new_inbox()
        subscription = await self._nc.subscribe(f"{self._inbox}.*", cb=self._on_message)
        self.running = True
        try:
            while True:
                await self._handle(await self._next_batch())
        finally:
            self.running = False
            # No more deliveries (nor a drain on shutdown waiting for a pull request to
            # expire), then give back what was pulled and not settled.
            with contextlib.suppress(Exception):
                await asyncio.shield(subscription.unsubscribe())
            pulled, self._buffer = self._buffer, []
            await _give_back(pulled)

    async def _ensure_durable(self) -> None:
        # What `pull_subscribe` does: create the durable unless it exists (config unchanged).
        try:
            await self._js.consumer_info(self._stream, self._durable)
        except NotFoundError:
            await self._js.add_consumer(
                self._stream,
                ConsumerConfig(
                    name=self._durable,
                    durable_name=self._durable,
                    filter_subject=self._subject,
                    ack_policy=AckPolicy.EXPLICIT,
                    deliver_policy=DeliverPolicy.ALL,
                    ack_wait=30,
                    max_ack_pending=20_000,
                ),
            )

    async def _next_batch(self) -> list[Msg]:
        await self._pull(self._batch_size - len(self._buffer))
        while not self._buffer:
            # Nothing waiting: wait for the next event, then take what came along with it.
            await self._pull(1, expires=PULL_EXPIRES)
            if self._buffer:
                await self._pull(self._batch_size - len(self._buffer))
        if 1 < len(self._buffer) < self._batch_size:
            # Events are arriving faster than they are settled: let more gather on the
            # server (pulled only then, so a stop meanwhile gives them all back).
            await asyncio.sleep(BATCH_LINGER)
            await self._pull(self._batch_size - len(self._buffer))
        batch = self._buffer[: self._batch_size]
        del self._buffer[: self._batch_size]
        return batch

    async def _pull(self, count: int, expires: float = 0.0) -> None:
        """Asks for up to `count` events into the buffer and returns once the request has
        ended: only what is waiting now, or (`expires`) the first `count` to come."""
        if count <= 0:
            return
        # The JSON of a pull request, formatted directly (`json.dumps` cost more than the
        # rest of a pull's own work).
        if expires:
            request = b'{"batch":%d,"expires":%d}' % (count, int(expires * 1e9))
        else:
            request = b'{"batch":%d,"no_wait":true}' % count
        self._request = f"{self._inbox}.{next(self._replies)}"
        self._wanted, self._delivered, self._refused = count, 0, ""
        self._ended.clear()
        try:
            await self._nc.publish(self._next_subject, request, reply=self._request)
            async with asyncio.timeout(expires + PULL_GRACE):
                await self._ended.wait()
            failure = self._refused
        except (nats.errors.Error, TimeoutError) as exc:
            # A closed or reconnecting client: the request was not sent, or its end lost.
            failure = repr(exc)
        finally:
            # Events still coming for it (a lost request's) are buffered all the same.
            self._request = ""
        if failure:
            log.warning("usage pull failed (%s); retrying", failure)
            await asyncio.sleep(RETRY_DELAY)

    async def _on_message(self, message: Msg) -> None:
        if message.reply:
            # An event: JetStream delivers each with its ack subject as the reply.
            self._buffer.append(message)
            self._delivered += 1
            if self._delivered == self._wanted:
                self._ended.set()
            return
        # A status message: it ends the pull request it answers (by its reply subject).
        headers = message.headers or {}
        status = headers.get("Status", "")
        if message.subject != self._request or status == "100":
            # An earlier request's, given up on; or a heartbeat (never asked for).
            return
        if status not in _PULL_ENDED:
            self._refused = f"{status} {headers.get('Description', '')}".strip()
        self._ended.set()

    async def _handle(self, messages: list[Msg]) -> None:
        events: list[usage_pb2.UsageEvent] = []
        good: list[Msg] = []
        for message in messages:
            # One event, or an edge's batch of one account's events (usage_wire).
            try:
                carried = usage_wire.decode(message.data, message.headers)
            except DecodeError:
                # Logged whole: it can never settle, and the bytes are the only record.
                log.error(
                    "dropping undecodable usage message on %s: %s",
                    message.subject,
                    message.data.hex(),
                )
                await _answer([message], Msg.term)
                continue
            kept = [event for event in carried if event.request_id]
            if len(kept) < len(carried):
                log.error(
                    "dropping %d usage events without request_id on %s",
                    len(carried) - len(kept),
                    message.subject,
                )
            if not kept:
                await _answer([message], Msg.term)
                continue
            events.extend(kept)
            good.append(message)
        if not events:
            return
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
            await _answer(good, functools.partial(Msg.nak, delay=RETRY_DELAY))
            await asyncio.sleep(RETRY_DELAY)
            return
        await _answer(good, Msg.ack)


async def _answer(messages: Sequence[Msg], answer: Callable[[Msg], Awaitable[None]]) -> None:
    """Acks, naks or terms messages. That fails only when not even buffered (a closed
    client, a full reconnect buffer), and the server then redelivers after the ack wait
    anyway (a replay is harmless): the consumer must not die of it."""
    try:
        for message in messages:
            await answer(message)
    except nats.errors.Error as exc:
        log.warning("answering %d usage messages failed (%r)", len(messages), exc)


async def _give_back(messages: Sequence[Msg]) -> None:
    """Naks delivered messages for immediate redelivery, best effort (the connection may be
    closing; unacked messages are redelivered after the ack wait anyway)."""
    if messages:
        with contextlib.suppress(Exception):
            await asyncio.shield(_answer(messages, Msg.nak))
