"""Metering over real gRPC, a real JetStream and SQLite/PostgreSQL: holds and settlement."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import nats
import pytest
import sqlalchemy as sa
from nats.js import JetStreamContext

from bytespike.metering.v1 import metering_pb2, metering_pb2_grpc
from bytespike.usage.v1 import usage_pb2
from bytespike_common import db
from bytespike_common.messaging import usage_subject
from bytespike_metering.server import create_server
from bytespike_metering.settings import Settings
from bytespike_metering.store import MeteringStore


@dataclass
class Harness:
    stub: metering_pb2_grpc.MeteringServiceStub
    js: JetStreamContext
    store: MeteringStore
    prefix: str


@pytest.fixture
async def harness(database_url: str, nats_url: str) -> AsyncIterator[Harness]:
    suffix = secrets.token_hex(4)
    settings = Settings(
        port=0,
        database_url=database_url,
        nats_url=nats_url,
        usage_stream=f"USAGE_{suffix}",
        usage_subject_prefix=f"usage.t{suffix}",
        consumer_name=f"metering_{suffix}",
        shutdown_grace=0.2,
    )
    nc = await nats.connect(nats_url)
    engine = db.create_engine(database_url)
    try:
        async with (
            create_server(settings) as server,
            grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel,
        ):
            yield Harness(
                metering_pb2_grpc.MeteringServiceStub(channel),
                nc.jetstream(),
                MeteringStore(engine),
                settings.usage_subject_prefix,
            )
    finally:
        await nc.jetstream().delete_stream(settings.usage_stream)
        await nc.close()
        await engine.dispose()


def _event(request_id: str) -> usage_pb2.UsageEvent:
    return usage_pb2.UsageEvent(
        request_id=request_id,
        account_id="acct_1",
        key_id="key_1",
        group="default",
        model="m-1",
        client_protocol="openai",
        upstream_protocol="anthropic",
        stream=True,
        usage=usage_pb2.Usage(
            input_tokens=11, cache_read_tokens=7, output_tokens=5, reasoning_tokens=2
        ),
        status_code=200,
        finish_reason="stop",
    )


async def _eventually(check: object, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():  # type: ignore[operator]
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


async def test_admit_opens_hold_that_usage_settles(harness: Harness) -> None:
    admit = metering_pb2.AdmitRequest(
        request_id="req_a", account_id="acct_1", key_id="key_1", model="m-1"
    )
    reply = await harness.stub.Admit(admit)
    assert reply.admitted and reply.hold_id.startswith("hold_")
    # A retried Admit for the same request gets the same hold.
    assert (await harness.stub.Admit(admit)).hold_id == reply.hold_id
    assert await harness.store.hold_status("req_a") == "open"

    await harness.js.publish(
        usage_subject("acct_1", harness.prefix),
        _event("req_a").SerializeToString(),
        headers={"Nats-Msg-Id": "req_a"},
    )

    async def settled() -> bool:
        return await harness.store.hold_status("req_a") == "settled"

    await _eventually(settled)
    record = await harness.store.usage("req_a")
    assert record is not None
    assert (record["input_tokens"], record["cache_read_tokens"], record["output_tokens"]) == (
        11,
        7,
        5,
    )
    assert record["reasoning_tokens"] == 2 and record["stream"] is True


async def test_replayed_event_is_recorded_once(harness: Harness) -> None:
    data = _event("req_dup").SerializeToString()
    subject = usage_subject("acct_1", harness.prefix)
    # Different message ids defeat JetStream's duplicate window: the store must dedupe.
    await harness.js.publish(subject, data, headers={"Nats-Msg-Id": "first"})
    await harness.js.publish(subject, data, headers={"Nats-Msg-Id": "second"})
    await harness.js.publish(subject, b"\xff not protobuf", headers={"Nats-Msg-Id": "junk"})
    await harness.js.publish(subject, _event("req_after").SerializeToString())

    async def both_recorded() -> bool:
        return await harness.store.usage("req_after") is not None

    await _eventually(both_recorded)
    async with harness.store._engine.connect() as conn:
        count = await conn.scalar(
            sa.text("SELECT count(*) FROM usage_records WHERE request_id = 'req_dup'")
        )
    assert count == 1


async def test_admit_validates_required_fields(harness: Harness) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await harness.stub.Admit(metering_pb2.AdmitRequest(account_id="acct_1"))
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
