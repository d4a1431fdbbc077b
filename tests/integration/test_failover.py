"""Failover and breakers with fake vendors that inject faults (issue: router failover/health)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Iterator
from typing import Any

import nats
import openai
import orjson
import pytest

from bytespike.usage.v1 import usage_pb2
from bytespike_common.devstack import SERVICES, Stack, free_port
from tests.fakes.process import FakeVendorProcess, fake_vendor

pytestmark = pytest.mark.integration

CASES = ["429", "500", "529", "hang", "slow", "midway", "bad", "cred", "breaker", "dead", "all"]


def _catalog(dead_port: int) -> str:
    timeouts = "{connect_ms: 1000, first_byte_ms: 700}"
    lines = [
        "providers:",
        f"  primary: {{protocol: openai, base_url: 'http://x/v1', credential_env: FO_KEY, timeouts: {timeouts}}}",
        f"  backup: {{protocol: openai, base_url: 'http://x/v1', credential_env: FO_KEY, timeouts: {timeouts}}}",
        f"  dead: {{protocol: openai, base_url: 'http://127.0.0.1:{dead_port}/v1', timeouts: {timeouts}}}",
        "models:",
    ]
    for case in CASES:
        first = "dead" if case == "dead" else "primary"
        lines += [
            f"  - id: fo-{case}",
            "    deployments:",
            f"      - {{provider: {first}, upstream_model: {case}-primary, priority: 0}}",
            f"      - {{provider: backup, upstream_model: {case}-backup, priority: 1}}",
        ]
    lines += ["groups:", "  default: {models: ['*']}"]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def vendors() -> Iterator[tuple[FakeVendorProcess, FakeVendorProcess]]:
    with fake_vendor() as primary, fake_vendor() as backup:
        yield primary, backup


@pytest.fixture(scope="module")
async def stack(
    vendors: tuple[FakeVendorProcess, FakeVendorProcess], tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Stack]:
    primary, backup = vendors
    data = tmp_path_factory.mktemp("failover")
    catalog = data / "catalog.yaml"
    catalog.write_text(_catalog(free_port()))
    suite = Stack(
        data_dir=data,
        catalog_path=catalog,
        edge_port=free_port(),
        service_ports={name: free_port() for name in SERVICES},
        env={
            "FO_KEY": "fo-credential",
            "BYTESPIKE_PROVIDER_PRIMARY_BASE_URL": f"{primary.url}/v1",
            "BYTESPIKE_PROVIDER_BACKUP_BASE_URL": f"{backup.url}/v1",
            "BYTESPIKE_EDGE_BREAKER_MIN_REQUESTS": "3",
            "BYTESPIKE_EDGE_BREAKER_COOLDOWN": "1.5",
        },
    )
    try:
        await suite.start()
        yield suite
    finally:
        suite.stop()


@pytest.fixture
async def client(
    stack: Stack, vendors: tuple[FakeVendorProcess, ...]
) -> AsyncIterator[openai.AsyncOpenAI]:
    for vendor in vendors:
        vendor.reset()
    # A fresh key per test (a port number is not unique: ports are reused between calls).
    _, key = await stack.create_key("fo", f"k-{secrets.token_hex(6)}")
    async with openai.AsyncOpenAI(base_url=f"{stack.edge_url}/v1", api_key=key, max_retries=0) as c:
        yield c


def _models(vendor: FakeVendorProcess) -> list[str]:
    return [r["body"]["model"] for r in vendor.requests()]


def _error(
    status: int, message: str = "scripted", headers: dict[str, str] | None = None
) -> dict[str, Any]:
    return {
        "status": status,
        "json": {
            "error": {"message": message, "type": "server_error", "param": None, "code": None}
        },
        "headers": headers or {},
    }


async def _usage_event(stack: Stack, request_id: str) -> usage_pb2.UsageEvent:
    nc = await nats.connect(stack.nats_url)
    try:
        sub = await nc.jetstream().subscribe("usage.v1.>", ordered_consumer=True)
        while True:
            message = await asyncio.wait_for(sub.next_msg(), timeout=5)
            event = usage_pb2.UsageEvent.FromString(message.data)
            if event.request_id == request_id:
                return event
    finally:
        await nc.close()


async def _ask(client: openai.AsyncOpenAI, model: str) -> Any:
    return await client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": "hi"}]
    )


@pytest.mark.parametrize("status", [429, 500, 529, 503])
async def test_retryable_status_fails_over(
    status: int, stack: Stack, client: openai.AsyncOpenAI, vendors: tuple[FakeVendorProcess, ...]
) -> None:
    primary, backup = vendors
    model = {429: "fo-429", 500: "fo-500", 529: "fo-529", 503: "fo-all"}[status]
    primary.script(_error(status))
    raw = await _ask(client, model)
    assert raw.parse().choices[0].message.content == "fake: hi"
    assert _models(primary) == [model.removeprefix("fo-") + "-primary"]
    assert _models(backup) == [model.removeprefix("fo-") + "-backup"]
    event = await _usage_event(stack, raw.headers["x-request-id"])
    assert [(a.provider_id, a.status_code) for a in event.attempts] == [
        ("primary", status),
        ("backup", 200),
    ]
    assert event.provider_id == "backup" and event.upstream_model.endswith("-backup")


async def test_retry_after_is_honoured(
    client: openai.AsyncOpenAI, vendors: tuple[FakeVendorProcess, ...]
) -> None:
    primary, backup = vendors
    primary.script(_error(429, headers={"retry-after": "3"}))
    await _ask(client, "fo-429")
    await _ask(client, "fo-429")
    # The primary asked for 3 s of quiet: the second request went straight to the backup.
    assert len(primary.requests()) == 1
    assert len(backup.requests()) == 2


async def test_hang_and_slow_first_token_fail_over(
    client: openai.AsyncOpenAI, vendors: tuple[FakeVendorProcess, ...]
) -> None:
    primary, backup = vendors
    primary.script({"delay": 2.0, "json": {}})
    assert (await _ask(client, "fo-hang")).parse().choices[0].message.content == "fake: hi"
    frame = 'data: {"id":"x","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"late"}}]}'
    primary.script({"sse": [frame, "data: [DONE]"], "chunk_delay": 2.0})
    stream = await client.chat.completions.create(
        model="fo-slow", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "fake: hi "
    assert _models(backup) == ["hang-backup", "slow-backup"]


async def test_started_stream_is_never_retried(
    client: openai.AsyncOpenAI, vendors: tuple[FakeVendorProcess, ...]
) -> None:
    primary, backup = vendors
    chunk = {"id": "x", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    frames = [
        "data: "
        + orjson.dumps({**chunk, "choices": [{"index": 0, "delta": {"content": w}}]}).decode()
        for w in ("one ", "two ", "three ")
    ]
    primary.script({"sse": frames, "abort_after": 2})
    stream = await client.chat.completions.create(
        model="fo-midway", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    seen: list[str] = []
    with pytest.raises(openai.APIError) as broken:
        async for part in stream:
            seen.append(part.choices[0].delta.content or "")
    assert seen == ["one ", "two "]
    assert "ended unexpectedly" in broken.value.message
    assert backup.requests() == []


async def test_non_retryable_error_goes_straight_back(
    client: openai.AsyncOpenAI, vendors: tuple[FakeVendorProcess, ...]
) -> None:
    primary, backup = vendors
    primary.script(_error(400, "messages[0] is odd"))
    with pytest.raises(openai.BadRequestError) as bad:
        await _ask(client, "fo-bad")
    assert "messages[0] is odd" in bad.value.message
    assert backup.requests() == []


async def test_rejected_credential_and_dead_host_fail_over(
    client: openai.AsyncOpenAI, vendors: tuple[FakeVendorProcess, ...]
) -> None:
    primary, backup = vendors
    primary.script(_error(401, "bad key"))
    await _ask(client, "fo-cred")
    await _ask(client, "fo-dead")
    assert _models(backup) == ["cred-backup", "dead-backup"]


async def test_all_deployments_failing_returns_the_last_error(
    client: openai.AsyncOpenAI, vendors: tuple[FakeVendorProcess, ...]
) -> None:
    primary, backup = vendors
    primary.script(_error(503))
    backup.script(_error(502, "backup down"))
    with pytest.raises(openai.InternalServerError) as failed:
        await _ask(client, "fo-all")
    # The last deployment's error is the one reported (a vendor 502 is "unavailable": 503).
    assert failed.value.status_code == 503
    assert "backup down" in failed.value.message


async def test_breaker_opens_then_probes_half_open(
    client: openai.AsyncOpenAI, vendors: tuple[FakeVendorProcess, ...]
) -> None:
    primary, backup = vendors
    primary.script(_error(500), _error(500), _error(500))
    for _ in range(3):
        await _ask(client, "fo-breaker")
    assert len(primary.requests()) == 3
    # Open: the primary is skipped entirely.
    await _ask(client, "fo-breaker")
    assert len(primary.requests()) == 3 and len(backup.requests()) == 4
    # After the cooldown one probe goes through; its success closes the breaker.
    await asyncio.sleep(1.7)
    await _ask(client, "fo-breaker")
    await _ask(client, "fo-breaker")
    assert len(primary.requests()) == 5 and len(backup.requests()) == 4
