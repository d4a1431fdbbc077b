"""Publishes usage events to JetStream, acked, retried until the server has them.

Events are queued so a request never waits on the publish; a pool of workers publishes with
`Nats-Msg-Id = request_id`, so a retry after a lost ack is dropped as a duplicate by the
server. On shutdown the queue is drained for up to the grace period.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from nats.errors import Error as NatsError
from nats.js import JetStreamContext

from bytespike.usage.v1 import usage_pb2
from bytespike_common import telemetry
from bytespike_common.errors import DependencyUnavailable
from bytespike_common.messaging import usage_subject

log = logging.getLogger(__name__)
WORKERS = 16
MAX_BACKOFF = 5.0


class UsagePublisher:
    def __init__(
        self, js: JetStreamContext, *, stream: str, subject_prefix: str, max_pending: int
    ) -> None:
        self._js = js
        self._stream = stream
        self._prefix = subject_prefix
        # Each event with its request's trace context (W3C headers), captured at submit.
        self._queue: asyncio.Queue[tuple[usage_pb2.UsageEvent, dict[str, str]]] = asyncio.Queue(
            max_pending
        )
        self._workers: list[asyncio.Task[None]] = []
        self.published = 0

    def start(self) -> None:
        self._workers = [
            asyncio.create_task(self._work(), name=f"usage-publisher-{i}") for i in range(WORKERS)
        ]

    def check_capacity(self) -> None:
        """Refuses new work while the backlog is full: serving it unbilled would lose usage."""
        if self._queue.full():
            raise DependencyUnavailable("Usage recording is backed up; retry shortly.")

    def submit(self, event: usage_pb2.UsageEvent) -> None:
        try:
            self._queue.put_nowait((event, telemetry.trace_headers()))
        except asyncio.QueueFull:
            # Admission checks capacity first; reaching this means a burst raced past it.
            log.error("usage queue full; event for %s logged only", event.request_id)
            log.error("lost usage event %s", event.SerializeToString().hex())

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    async def _work(self) -> None:
        while True:
            event, trace = await self._queue.get()
            try:
                await self._publish(event, trace)
            finally:
                self._queue.task_done()

    async def _publish(self, event: usage_pb2.UsageEvent, trace: dict[str, str]) -> None:
        subject = usage_subject(event.account_id, self._prefix)
        with telemetry.publish_span(subject, self._stream, event.request_id, trace) as context:
            await self._publish_until_acked(
                event, subject, {"Nats-Msg-Id": event.request_id, **context}
            )

    async def _publish_until_acked(
        self, event: usage_pb2.UsageEvent, subject: str, headers: dict[str, str]
    ) -> None:
        data = event.SerializeToString()
        backoff = 0.05
        while True:
            try:
                await self._js.publish(
                    subject, data, timeout=5, stream=self._stream, headers=headers
                )
                self.published += 1
                return
            except (NatsError, TimeoutError) as exc:
                log.warning("usage publish for %s failed (%r); retrying", event.request_id, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)

    async def drain(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), timeout)
        if self._queue.qsize():
            log.error("shutting down with %d usage events unpublished", self._queue.qsize())
        for worker in self._workers:
            worker.cancel()
        for worker in self._workers:
            with contextlib.suppress(asyncio.CancelledError):
                await worker
