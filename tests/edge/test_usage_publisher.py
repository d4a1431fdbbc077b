"""The usage publisher against a real nats-server: pipelined, acked once, retried, drained.

Each test runs a JetStream server of its own (it is stopped and restarted on the same port
and store directory), so a lost ack, a reconnect and a shutdown with acks outstanding are
all real.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from nats.aio.client import Client as NATS
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from bytespike.usage.v1 import usage_pb2
from bytespike_common import messaging, usage_wire
from bytespike_common.devstack import _wait_for_port, free_port, nats_server_binary
from bytespike_common.errors import DependencyUnavailable
from bytespike_edge.control import usage
from bytespike_edge.control.usage import UsagePublisher

STREAM = "USAGE_T"
PREFIX = "usage.t"


class NatsServer:
    """A nats-server with JetStream that can be stopped and started again, state kept."""

    def __init__(self, store: Path) -> None:
        self.port = free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self._store = store
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        argv = [nats_server_binary(), "-a", "127.0.0.1", "-p", str(self.port)]
        self._process = subprocess.Popen(
            [*argv, "-js", "-sd", str(self._store)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_for_port(self.port)

    def stop(self) -> None:
        assert self._process is not None
        self._process.kill()
        self._process.wait(10)
        self._process = None


@pytest.fixture
def server(tmp_path: Path) -> Iterator[NatsServer]:
    nats_server = NatsServer(tmp_path / "jetstream")
    nats_server.start()
    try:
        yield nats_server
    finally:
        with contextlib.suppress(AssertionError):
            nats_server.stop()


@pytest.fixture
async def nc(server: NatsServer) -> AsyncIterator[NATS]:
    connection = await messaging.connect(server.url, "usage-publisher-test")
    await messaging.ensure_usage_stream(connection.jetstream(), STREAM, PREFIX)
    try:
        yield connection
    finally:
        await connection.close()


@pytest.fixture
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(usage, "ACK_TIMEOUT", 0.5)
    monkeypatch.setattr(usage, "MAX_BACKOFF", 0.2)


def publisher(nc: NATS, max_pending: int = 100_000) -> UsagePublisher:
    started = UsagePublisher(nc, stream=STREAM, subject_prefix=PREFIX, max_pending=max_pending)
    started.start()
    return started


def event(i: int, account: str = "acct.1") -> usage_pb2.UsageEvent:
    return usage_pb2.UsageEvent(request_id=f"req_{i}", account_id=account, model="m")


async def stored(nc: NATS) -> list[tuple[str, list[usage_pb2.UsageEvent]]]:
    """Every message in the stream, in stream order: its subject and the events it carries."""
    js = nc.jetstream()
    info = await js.stream_info(STREAM)
    messages = []
    for seq in range(1, info.state.last_seq + 1):
        message = await js.get_msg(STREAM, seq)
        assert message.headers is not None
        assert message.headers["Nats-Expected-Stream"] == STREAM
        messages.append((message.subject, usage_wire.decode(message.data or b"", message.headers)))
    return messages


async def stored_ids(nc: NATS) -> list[str]:
    """Every stored event's request id, in stream order (duplicates would show twice)."""
    return [one.request_id for _, events in await stored(nc) for one in events]


async def test_a_burst_is_acked_once_per_event(nc: NATS) -> None:
    events = [event(i, f"acct.{i % 7}") for i in range(5000)]
    usage_publisher = publisher(nc)
    for one in events:
        usage_publisher.submit(one)
    assert usage_publisher.pending == 5000
    await usage_publisher.drain(30)
    assert (usage_publisher.published, usage_publisher.pending) == (5000, 0)
    messages = await stored(nc)
    # Batched by account: far fewer messages than events, each event once and intact,
    # each batch on its account's subject, every account's events in submission order.
    assert 7 * (5000 // 7 // usage.MAX_BATCH) <= len(messages) < 5000 // 4
    received = [one for _, batch in messages for one in batch]
    assert sorted(received, key=lambda one: int(one.request_id[4:])) == events
    for subject, batch in messages:
        assert {subject} == {f"{PREFIX}.{e.account_id.replace('.', '_')}" for e in batch}
        assert len(batch) <= usage.MAX_BATCH
    for account in range(7):
        ids = [int(one.request_id[4:]) for one in received if one.account_id == f"acct.{account}"]
        assert ids == sorted(ids)


async def test_a_lone_event_goes_as_a_plain_event(nc: NATS) -> None:
    usage_publisher = publisher(nc)
    usage_publisher.submit(event(1))
    await usage_publisher.drain(10)
    js = nc.jetstream()
    message = await js.get_msg(STREAM, 1)
    assert message.headers is not None
    assert message.headers["Nats-Msg-Id"] == "req_1"
    assert usage_wire.BATCH_HEADER not in message.headers
    assert usage_pb2.UsageEvent.FromString(message.data or b"") == event(1)


async def test_events_published_across_a_restart_are_kept_once(
    server: NatsServer, nc: NATS, fast_retries: None
) -> None:
    usage_publisher = publisher(nc)
    for i in range(200):
        usage_publisher.submit(event(i))
    server.stop()
    # While the server is down: buffered by the client, or unacked and re-published.
    for i in range(200, 400):
        usage_publisher.submit(event(i))
    await asyncio.sleep(1.0)
    assert usage_publisher.pending > 0
    server.start()
    await usage_publisher.drain(30)
    assert (usage_publisher.published, usage_publisher.pending) == (400, 0)
    assert sorted(await stored_ids(nc)) == sorted(f"req_{i}" for i in range(400))


async def test_drain_waits_for_outstanding_acks(
    server: NatsServer, nc: NATS, fast_retries: None
) -> None:
    usage_publisher = publisher(nc)
    server.stop()
    for i in range(50):
        usage_publisher.submit(event(i))
    drained = asyncio.create_task(usage_publisher.drain(30))
    await asyncio.sleep(1.5)
    assert not drained.done()
    server.start()
    await drained
    assert (usage_publisher.published, usage_publisher.pending) == (50, 0)
    assert len(await stored_ids(nc)) == 50


async def test_drain_gives_up_after_its_timeout(
    server: NatsServer, nc: NATS, fast_retries: None, caplog: pytest.LogCaptureFixture
) -> None:
    usage_publisher = publisher(nc)
    server.stop()
    usage_publisher.submit(event(1))
    with caplog.at_level(logging.ERROR):
        await asyncio.wait_for(usage_publisher.drain(0.5), 5)
    assert usage_publisher.pending == 1
    assert "1 usage events unacked" in caplog.text


async def test_a_full_backlog_refuses_new_work(server: NatsServer, nc: NATS) -> None:
    usage_publisher = publisher(nc, max_pending=3)
    server.stop()
    for i in range(3):
        usage_publisher.check_capacity()
        usage_publisher.submit(event(i))
    with pytest.raises(DependencyUnavailable):
        usage_publisher.check_capacity()
    await usage_publisher.drain(0)


async def test_an_unknown_stream_is_retried_until_it_exists(nc: NATS, fast_retries: None) -> None:
    await nc.jetstream().delete_stream(STREAM)
    usage_publisher = publisher(nc)
    usage_publisher.submit(event(1))
    await asyncio.sleep(0.5)
    assert (usage_publisher.published, usage_publisher.pending) == (0, 1)
    await messaging.ensure_usage_stream(nc.jetstream(), STREAM, PREFIX)
    await usage_publisher.drain(10)
    assert await stored_ids(nc) == ["req_1"]


async def test_the_send_span_lasts_until_the_ack(nc: NATS, monkeypatch: pytest.MonkeyPatch) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: provider)
    usage_publisher = publisher(nc)
    with provider.get_tracer("test").start_as_current_span("request") as request:
        usage_publisher.submit(event(1))
    await usage_publisher.drain(10)
    (send,) = [s for s in exporter.get_finished_spans() if s.name == f"send {STREAM}"]
    assert send.parent is not None
    assert send.parent.span_id == request.get_span_context().span_id
    message = await nc.jetstream().get_msg(STREAM, 1)
    assert message.headers is not None
    # The consumer's span will be a child of the send span.
    assert f"{send.context.span_id:016x}" in message.headers["traceparent"]


async def test_traced_events_in_a_batch_keep_their_send_spans(
    nc: NATS, monkeypatch: pytest.MonkeyPatch
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: provider)
    usage_publisher = publisher(nc)
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("request 1") as first:
        usage_publisher.submit(event(1))
    usage_publisher.submit(event(2))  # untraced, batched all the same
    with tracer.start_as_current_span("request 3") as third:
        usage_publisher.submit(event(3))
    await usage_publisher.drain(10)
    ((_, batch),) = await stored(nc)
    assert [one.request_id for one in batch] == ["req_1", "req_2", "req_3"]
    sends = [s for s in exporter.get_finished_spans() if s.name == f"send {STREAM}"]
    parents = {send.parent.span_id for send in sends if send.parent is not None}
    assert len(sends) == 2
    assert parents == {first.get_span_context().span_id, third.get_span_context().span_id}
    message = await nc.jetstream().get_msg(STREAM, 1)
    assert message.headers is not None
    # The message carries the first traced event's send span: the consumer's parent.
    (first_send,) = [
        s for s in sends if s.parent and s.parent.span_id == first.get_span_context().span_id
    ]
    assert f"{first_send.context.span_id:016x}" in message.headers["traceparent"]
