"""The usage consumer against a real JetStream: batches, acks, redelivery and poison messages.

Settlement is a stand-in that records what it is given (and fails when told to), so these
tests see exactly which events reached it and how often; `test_server.py` covers the real
settlement behind the same consumer.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import nats
import pytest
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from bytespike.usage.v1 import usage_pb2
from bytespike_common import messaging
from bytespike_metering import consumer as consumer_module
from bytespike_metering.consumer import UsageConsumer


@dataclass
class Ledger:
    """Settles by recording, taking `seconds` a batch; `failures` batches fail first."""

    failures: int = 0
    seconds: float = 0.0
    batches: list[list[str]] = field(default_factory=list)

    async def settle(self, events: Sequence[usage_pb2.UsageEvent]) -> int:
        await asyncio.sleep(self.seconds)
        if self.failures:
            self.failures -= 1
            raise RuntimeError("database unavailable")
        self.batches.append([e.request_id for e in events])
        return len(events)

    @property
    def settled(self) -> list[str]:
        return [request_id for batch in self.batches for request_id in batch]


@dataclass
class Rig:
    nc: NATS
    js: JetStreamContext
    stream: str
    prefix: str
    durable: str

    async def publish(self, data: bytes, msg_id: str) -> None:
        await self.js.publish(
            messaging.usage_subject("acct_1", self.prefix), data, headers={"Nats-Msg-Id": msg_id}
        )

    async def publish_events(self, count: int) -> list[str]:
        ids = [f"req_{i}" for i in range(count)]
        acks = [
            await self.js.publish_async(
                messaging.usage_subject(f"acct_{i % 5}", self.prefix),
                usage_pb2.UsageEvent(request_id=request_id, account_id="a").SerializeToString(),
                headers={"Nats-Msg-Id": request_id},
            )
            for i, request_id in enumerate(ids)
        ]
        await asyncio.gather(*acks)
        return ids

    def consumer(self, ledger: Ledger, batch_size: int = 256) -> UsageConsumer:
        return UsageConsumer(
            self.js,
            ledger.settle,
            stream=self.stream,
            subject_prefix=self.prefix,
            durable=self.durable,
            batch_size=batch_size,
        )

    async def unacked(self) -> tuple[int, int]:
        """(messages not yet delivered, delivered and not yet acked) on the durable."""
        info = await self.js.consumer_info(self.stream, self.durable)
        return info.num_pending or 0, info.num_ack_pending or 0


@pytest.fixture
async def rig(nats_url: str) -> AsyncIterator[Rig]:
    suffix = secrets.token_hex(4)
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    stream, prefix = f"USAGE_{suffix}", f"usage.c{suffix}"
    await messaging.ensure_usage_stream(js, stream, prefix)
    try:
        yield Rig(nc, js, stream, prefix, f"metering_{suffix}")
    finally:
        await js.delete_stream(stream)
        await nc.close()


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(consumer_module, "RETRY_DELAY", 0.2)


async def until(check: Callable[[], Awaitable[bool]], timeout: float = 20) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


async def running(consumer: UsageConsumer) -> asyncio.Task[None]:
    task = asyncio.create_task(consumer.run())
    await until(lambda: _true(consumer.running))
    return task


async def _true(value: bool) -> bool:
    return value


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_burst_is_settled_once_in_large_batches(rig: Rig) -> None:
    ids = await rig.publish_events(3000)
    ledger = Ledger()
    task = await running(rig.consumer(ledger))
    try:
        await until(lambda: _true(len(ledger.settled) >= 3000))
        await until(lambda: _settled_all(rig))
    finally:
        await stop(task)
    assert sorted(ledger.settled) == sorted(ids)
    # Already waiting in the stream, the events come in full batches.
    assert max(len(batch) for batch in ledger.batches) == 256


async def _settled_all(rig: Rig) -> bool:
    return await rig.unacked() == (0, 0)


async def test_events_arriving_during_a_settlement_are_settled_together(rig: Rig) -> None:
    ledger = Ledger(seconds=0.02)
    task = await running(rig.consumer(ledger))
    try:
        for i in range(200):
            await rig.publish(
                usage_pb2.UsageEvent(request_id=f"req_{i}").SerializeToString(), f"{i}"
            )
        await until(lambda: _true(len(ledger.settled) >= 200))
    finally:
        await stop(task)
    assert sorted(ledger.settled) == sorted(f"req_{i}" for i in range(200))
    # Published one at a time (~1 ms each); one transaction per event would be 200.
    assert len(ledger.batches) < 50


async def test_a_failed_settlement_is_redelivered(rig: Rig) -> None:
    ids = await rig.publish_events(50)
    ledger = Ledger(failures=2)
    task = await running(rig.consumer(ledger))
    try:
        await until(lambda: _true(len(ledger.settled) >= 50))
        await until(lambda: _settled_all(rig))
    finally:
        await stop(task)
    # Both failed attempts were given the events again, and they were then settled once.
    assert ledger.failures == 0
    assert sorted(ledger.settled) == sorted(ids)


async def test_undecodable_messages_are_terminated_not_redelivered(rig: Rig) -> None:
    await rig.publish(b"\xff not protobuf", "garbage")
    await rig.publish(usage_pb2.UsageEvent(model="m").SerializeToString(), "no-request-id")
    await rig.publish(usage_pb2.UsageEvent(request_id="req_ok").SerializeToString(), "ok")
    ledger = Ledger()
    task = await running(rig.consumer(ledger))
    try:
        await until(lambda: _settled_all(rig))
        # Longer than a redelivery would take (nak delay, ack wait of a term'd message: none).
        await asyncio.sleep(1.0)
    finally:
        await stop(task)
    assert ledger.settled == ["req_ok"]
    info = await rig.js.consumer_info(rig.stream, rig.durable)
    assert (info.delivered.stream_seq, info.num_redelivered) == (3, 0)
