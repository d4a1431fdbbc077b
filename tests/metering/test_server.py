"""Metering over real gRPC with a real router, a real JetStream and SQLite/PostgreSQL.

Prices in CATALOG (micro-credits per token): m-1 input 2, output 10, cache read 0.5,
cache write 2.5. An Admit with 100 estimated input and 100 max output tokens holds
100 x 2.5 + 100 x 10 = 1,250; the usage in `_event` costs 11 x 2 + 7 x 0.5 + 5 x 10 = 75.5,
charged as 76.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import nats
import pytest
import redis.asyncio as redis
from nats.js import JetStreamContext

from bytespike.metering.v1 import metering_pb2, metering_pb2_grpc
from bytespike.usage.v1 import usage_pb2
from bytespike_common import db
from bytespike_common.messaging import usage_subject
from bytespike_metering.server import create_server
from bytespike_metering.settings import Settings
from bytespike_metering.store import MeteringStore
from bytespike_router.server import create_server as create_router
from bytespike_router.settings import Settings as RouterSettings

CATALOG = """
providers:
  up: {protocol: openai, base_url: "https://vendor.example/v1"}
models:
  - id: m-1
    aliases: [m-one]
    prices: {input: 2, output: 10, cache_read: 0.5, cache_write: 2.5}
    deployments: [{provider: up, upstream_model: a}]
  - id: free
    deployments: [{provider: up, upstream_model: f}]
groups:
  default: {models: ["*"]}
  half: {models: ["*"], price_multiplier: 0.5}
"""
HOLD = 1_250
COST = 76


@dataclass
class Harness:
    stub: metering_pb2_grpc.MeteringServiceAsyncStub
    admin: metering_pb2_grpc.MeteringAdminServiceAsyncStub
    js: JetStreamContext
    store: MeteringStore
    settings: Settings
    catalog: Path
    sent: list[str] = field(default_factory=list)
    channel: grpc.aio.Channel | None = None

    async def publish(self, event: usage_pb2.UsageEvent, msg_id: str | None = None) -> None:
        await self.js.publish(
            usage_subject(event.account_id, self.settings.usage_subject_prefix),
            event.SerializeToString(),
            headers={"Nats-Msg-Id": msg_id or event.request_id},
        )

    async def top_up(self, account_id: str, amount: int) -> None:
        await self.admin.TopUp(
            metering_pb2.CreditRequest(
                account_id=account_id,
                amount=amount,
                reason="test credit",
                idempotency_key=secrets.token_hex(8),
                actor="tests",
            )
        )

    async def balance(self, account_id: str) -> metering_pb2.Balance:
        return await self.admin.GetBalance(metering_pb2.GetBalanceRequest(account_id=account_id))


@contextlib.asynccontextmanager
async def running_router(catalog: Path) -> AsyncIterator[str]:
    settings = RouterSettings(port=0, catalog_path=str(catalog), shutdown_grace=0.2)
    async with create_router(settings) as server:
        yield f"127.0.0.1:{server.port}"


@contextlib.asynccontextmanager
async def running_metering(settings: Settings) -> AsyncIterator[grpc.aio.Channel]:
    async with (
        create_server(settings) as server,
        grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel,
    ):
        await _eventually(lambda: _serving(server))
        yield channel


async def _serving(server: Any) -> bool:
    return bool(server.serving)


def metering_settings(database_url: str, nats_url: str, router: str, **extra: Any) -> Settings:
    suffix = extra.pop("suffix", secrets.token_hex(4))
    return Settings(
        port=0,
        database_url=database_url,
        nats_url=nats_url,
        router_target=router,
        usage_stream=f"USAGE_{suffix}",
        usage_subject_prefix=f"usage.t{suffix}",
        consumer_name=f"metering_{suffix}",
        shutdown_grace=0.2,
        **extra,
    )


@contextlib.asynccontextmanager
async def harness_for(
    database_url: str, nats_url: str, tmp_path: Path, *, keep_stream: bool = False, **extra: Any
) -> AsyncIterator[Harness]:
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(CATALOG)
    nc = await nats.connect(nats_url)
    engine = db.create_engine(database_url)
    settings: Settings | None = None
    try:
        async with running_router(catalog) as router:
            settings = metering_settings(database_url, nats_url, router, **extra)
            async with running_metering(settings) as channel:
                yield Harness(
                    metering_pb2_grpc.MeteringServiceStub(channel),
                    metering_pb2_grpc.MeteringAdminServiceStub(channel),
                    nc.jetstream(),
                    MeteringStore(engine),
                    settings,
                    catalog,
                    channel=channel,
                )
    finally:
        if settings is not None and not keep_stream:
            await nc.jetstream().delete_stream(settings.usage_stream)
        await nc.close()
        await engine.dispose()


@pytest.fixture
async def harness(database_url: str, nats_url: str, tmp_path: Path) -> AsyncIterator[Harness]:
    async with harness_for(database_url, nats_url, tmp_path) as running:
        yield running


def _admit(request_id: str, account: str = "acct_1", **extra: Any) -> metering_pb2.AdmitRequest:
    fields: dict[str, Any] = {
        "key_id": "key_1",
        "group": "default",
        "model": "m-1",
        "estimated_input_tokens": 100,
        "max_output_tokens": 100,
        **extra,
    }
    return metering_pb2.AdmitRequest(request_id=request_id, account_id=account, **fields)


def _event(request_id: str, account: str = "acct_1", **usage: Any) -> usage_pb2.UsageEvent:
    return usage_pb2.UsageEvent(
        request_id=request_id,
        account_id=account,
        key_id="key_1",
        group="default",
        model="m-1",
        client_protocol="openai",
        upstream_protocol="anthropic",
        stream=True,
        usage=usage_pb2.Usage(
            **(usage or {"input_tokens": 11, "cache_read_tokens": 7, "output_tokens": 5})
        ),
        status_code=200,
        finish_reason="stop",
    )


async def _eventually(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


async def _settled(harness: Harness, request_id: str) -> None:
    async def done() -> bool:
        return await harness.store.usage(request_id) is not None

    await _eventually(done)


async def _consistent(store: MeteringStore, account_id: str) -> dict[str, int]:
    audit = await store.audit(account_id)
    assert audit["balance"] == audit["ledger_sum"], audit
    assert audit["held"] == audit["open_holds_sum"], audit
    return audit


async def test_admit_holds_the_maximum_and_usage_charges_the_cost(harness: Harness) -> None:
    await harness.top_up("acct_1", 100_000)
    reply = await harness.stub.Admit(_admit("req_a"))
    assert reply.admitted and reply.hold_id.startswith("hold_") and reply.hold_amount == HOLD
    # A retried Admit for the same request gets the same hold and reserves nothing more.
    assert (await harness.stub.Admit(_admit("req_a"))).hold_id == reply.hold_id
    assert (await harness.balance("acct_1")).available == 100_000 - HOLD
    # Aliases and group multipliers come from the router's catalog.
    half = await harness.stub.Admit(_admit("req_b", model="m-one", group="half"))
    assert half.hold_amount == HOLD // 2

    await harness.publish(_event("req_a"))
    await _settled(harness, "req_a")
    balance = await harness.balance("acct_1")
    assert (balance.balance, balance.held) == (100_000 - COST, HOLD // 2)
    assert await harness.store.hold_status("req_a") == "settled"
    ledger = await harness.admin.ListLedger(metering_pb2.ListLedgerRequest(account_id="acct_1"))
    assert [(e.kind, e.amount, e.request_id) for e in ledger.entries] == [
        ("usage", -COST, "req_a"),
        ("top_up", 100_000, ""),
    ]
    await _consistent(harness.store, "acct_1")


async def test_replayed_event_is_charged_once(harness: Harness) -> None:
    await harness.top_up("acct_1", 10_000)
    await harness.stub.Admit(_admit("req_dup"))
    # Different message ids defeat JetStream's duplicate window: the store must dedupe.
    await harness.publish(_event("req_dup"), "first")
    await harness.publish(_event("req_dup"), "second")
    await harness.js.publish(
        usage_subject("acct_1", harness.settings.usage_subject_prefix), b"\xff not protobuf"
    )
    await harness.publish(_event("req_after"))
    await _settled(harness, "req_after")
    audit = await _consistent(harness.store, "acct_1")
    assert audit["balance"] == 10_000 - 2 * COST  # req_dup once, req_after once
    assert audit["held"] == 0


async def test_fifty_concurrent_admits_with_credit_for_ten(harness: Harness) -> None:
    await harness.top_up("acct_1", 10 * HOLD)
    replies = await asyncio.gather(*(harness.stub.Admit(_admit(f"req_{i}")) for i in range(50)))
    admitted = [r for r in replies if r.admitted]
    assert len(admitted) == 10
    refused = [r for r in replies if not r.admitted]
    assert {r.denial for r in refused} == {metering_pb2.DENIAL_INSUFFICIENT_CREDIT}
    balance = await harness.balance("acct_1")
    assert (balance.balance, balance.held, balance.available) == (10 * HOLD, 10 * HOLD, 0)

    # Each admitted request uses its whole hold's worth: the balance reaches 0, never below.
    full: dict[str, Any] = {"input_tokens": 0, "cache_write_tokens": 100, "output_tokens": 100}
    for i, reply in enumerate(replies):
        if reply.admitted:
            await harness.publish(_event(f"req_{i}", **full))
    last = next(i for i in reversed(range(50)) if replies[i].admitted)
    await _settled(harness, f"req_{last}")

    async def all_settled() -> bool:
        return (await harness.store.audit("acct_1"))["held"] == 0

    await _eventually(all_settled)
    audit = await _consistent(harness.store, "acct_1")
    assert audit["balance"] == 0


async def test_rpm_and_concurrency_limits(harness: Harness) -> None:
    await harness.top_up("acct_1", 100_000)
    for i in range(2):
        assert (await harness.stub.Admit(_admit(f"rpm_{i}", key_id="k_rpm", key_rpm=2))).admitted
    limited = await harness.stub.Admit(_admit("rpm_2", key_id="k_rpm", key_rpm=2))
    assert not limited.admitted and limited.denial == metering_pb2.DENIAL_RATE_LIMITED
    assert 0 < limited.retry_after_ms <= 120_000 and "RPM" in limited.message

    assert (await harness.stub.Admit(_admit("c_1", key_concurrency=1))).admitted
    busy = await harness.stub.Admit(_admit("c_2", key_concurrency=1))
    assert busy.denial == metering_pb2.DENIAL_RATE_LIMITED and "concurrency" in busy.message
    # A refused request holds nothing: no credit reserved for it.
    assert (await harness.balance("acct_1")).held == 3 * HOLD
    await harness.publish(_event("c_1"))
    await _settled(harness, "c_1")
    assert (await harness.stub.Admit(_admit("c_2", key_concurrency=1))).admitted


async def test_tpm_is_corrected_with_actual_usage(harness: Harness) -> None:
    await harness.top_up("acct_1", 100_000)
    big: dict[str, Any] = {"key_id": "k_tpm", "key_tpm": 1_000, "estimated_input_tokens": 100,
           "max_output_tokens": 800}  # fmt: skip
    assert (await harness.stub.Admit(_admit("t_1", **big))).admitted
    refused = await harness.stub.Admit(_admit("t_2", **big))
    assert refused.denial == metering_pb2.DENIAL_RATE_LIMITED and "TPM" in refused.message
    # The first request used 23 tokens, not 900: the window is corrected at settlement.
    await harness.publish(_event("t_1"))
    await _settled(harness, "t_1")
    assert (await harness.stub.Admit(_admit("t_2", **big))).admitted


async def test_credit_and_account_status_denials(harness: Harness) -> None:
    refused = await harness.stub.Admit(_admit("poor_1", account="poor"))
    assert refused.denial == metering_pb2.DENIAL_INSUFFICIENT_CREDIT
    assert "1250" in refused.message
    # Zero-price models need no credit.
    assert (await harness.stub.Admit(_admit("poor_2", account="poor", model="free"))).admitted
    await harness.admin.SetAccountStatus(
        metering_pb2.SetAccountStatusRequest(account_id="poor", disabled=True)
    )
    disabled = await harness.stub.Admit(_admit("poor_3", account="poor", model="free"))
    assert disabled.denial == metering_pb2.DENIAL_ACCOUNT_DISABLED


async def test_admit_validates_and_needs_a_price(harness: Harness) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await harness.stub.Admit(metering_pb2.AdmitRequest(account_id="acct_1"))
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await harness.stub.Admit(_admit("x", model="not-in-catalog"))
    assert unknown.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_catalog_price_changes_reach_metering(harness: Harness) -> None:
    await harness.top_up("acct_1", 100_000)
    harness.catalog.write_text(CATALOG.replace("output: 10,", "output: 20,"))

    async def repriced() -> bool:
        reply = await harness.stub.Admit(_admit(secrets.token_hex(4)))
        return bool(reply.hold_amount == 250 + 2_000)

    await _eventually(repriced)


async def test_admin_credit_rpcs(harness: Harness) -> None:
    request = metering_pb2.CreditRequest(
        account_id="acct_1", amount=5_000, reason="invoice 7", idempotency_key="inv-7", actor="ops"
    )
    first = await harness.admin.TopUp(request)
    again = await harness.admin.TopUp(request)
    assert not first.replayed and again.replayed and again.entry.id == first.entry.id
    assert again.balance.balance == 5_000
    assert first.entry.reason == "invoice 7" and first.entry.actor == "ops"
    request.amount = 6_000
    with pytest.raises(grpc.aio.AioRpcError) as conflict:
        await harness.admin.TopUp(request)
    assert conflict.value.code() == grpc.StatusCode.ALREADY_EXISTS
    bad = [
        metering_pb2.CreditRequest(account_id="a", amount=-1, reason="r", idempotency_key="k"),
        metering_pb2.CreditRequest(account_id="a", amount=1, reason=" ", idempotency_key="k"),
        metering_pb2.CreditRequest(account_id="a", amount=1, reason="r"),
    ]
    for invalid in bad:
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await harness.admin.TopUp(invalid)
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    adjusted = await harness.admin.Adjust(
        metering_pb2.CreditRequest(
            account_id="acct_1", amount=-1_500, reason="goodwill reversal", idempotency_key="a1"
        )
    )
    assert adjusted.entry.kind == "adjustment" and adjusted.balance.balance == 3_500
    await _consistent(harness.store, "acct_1")


async def test_usage_rpc_groups_and_isolates_accounts(harness: Harness) -> None:
    for request_id, account, model in [
        ("u1", "acct_1", "m-1"),
        ("u2", "acct_1", "free"),
        ("u3", "acct_2", "m-1"),
    ]:
        event = _event(request_id, account)
        event.model = model
        await harness.publish(event)
    await _settled(harness, "u3")
    await _settled(harness, "u2")
    reply = await harness.admin.GetUsage(
        metering_pb2.GetUsageRequest(
            account_id="acct_1",
            group_by=[metering_pb2.USAGE_DIMENSION_MODEL, metering_pb2.USAGE_DIMENSION_DAY],
        )
    )
    assert [(r.model, r.requests, r.cost, r.input_tokens) for r in reply.rows] == [
        ("free", 1, 0, 11),
        ("m-1", 1, COST, 11),
    ]
    assert all(len(r.day) == 10 and not r.key_id for r in reply.rows)
    other = await harness.admin.GetUsage(metering_pb2.GetUsageRequest(account_id="acct_2"))
    assert [(r.requests, r.cost) for r in other.rows] == [(1, COST)]
    nobody = await harness.admin.GetUsage(metering_pb2.GetUsageRequest(account_id="acct_3"))
    assert list(nobody.rows) == []


async def test_restart_loses_and_duplicates_nothing(
    database_url: str, nats_url: str, tmp_path: Path
) -> None:
    suffix = secrets.token_hex(4)
    async with harness_for(
        database_url, nats_url, tmp_path, suffix=suffix, keep_stream=True
    ) as first:
        await first.top_up("acct_1", 1_000_000)
        for i in range(20):
            assert (await first.stub.Admit(_admit(f"r_{i}"))).admitted
        for i in range(10):
            await first.publish(_event(f"r_{i}"))
        await _settled(first, "r_9")
    # Metering is down: usage keeps arriving (one event twice), and waits in JetStream.
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        for i in range(10, 20):
            event = _event(f"r_{i}")
            await js.publish(f"usage.t{suffix}.acct_1", event.SerializeToString())
        await js.publish(f"usage.t{suffix}.acct_1", _event("r_5").SerializeToString())
    finally:
        await nc.close()
    async with harness_for(database_url, nats_url, tmp_path, suffix=suffix) as second:
        await _settled(second, "r_19")
        audit = await _consistent(second.store, "acct_1")
        assert audit["balance"] == 1_000_000 - 20 * COST
        assert audit["held"] == 0


@pytest.mark.redis
async def test_two_replicas_share_credit_and_limits(
    postgres_url: str, nats_url: str, tmp_path: Path
) -> None:
    """Two metering processes on one PostgreSQL and one Redis: still exactly what's covered."""
    redis_url = os.environ.get("BYTESPIKE_TEST_REDIS_URL")
    if not redis_url:
        pytest.skip("BYTESPIKE_TEST_REDIS_URL is not set")
    prefix = f"bytespike-test-{secrets.token_hex(6)}"
    shared: dict[str, Any] = {
        "suffix": secrets.token_hex(4),
        "redis_url": redis_url,
        "redis_prefix": prefix,
    }
    try:
        async with (
            harness_for(postgres_url, nats_url, tmp_path, **shared) as one,
            running_metering(one.settings.model_copy(update={"port": 0})) as channel,
        ):
            two = metering_pb2_grpc.MeteringServiceStub(channel)
            await one.top_up("acct_1", 10 * HOLD)
            stubs: list[metering_pb2_grpc.MeteringServiceAsyncStub] = [one.stub, two]
            replies = await asyncio.gather(
                *[stubs[i % 2].Admit(_admit(f"r_{i}")) for i in range(50)]
            )
            assert sum(r.admitted for r in replies) == 10
            assert (await one.balance("acct_1")).available == 0
            slots = await asyncio.gather(
                *[
                    stubs[i % 2].Admit(
                        _admit(f"s_{i}", account="rich", model="free", key_concurrency=3)
                    )
                    for i in range(20)
                ]
            )
            assert sum(r.admitted for r in slots) == 3
    finally:
        client = redis.Redis.from_url(redis_url)
        keys = [key async for key in client.scan_iter(match=f"{prefix}:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()
