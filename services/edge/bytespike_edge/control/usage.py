"""Publishes usage events to JetStream, acked, retried until the server has them.

Events are queued so a request never waits on the publish. One sender task pipelines them:
it publishes without waiting for each ack (up to `MAX_IN_FLIGHT` unacked at once), each
with a reply subject of its own under one inbox, and the inbox's callback settles the
event its ack names. Woken by an event, the sender first lets `LINGER` pass, then
publishes everything queued at once: the client writes the burst in one socket write and
the server answers its acks together, where awaiting every ack in turn cost a write, a
read and a worker wake-up per event (the syscalls were most of the cost). This is what
nats-py's `publish_async` does, without its per-message future, semaphore, random token
and `PubAck` object: about a third of the publisher's CPU when measured.

The events of one account queued at that moment go out as **one message**, a `UsageBatch`
(`bytespike_common.usage_wire`, up to `MAX_BATCH` events): one publish, one ack, one
stream entry and one delivery to metering instead of one each per event, which was most of
what the usage path cost the edge, nats-server and metering under load. Batches keep the
per-account subjects. Each traced event keeps its own publish span (under its request's
trace, open until the batch's ack); the message carries the first one's context, so the
consumer's span is a child of that one. An event with nothing to batch it with goes alone,
as a plain `UsageEvent`.

Every publish carries a `Nats-Msg-Id` (the request id, or for a batch its first request id
and count), so a message re-published after a lost or late ack is dropped by the server's
duplicate window; settlement is idempotent by request id besides. A message whose ack fails
or does not come within `ACK_TIMEOUT` is published again, as it was formed, and publishing
pauses with exponential backoff while failures continue (NATS down, stream unavailable).
On shutdown `drain` waits for every queued and unacked event for up to the grace period.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import itertools
import logging
import time
from collections import deque

import orjson
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js.api import Header

from bytespike.usage.v1 import usage_pb2
from bytespike_common import telemetry
from bytespike_common.errors import DependencyUnavailable
from bytespike_common.messaging import usage_subject
from bytespike_common.usage_wire import BATCH_HEADER, batch_id, encode_batch

log = logging.getLogger(__name__)
# Unacked publishes at once: far above what ~1 ms acks need at thousands of events/s, low
# enough that an outage does not re-publish a flood every `ACK_TIMEOUT`.
MAX_IN_FLIGHT = 1024
ACK_TIMEOUT = 5.0
# Billing does not notice 50 ms; metering and nats-server do: each message costs them a
# fixed ~1.5 ms of CPU (a pull, a delivery, an ack, a transaction) besides its events'. At
# one request in flight (~1 ms each) 5 ms made batches of ~4 events and metering spent
# ~530 µs a request; 20 ms made ~15 and ~240 µs. At ~2,000 requests/s, 20 ms → 50 ms took
# metering from 77 to 53 µs a request and nats-server from 24 to 15 (docs/performance.md).
# The price: an edge that crashes (not one that stops: `drain`) loses up to this much of
# its usage, as it loses the usage of the requests it was serving.
LINGER = 0.05
FIRST_BACKOFF = 0.05
MAX_BACKOFF = 5.0
# Events per message, and the bytes they may take (NATS refuses payloads over 1 MB).
MAX_BATCH = 256
MAX_BATCH_BYTES = 512 * 1024
# Queued events looked at to fill one batch: many accounts at once must not make forming
# a batch quadratic in the backlog.
BATCH_SCAN = 1024
# The trace context of an event submitted with tracing off (shared; never written to).
_UNTRACED: dict[str, str] = {}


class _Outgoing:
    """One message on its way (an event, or a batch of `count`): the bytes and headers it is
    (re-)published with, and the publish spans of its traced events."""

    __slots__ = ("count", "data", "deadline", "headers", "request_id", "spans", "subject")

    def __init__(
        self, request_id: str, subject: str, data: bytes, headers: dict[str, str], count: int
    ):
        self.request_id = request_id  # the first event's, for the logs
        self.subject = subject
        self.data = data
        self.headers = headers
        self.count = count
        self.deadline = 0.0
        self.spans: list[_Span] = []

    def close_spans(self, error: BaseException | None = None) -> None:
        for span in self.spans:
            span.close(error)
        self.spans = []


class _Span:
    """`telemetry.publish_span` held open from the first publish to the ack.

    The span ends in the ack callback, outside the task that opened it, so it is entered
    and exited in a context of its own (OTel detaches with a token of the context it
    attached in).
    """

    __slots__ = ("_context", "_manager")

    def __init__(self, subject: str, stream: str, request_id: str, parent: dict[str, str]):
        self._context = contextvars.Context()
        self._manager = telemetry.publish_span(subject, stream, request_id, parent)

    def open(self) -> dict[str, str]:
        return self._context.run(self._manager.__enter__)

    def close(self, error: BaseException | None = None) -> None:
        exc_type = type(error) if error else None
        self._context.run(self._manager.__exit__, exc_type, error, None)


class UsagePublisher:
    def __init__(self, nc: NATS, *, stream: str, subject_prefix: str, max_pending: int) -> None:
        # Published on the plain connection: acks arrive on our own inbox (see above).
        self._nc = nc
        self._stream = stream
        self._prefix = subject_prefix
        self._max_pending = max_pending
        # Decided once, as for the edge's server spans: asking the OTel API for the current
        # span costs more than the rest of `submit`.
        self._tracing = telemetry.tracing_enabled()
        # Submitted, not yet published: each event with its request's trace context (W3C
        # headers, captured at submit). Retries go before them, in `_retry`.
        self._queue: deque[tuple[usage_pb2.UsageEvent, dict[str, str]]] = deque()
        self._retry: deque[_Outgoing] = deque()
        # Events in `_retry` and `_in_flight` (formed into messages, not yet acked).
        self._outstanding = 0
        # Published and awaiting the ack, by reply subject, in publish order (so oldest
        # deadline first). A retry is a new publish with a new reply subject: a late ack of
        # an attempt given up on finds nothing here and is ignored.
        self._inbox = self._nc.new_inbox()
        self._replies = itertools.count()
        self._in_flight: dict[str, _Outgoing] = {}
        self._work = asyncio.Event()
        self._window = asyncio.Event()
        self._window.set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._backoff = 0.0
        self._resume_at = 0.0
        self._failures = 0
        self._tasks: list[asyncio.Task[None]] = []
        self.published = 0

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._send_loop(), name="usage-publisher"),
            asyncio.create_task(self._expire_loop(), name="usage-ack-timeouts"),
        ]

    def check_capacity(self) -> None:
        """Refuses new work while the backlog is full: serving it unbilled would lose usage."""
        if self.pending >= self._max_pending:
            raise DependencyUnavailable("Usage recording is backed up; retry shortly.")

    def submit(self, event: usage_pb2.UsageEvent) -> None:
        if self.pending >= self._max_pending:
            # Admission checks capacity first; reaching this means a burst raced past it.
            log.error("usage queue full; event for %s logged only", event.request_id)
            log.error("lost usage event %s", event.SerializeToString().hex())
            return
        self._queue.append((event, telemetry.trace_headers() if self._tracing else _UNTRACED))
        self._idle.clear()
        self._work.set()

    @property
    def pending(self) -> int:
        """Events not yet acked: queued, waiting to be retried, or published."""
        return len(self._queue) + self._outstanding

    async def _send_loop(self) -> None:
        await self._subscribe()
        while True:
            if not self._queue and not self._retry:
                self._work.clear()
                await self._work.wait()
                await asyncio.sleep(LINGER)
            while len(self._in_flight) >= MAX_IN_FLIGHT:
                self._window.clear()
                await self._window.wait()
            if (delay := self._resume_at - time.monotonic()) > 0:
                await asyncio.sleep(delay)
            outgoing = self._retry.popleft() if self._retry else self._next_message()
            reply = f"{self._inbox}.{next(self._replies)}"
            try:
                await self._nc.publish(
                    outgoing.subject, outgoing.data, reply=reply, headers=outgoing.headers
                )
            except NatsError as exc:
                # Not even buffered (closed connection, reconnect buffer full): try again later.
                self._retry.append(outgoing)
                self._failed(outgoing, exc)
                continue
            except Exception:
                # Never let the one sender die: every later event would go unbilled.
                log.exception("usage publish for %s failed; retrying", outgoing.request_id)
                self._retry.append(outgoing)
                self._failed(outgoing, "unexpected error")
                continue
            outgoing.deadline = time.monotonic() + ACK_TIMEOUT
            self._in_flight[reply] = outgoing

    async def _subscribe(self) -> None:
        # The client renews the subscription itself after a reconnect.
        while True:
            try:
                await self._nc.subscribe(f"{self._inbox}.*", cb=self._on_ack)
                return
            except NatsError as exc:
                log.warning("usage ack subscription failed (%r); retrying", exc)
                await asyncio.sleep(MAX_BACKOFF)

    def _next_message(self) -> _Outgoing:
        """The oldest queued event, with the queued events of its account that fit beside it;
        the others keep their place in the queue."""
        queue = self._queue
        first, trace = queue.popleft()
        account = first.account_id
        subject = usage_subject(account, self._prefix)
        data = first.SerializeToString()
        batch, traces, size, skipped = [data], [(first.request_id, trace)], len(data), []
        for _ in range(min(len(queue), BATCH_SCAN)):
            if len(batch) >= MAX_BATCH:
                break
            event, trace = queue.popleft()
            # One account per batch (so one subject): compared by id, the subject is
            # computed once per message, not once per event.
            if event.account_id != account:
                skipped.append((event, trace))
                continue
            data = event.SerializeToString()
            if size + len(data) > MAX_BATCH_BYTES:
                skipped.append((event, trace))
                break
            batch.append(data)
            traces.append((event.request_id, trace))
            size += len(data)
        queue.extendleft(reversed(skipped))
        headers = {"Nats-Msg-Id": first.request_id, Header.EXPECTED_STREAM: self._stream}
        payload = batch[0]
        if len(batch) > 1:
            headers["Nats-Msg-Id"] = batch_id(first.request_id, len(batch))
            headers[BATCH_HEADER] = str(len(batch))
            payload = encode_batch(batch)
        outgoing = _Outgoing(first.request_id, subject, payload, headers, len(batch))
        for request_id, trace in traces:
            if trace:
                span = _Span(subject, self._stream, request_id, trace)
                context = span.open()
                if not outgoing.spans:  # the message carries the first traced event's
                    headers.update(context)
                outgoing.spans.append(span)
        self._outstanding += len(batch)
        return outgoing

    async def _on_ack(self, reply: Msg) -> None:
        outgoing = self._in_flight.pop(reply.subject, None)
        if outgoing is None:
            return
        if len(self._in_flight) < MAX_IN_FLIGHT:
            self._window.set()
        if error := _ack_error(reply):
            self._retry.append(outgoing)
            self._work.set()
            self._failed(outgoing, error)
            return
        self.published += outgoing.count
        self._outstanding -= outgoing.count
        if self._failures:
            log.info("usage publishing recovered after %d failed attempts", self._failures)
            self._failures = 0
            self._backoff = 0.0
        outgoing.close_spans()
        if not self.pending:
            self._idle.set()

    def _failed(self, outgoing: _Outgoing, error: object) -> None:
        # One line per outage, not one per event in flight.
        if not self._failures:
            log.warning("usage publish for %s failed (%s); retrying", outgoing.request_id, error)
        self._failures += 1
        self._backoff = min(max(self._backoff * 2, FIRST_BACKOFF), MAX_BACKOFF)
        self._resume_at = time.monotonic() + self._backoff

    async def _expire_loop(self) -> None:
        """Gives up on acks that have not come (a publish lost in a reconnect): re-published."""
        while True:
            await asyncio.sleep(ACK_TIMEOUT / 4)
            now = time.monotonic()
            expired = []
            for reply, outgoing in self._in_flight.items():
                if outgoing.deadline > now:
                    break
                expired.append(reply)
            for reply in expired:
                outgoing = self._in_flight.pop(reply)
                self._retry.append(outgoing)
                self._failed(outgoing, f"no ack within {ACK_TIMEOUT}s")
            if expired:
                self._window.set()
                self._work.set()

    async def drain(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.pending:
            log.error("shutting down with %d usage events unacked", self.pending)
            abandoned = asyncio.CancelledError("shut down before the ack")
            for outgoing in [*self._retry, *self._in_flight.values()]:
                outgoing.close_spans(abandoned)


def _ack_error(reply: Msg) -> str | None:
    """Why the server did not store the message (None: stored, or a duplicate of a stored one)."""
    if reply.headers and (status := reply.headers.get("Status")):
        # 503: no stream listens on the subject (yet).
        return f"status {status} {reply.headers.get('Description', '')}".rstrip()
    data = reply.data
    if data.startswith(b"{") and b'"error"' not in data:
        return None  # a PubAck (`{"stream":…,"seq":…}`, maybe `"duplicate":true`)
    try:
        answer = orjson.loads(data)
    except orjson.JSONDecodeError:
        return f"unreadable ack {data[:100]!r}"
    return str(answer["error"]) if isinstance(answer, dict) and "error" in answer else None
