"""The usage consumer against a real JetStream: batches, acks, redelivery, poison messages,
lone events, stops, refused pull requests and a restarted server.

Settlement is a stand-in that records what it is given (and fails when told to), so these
tests see exactly which events reached it and how often; `test_server.py` covers the real
settlement behind the same consumer.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig

from bytespike.usage.v1 import usage_pb2
from bytespike_common import messaging, usage_wire
from bytespike_common.devstack import _wait_for_port, free_port, nats_server_binary
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


async def test_batches_are_settled_event_by_event(rig: Rig) -> None:
    """An edge's `UsageBatch` messages beside plain events: every event reaches settlement,
    an event without a request id is dropped from its batch, a batch that does not decode
    is terminated whole."""

    def batch(*request_ids: str) -> bytes:
        events = [usage_pb2.UsageEvent(request_id=i, account_id="a") for i in request_ids]
        return usage_wire.encode_batch([event.SerializeToString() for event in events])

    async def publish_batch(data: bytes, msg_id: str) -> None:
        headers = {"Nats-Msg-Id": msg_id, usage_wire.BATCH_HEADER: "3"}
        await rig.js.publish(messaging.usage_subject("acct_1", rig.prefix), data, headers=headers)

    await publish_batch(batch("req_0", "req_1", "req_2"), "req_0+3")
    await rig.publish(usage_pb2.UsageEvent(request_id="req_3").SerializeToString(), "req_3")
    # A replay of req_2 in a later batch (settlement's request-id key makes it harmless).
    await publish_batch(batch("req_2", "", "req_4"), "req_2+3")
    await publish_batch(b"\x0a\xff\xff not a batch", "garbage+3")
    ledger = Ledger()
    task = await running(rig.consumer(ledger))
    try:
        await until(lambda: _settled_all(rig))
        await asyncio.sleep(0.5)
    finally:
        await stop(task)
    assert sorted(ledger.settled) == ["req_0", "req_1", "req_2", "req_2", "req_3", "req_4"]
    info = await rig.js.consumer_info(rig.stream, rig.durable)
    assert (info.delivered.stream_seq, info.num_redelivered) == (4, 0)


async def test_a_lone_event_is_settled_at_once(rig: Rig) -> None:
    ledger = Ledger()
    task = await running(rig.consumer(ledger))
    try:
        for i in range(3):
            # Each published once the previous one is settled, to an idle consumer.
            published = time.monotonic()
            await rig.publish(
                usage_pb2.UsageEvent(request_id=f"lone_{i}").SerializeToString(), f"{i}"
            )
            await until(lambda n=i + 1: _true(len(ledger.settled) >= n), timeout=5)
            # Not held back for company: a pull that lingered for more took up to 1 s.
            assert time.monotonic() - published < 0.5
    finally:
        await stop(task)
    assert ledger.batches == [["lone_0"], ["lone_1"], ["lone_2"]]


async def test_stopping_gives_pulled_events_back_at_once(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Stopped while events are pulled and not settled (here: lingering for more), the
    # consumer naks them, so the next one gets them now rather than after the 30 s ack wait.
    monkeypatch.setattr(consumer_module, "BATCH_LINGER", 30.0)
    ids = await rig.publish_events(5)
    first = Ledger()
    task = await running(rig.consumer(first))
    await until(lambda: _unacked_is(rig, (0, 5)))
    await stop(task)
    assert first.settled == []
    monkeypatch.setattr(consumer_module, "BATCH_LINGER", 0.05)
    second = Ledger()
    task = await running(rig.consumer(second))
    try:
        await until(lambda: _true(len(second.settled) >= 5), timeout=5)
    finally:
        await stop(task)
    assert sorted(second.settled) == sorted(ids)


async def test_stopping_mid_settlement_gives_the_batch_back(rig: Rig) -> None:
    ids = await rig.publish_events(20)
    slow = Ledger(seconds=30)
    task = await running(rig.consumer(slow))
    await until(lambda: _unacked_is(rig, (0, 20)))
    await stop(task)
    second = Ledger()
    task = await running(rig.consumer(second))
    try:
        await until(lambda: _true(len(second.settled) >= 20), timeout=5)
    finally:
        await stop(task)
    assert sorted(second.settled) == sorted(ids)


async def _unacked_is(rig: Rig, expected: tuple[int, int]) -> bool:
    return await rig.unacked() == expected


async def test_refused_pulls_are_retried(rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    # The durable deleted under a running consumer: its waiting pull request ends with a
    # status (409 Consumer Deleted) and the next ones find no consumer (503). It keeps
    # trying, and settles what comes once the durable is back.
    ledger = Ledger()
    task = await running(rig.consumer(ledger))
    try:
        await rig.js.delete_consumer(rig.stream, rig.durable)
        with caplog.at_level(logging.WARNING, logger=consumer_module.__name__):
            await until(lambda: _true("usage pull failed" in caplog.text), timeout=10)
        await rig.js.add_consumer(
            rig.stream,
            ConsumerConfig(
                name=rig.durable,
                durable_name=rig.durable,
                filter_subject=f"{rig.prefix}.>",
                ack_policy=AckPolicy.EXPLICIT,
            ),
        )
        ids = await rig.publish_events(10)
        await until(lambda: _true(len(ledger.settled) >= 10))
    finally:
        await stop(task)
    assert sorted(ledger.settled) == sorted(ids)
    assert "409" in caplog.text or "503" in caplog.text


@dataclass
class Server:
    """A nats-server of this test's own, which it can restart on the same port and store."""

    port: int
    store: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        argv = [nats_server_binary(), "-a", "127.0.0.1", "-p", str(self.port), "-js"]
        self.process = subprocess.Popen(
            [*argv, "-sd", str(self.store)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_for_port(self.port)

    def stop(self, kill: bool = False) -> None:
        if self.process is not None:
            # Killed, it tells no client anything (no `409 Server Shutdown` to pull requests).
            (self.process.kill if kill else self.process.terminate)()
            self.process.wait(10)
            self.process = None


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[Server]:
    server = Server(free_port(), tmp_path / "nats")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.parametrize("kill", [False, True], ids=["stopped", "killed"])
async def test_pulls_resume_after_the_server_restarts(own_server: Server, kill: bool) -> None:
    nc = await messaging.connect(own_server.url, "metering-test")
    js = nc.jetstream()
    await messaging.ensure_usage_stream(js, "USAGE_R", "usage.r")
    rig = Rig(nc, js, "USAGE_R", "usage.r", "metering_r")
    ledger = Ledger()
    task = await running(rig.consumer(ledger))
    try:
        first = await rig.publish_events(50)
        await until(lambda: _true(len(ledger.settled) >= 50))
        own_server.stop(kill=kill)
        await until(lambda: _true(not nc.is_connected))
        own_server.start()
        await until(lambda: _true(nc.is_connected))
        second = [f"again_{i}" for i in range(50)]
        for request_id in second:
            await rig.publish(
                usage_pb2.UsageEvent(request_id=request_id).SerializeToString(), request_id
            )
        await until(lambda: _true(set(second) <= set(ledger.settled)), timeout=30)
        await until(lambda: _settled_all(rig))
    finally:
        await stop(task)
        await nc.close()
    assert set(ledger.settled) == set(first) | set(second)
