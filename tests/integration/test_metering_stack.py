"""Metering through the whole suite: money is exact while processes come and go.

The fake vendor's default answer reports prompt_tokens 17 (5 of them cached) and
completion_tokens 9 (3 of them reasoning). The edge's OpenAI mapping makes that canonical
input 12, cache read 5, output 9; on gpt-5-5 (1.25 / 10 / 0.125 credits per 1M tokens):
12 x 1.25 + 5 x 0.125 + 9 x 10 = 105.625 micro-credits, charged as 106 (half up).
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from typing import Any

import grpc
import httpx
import pytest

from bytespike.auth.v1 import auth_pb2, auth_pb2_grpc
from bytespike.metering.v1 import metering_pb2, metering_pb2_grpc
from bytespike_common.devstack import Stack
from tests.fakes.process import FakeVendorProcess

pytestmark = pytest.mark.integration

COST_PER_REQUEST = 106
BODY = {"model": "gpt-5-5", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 16}


async def _key(stack: Stack, account: str, **limits: int) -> tuple[str, str]:
    """A new key (with optional limits) on a new account; returns (account id, plaintext)."""
    async with grpc.aio.insecure_channel(stack.target("auth")) as channel:
        admin = auth_pb2_grpc.AuthAdminServiceStub(channel)
        await admin.CreateAccount(auth_pb2.CreateAccountRequest(name=account))
        reply = await admin.CreateKey(
            auth_pb2.CreateKeyRequest(
                account=account, name="metering-test", limits=auth_pb2.Limits(**limits)
            )
        )
    return reply.key.account_id, reply.plaintext


def _query(stack: Stack, sql: str, *args: Any) -> list[sqlite3.Row]:
    with sqlite3.connect(stack.data_dir / "metering.db") as conn:
        conn.row_factory = sqlite3.Row
        return conn.execute(sql, args).fetchall()


def _books(stack: Stack, account_id: str) -> dict[str, int]:
    [row] = _query(
        stack,
        """SELECT b.balance, b.held,
                  (SELECT coalesce(sum(amount), 0) FROM ledger WHERE account_id = b.account_id)
                      AS ledger_sum,
                  (SELECT coalesce(sum(amount), 0) FROM ledger
                    WHERE account_id = b.account_id AND kind = 'usage') AS charged,
                  (SELECT count(*) FROM usage_records WHERE account_id = b.account_id
                    AND status_code = 200) AS records,
                  (SELECT count(*) FROM holds WHERE account_id = b.account_id
                    AND status = 'open') AS open_holds
           FROM balances b WHERE b.account_id = ?""",
        account_id,
    )
    return dict(row)


async def _wait_for(predicate: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.1)


def _headers(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


async def _metering_admin(stack: Stack) -> tuple[grpc.aio.Channel, Any]:
    channel = grpc.aio.insecure_channel(stack.target("metering"))
    return channel, metering_pb2_grpc.MeteringAdminServiceStub(channel)


async def test_metering_down_fails_closed_with_an_openai_503(stack: Stack) -> None:
    _, key = await _key(stack, "failmode")
    async with httpx.AsyncClient(base_url=stack.edge_url, timeout=10) as http:
        stack.stop_process("metering")
        try:
            refused = await http.post("/v1/chat/completions", json=BODY, headers=_headers(key))
            assert refused.status_code == 503
            assert refused.json() == {
                "error": {
                    "message": "Metering is temporarily unavailable.",
                    "type": "server_error",
                    "param": None,
                    "code": None,
                }
            }
        finally:
            stack.start_service("metering")
            await stack.wait_serving("metering")
        # The edge's channel reconnects with a backoff of up to 2 s.
        status = 0
        for _ in range(75):
            reply = await http.post("/v1/chat/completions", json=BODY, headers=_headers(key))
            if (status := reply.status_code) == 200:
                break
            await asyncio.sleep(0.2)
        assert status == 200


async def test_restart_while_a_thousand_requests_flow(stack: Stack) -> None:
    account_id, key = await _key(stack, "restart")
    total, workers = 1_000, 24
    statuses: list[int] = []
    restarted_after: list[int] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(total):
        queue.put_nowait(i)

    async def worker(http: httpx.AsyncClient) -> None:
        while not queue.empty():
            queue.get_nowait()
            try:
                reply = await http.post("/v1/chat/completions", json=BODY, headers=_headers(key))
                statuses.append(reply.status_code)
            except httpx.TransportError:
                statuses.append(0)
            if len(statuses) >= 300:
                flowing.set()

    flowing = asyncio.Event()

    async def restart_metering() -> None:
        await flowing.wait()
        restarted_after.append(len(statuses))
        await asyncio.to_thread(stack.stop_process, "metering")
        stack.start_service("metering")
        await stack.wait_serving("metering")

    limits = httpx.Limits(max_connections=workers)
    async with httpx.AsyncClient(base_url=stack.edge_url, timeout=30, limits=limits) as http:
        await asyncio.gather(restart_metering(), *(worker(http) for _ in range(workers)))

    served = statuses.count(200)
    assert set(statuses) <= {200, 503}, sorted(set(statuses))
    assert restarted_after[0] < total and served >= 300

    def settled() -> bool:
        books = _books(stack, account_id)
        return books["records"] >= served and books["open_holds"] == 0

    await _wait_for(settled, timeout=40)
    books = _books(stack, account_id)
    # Every served request billed exactly once; nothing refused was billed. (A request
    # admitted just before metering went down and then failed leaves a zero-cost record
    # with its error status: the money check below covers it.)
    assert books["records"] == served
    assert books["charged"] == -COST_PER_REQUEST * served
    assert books["balance"] == books["ledger_sum"] and books["held"] == 0


async def test_denials_reach_the_client_in_its_protocol(stack: Stack) -> None:
    _, limited_key = await _key(stack, "limited", rpm=2)
    poor_account, poor_key = await _key(stack, "poor")
    async with httpx.AsyncClient(base_url=stack.edge_url, timeout=10) as http:
        for _ in range(2):
            ok = await http.post("/v1/chat/completions", json=BODY, headers=_headers(limited_key))
            assert ok.status_code == 200
        throttled = await http.post(
            "/v1/chat/completions", json=BODY, headers=_headers(limited_key)
        )
        assert throttled.status_code == 429
        assert 1 <= int(throttled.headers["retry-after"]) <= 120
        assert throttled.json()["error"]["type"] == "rate_limit_exceeded"

        channel, admin = await _metering_admin(stack)
        async with channel:
            grant = (
                await admin.GetBalance(metering_pb2.GetBalanceRequest(account_id=poor_account))
            ).balance
            await admin.Adjust(
                metering_pb2.CreditRequest(
                    account_id=poor_account,
                    amount=-grant,
                    reason="test: spend the demo grant",
                    idempotency_key=f"drain-{poor_account}",
                    actor="tests",
                )
            )
        broke = await http.post("/v1/chat/completions", json=BODY, headers=_headers(poor_key))
        # OpenAI's own convention is 429 insufficient_quota, marked not to be retried.
        assert broke.status_code in (402, 429)
        if broke.status_code == 429:
            assert broke.headers["x-should-retry"] == "false"
        error = broke.json()["error"]
        assert (error["type"], error["code"]) == ("insufficient_quota", "insufficient_quota")
        assert "Insufficient credit" in error["message"]
        # The offline mock model is free: no credit needed.
        free = {**BODY, "model": "mock-echo"}
        assert (
            await http.post("/v1/chat/completions", json=free, headers=_headers(poor_key))
        ).status_code == 200


async def test_client_gone_mid_stream_is_billed_for_what_was_generated(
    stack: Stack, vendor: FakeVendorProcess
) -> None:
    account_id, key = await _key(stack, "leaver")
    chunk = '{"id":"c1","object":"chat.completion.chunk","created":1,"model":"gpt-5.5",'
    frames = [f'data: {chunk}"choices":[{{"index":0,"delta":{{"content":"w{i} "}}}}]}}'
              for i in range(30)]  # fmt: skip
    # The vendor streams slowly and never reaches its usage chunk.
    vendor.script({"sse": frames, "chunk_delay": 0.1})
    body = {**BODY, "stream": True}
    async with (
        httpx.AsyncClient(base_url=stack.edge_url, timeout=10) as http,
        http.stream("POST", "/v1/chat/completions", json=body, headers=_headers(key)) as reply,
    ):
        assert reply.status_code == 200
        request_id = reply.headers["x-request-id"]
        seen = 0
        async for line in reply.aiter_lines():
            seen += line.startswith("data:")
            if seen == 5:
                break

    def recorded() -> bool:
        return bool(_query(stack, "SELECT 1 FROM usage_records WHERE request_id=?", request_id))

    await _wait_for(recorded)
    [record] = _query(stack, "SELECT * FROM usage_records WHERE request_id = ?", request_id)
    assert record["client_disconnected"] == 1 and record["estimated"] == 1
    # The edge estimates one token per relayed frame, less the role and finish frames.
    assert 3 <= record["output_tokens"] < 30 and record["input_tokens"] > 0
    # Hand-priced from the recorded (estimated) tokens: input 1.25, output 10 per 1M.
    numerator = record["input_tokens"] * 1_250_000 + record["output_tokens"] * 10_000_000
    expected = (numerator + 500_000) // 1_000_000
    assert record["cost"] == expected > 0
    [entry] = _query(stack, "SELECT * FROM ledger WHERE request_id = ?", request_id)
    assert (entry["amount"], entry["kind"], entry["account_id"]) == (-expected, "usage", account_id)
