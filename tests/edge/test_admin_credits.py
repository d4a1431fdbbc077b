"""Credits and usage through the admin REST API and the CLI, over a real metering server
(router for the rate card, JetStream for usage, SQLite) and a real auth service.

Prices in CATALOG, micro-credits per token: m-1 input 2, output 10, cache read 0.5. The usage
in `_publish` (11 input, 7 cache read, 5 output) costs 22 + 3.5 + 50 = 75.5, charged as 76;
model `free` costs nothing and writes no ledger row.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import nats
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from nats.js import JetStreamContext

from bytespike.usage.v1 import usage_pb2
from bytespike_common.devstack import free_port
from bytespike_common.messaging import usage_subject
from bytespike_metering.server import create_server as create_metering
from bytespike_metering.settings import Settings as MeteringSettings
from bytespike_router.server import create_server as create_router
from bytespike_router.settings import Settings as RouterSettings
from tests.auth.harness import ACME_TOKEN, OPERATOR_TOKEN, admin_app, auth_service, serve
from tests.edge.test_admin_cli import Cli

pytestmark = pytest.mark.timeout(90)
OPERATOR = {"authorization": f"Bearer {OPERATOR_TOKEN}"}
ACME = {"authorization": f"Bearer {ACME_TOKEN}"}
CATALOG = """
providers:
  up: {protocol: openai, base_url: "https://vendor.example/v1"}
models:
  - id: m-1
    prices: {input: 2, output: 10, cache_read: 0.5, cache_write: 2.5}
    deployments: [{provider: up, upstream_model: a}]
  - id: free
    deployments: [{provider: up, upstream_model: f}]
groups:
  default: {models: ["*"]}
"""
COST = 76
DAY_1 = dt.datetime(2026, 1, 1, 12, tzinfo=dt.UTC)
DAY_2 = dt.datetime(2026, 1, 2, 12, tzinfo=dt.UTC)


@dataclass
class Stack:
    url: str
    auth: grpc.aio.Channel
    js: JetStreamContext
    subject_prefix: str


@contextlib.asynccontextmanager
async def _metering(tmp: Path, nats_url: str, suffix: str) -> AsyncIterator[str]:
    """Router (the rate card) and metering on SQLite; yields metering's target."""
    catalog = tmp / "catalog.yaml"
    catalog.write_text(CATALOG)
    router_settings = RouterSettings(port=0, catalog_path=str(catalog), shutdown_grace=0.2)
    async with create_router(router_settings) as router:
        settings = MeteringSettings(
            port=0,
            database_url=f"sqlite:///{tmp / 'metering.db'}",
            nats_url=nats_url,
            router_target=f"127.0.0.1:{router.port}",
            usage_stream=f"USAGE_{suffix}",
            usage_subject_prefix=f"usage.t{suffix}",
            consumer_name=f"metering_{suffix}",
            shutdown_grace=0.2,
        )
        async with create_metering(settings) as metering:
            yield f"127.0.0.1:{metering.port}"


@pytest.fixture(scope="module")
async def stack(nats_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    tmp = tmp_path_factory.mktemp("credits")
    suffix = secrets.token_hex(4)
    nc = await nats.connect(nats_url)
    try:
        async with (
            _metering(tmp, nats_url, suffix) as metering_target,
            auth_service(f"sqlite:///{tmp / 'auth.db'}", nats_url) as auth,
            # The admin app opens its own metering channel from settings, as in production.
            serve(admin_app(auth, metering_target=metering_target)) as url,
        ):
            yield Stack(url, auth, nc.jetstream(), f"usage.t{suffix}")
    finally:
        await nc.jetstream().delete_stream(f"USAGE_{suffix}")
        await nc.close()


@pytest.fixture
async def http(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"{stack.url}/admin/v1", headers=OPERATOR) as client:
        yield client


async def _account_and_key(http: httpx.AsyncClient, name: str) -> tuple[str, str]:
    """Creates the account and a key; returns (account id, key id)."""
    account = await http.post("/accounts", json={"name": name})
    assert account.status_code == 201, account.text
    key = await http.post(f"/accounts/{name}/keys", json={})
    assert key.status_code == 201, key.text
    return account.json()["id"], key.json()["id"]


async def _publish(
    stack: Stack, account_id: str, key_id: str, model: str, started: dt.datetime
) -> None:
    """A usage event as the edge publishes it (JetStream, Nats-Msg-Id = request id)."""
    request_id = f"req_{secrets.token_hex(8)}"
    stamp = Timestamp()
    stamp.FromDatetime(started)
    event = usage_pb2.UsageEvent(
        request_id=request_id,
        account_id=account_id,
        key_id=key_id,
        group="default",
        model=model,
        client_protocol="openai",
        upstream_protocol="openai",
        usage=usage_pb2.Usage(input_tokens=11, cache_read_tokens=7, output_tokens=5),
        status_code=200,
        finish_reason="stop",
        started_at=stamp,
    )
    await stack.js.publish(
        usage_subject(account_id, stack.subject_prefix),
        event.SerializeToString(),
        headers={"Nats-Msg-Id": request_id},
    )


async def _settled(http: httpx.AsyncClient, account: str, requests: int) -> None:
    """Waits until metering has settled `requests` requests of the account."""
    deadline = asyncio.get_running_loop().time() + 15
    while True:
        rows = (await http.get(f"/accounts/{account}/usage")).json()["data"]
        if rows and rows[0]["requests"] == requests:
            return
        assert asyncio.get_running_loop().time() < deadline, rows
        await asyncio.sleep(0.05)


def _fields(reply: httpx.Response) -> dict[str, str]:
    assert reply.status_code == 422, reply.text
    return {".".join(str(p) for p in e["loc"]): e["msg"] for e in reply.json()["detail"]}


async def _ledger(http: httpx.AsyncClient, account: str) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": 2}
    while True:
        page = (await http.get(f"/accounts/{account}/ledger", params=params)).json()
        entries += page["data"]
        if not page["has_more"]:
            return entries
        params["before"] = page["next_before"]


async def test_top_up_adjust_balance_ledger_and_usage(
    stack: Stack, http: httpx.AsyncClient
) -> None:
    account_id, key_id = await _account_and_key(http, "flow")
    empty = (await http.get("/accounts/flow/balance")).json()
    assert empty["balance"] == "0" and empty["available_micro"] == 0
    topped = await http.post(
        "/accounts/flow/credits/topup", json={"amount": "100", "reason": "invoice 1"}
    )
    assert topped.status_code == 201, topped.text
    entry = topped.json()["entry"]
    assert (entry["kind"], entry["amount"], entry["amount_micro"]) == ("top_up", "100", 10**8)
    assert entry["reason"] == "invoice 1" and entry["actor"] == "operator"
    assert entry["idempotency_key"].startswith("admin-")  # generated when none is given
    adjusted = await http.post(
        f"/accounts/{account_id}/credits/adjust", json={"amount": -0.5, "reason": "goodwill"}
    )
    assert adjusted.status_code == 201 and adjusted.json()["balance"]["balance"] == "99.5"

    for model, day in (("m-1", DAY_1), ("m-1", DAY_2), ("free", DAY_2)):
        await _publish(stack, account_id, key_id, model, day)
    await _settled(http, "flow", 3)

    balance = (await http.get("/accounts/flow/balance")).json()
    assert balance == {
        "account_id": account_id,
        "account": "flow",
        "balance": "99.499848",
        "balance_micro": 99_500_000 - 2 * COST,
        "held": "0",
        "held_micro": 0,
        "available": "99.499848",
        "available_micro": 99_500_000 - 2 * COST,
        "updated_at": balance["updated_at"],
    }
    ledger = await _ledger(http, "flow")
    assert [(e["kind"], e["amount_micro"]) for e in ledger] == [
        ("usage", -COST),
        ("usage", -COST),
        ("adjustment", -500_000),
        ("top_up", 10**8),
    ]
    assert ledger[0]["key_id"] == key_id and ledger[0]["model"] == "m-1"
    assert sum(e["amount_micro"] for e in ledger) == balance["balance_micro"]

    async def usage(**params: str) -> list[tuple[Any, ...]]:
        reply = await http.get("/accounts/flow/usage", params=params)
        assert reply.status_code == 200, reply.text
        return [
            (r["key_id"], r["model"], r["day"], r["requests"], r["cost"], r["cost_micro"])
            for r in reply.json()["data"]
        ]

    assert await usage() == [(None, None, None, 3, "0.000152", 2 * COST)]
    assert await usage(group_by="model") == [
        (None, "free", None, 1, "0", 0),
        (None, "m-1", None, 2, "0.000152", 2 * COST),
    ]
    assert await usage(group_by="day,key,model") == [
        (key_id, "free", "2026-01-02", 1, "0", 0),
        (key_id, "m-1", "2026-01-01", 1, "0.000076", COST),
        (key_id, "m-1", "2026-01-02", 1, "0.000076", COST),
    ]
    assert await usage(group_by="day", since="2026-01-02") == [
        (None, None, "2026-01-02", 2, "0.000076", COST)
    ]
    assert await usage(until="2026-01-02T00:00:00Z") == [(None, None, None, 1, "0.000076", COST)]
    tokens = (await http.get("/accounts/flow/usage")).json()["data"][0]
    assert (tokens["input_tokens"], tokens["cache_read_tokens"], tokens["output_tokens"]) == (
        33,
        21,
        15,
    )


async def test_a_top_up_is_applied_once_per_idempotency_key(http: httpx.AsyncClient) -> None:
    await _account_and_key(http, "idem")
    body = {"amount": "12.5", "reason": "invoice 2"}
    headers = {"idempotency-key": "invoice-2"}
    first = await http.post("/accounts/idem/credits/topup", json=body, headers=headers)
    again = await http.post("/accounts/idem/credits/topup", json=body, headers=headers)
    assert (first.status_code, again.status_code) == (201, 200)
    assert not first.json()["replayed"] and again.json()["replayed"]
    assert again.json()["entry"] == first.json()["entry"]
    assert again.json()["balance"]["balance"] == "12.5"
    in_body = {**body, "idempotency_key": "invoice-2"}
    assert (await http.post("/accounts/idem/credits/topup", json=in_body)).json()["replayed"]
    for path, amount in (("topup", "13"), ("adjust", "12.5")):
        conflict = await http.post(
            f"/accounts/idem/credits/{path}", json={**body, "amount": amount}, headers=headers
        )
        assert conflict.status_code == 409, conflict.text
        assert "invoice-2" in conflict.json()["detail"]
    mismatch = await http.post(
        "/accounts/idem/credits/topup",
        json={**body, "idempotency_key": "other"},
        headers=headers,
    )
    assert set(_fields(mismatch)) == {"header.Idempotency-Key"}
    ledger = (await http.get("/accounts/idem/ledger")).json()
    assert [(e["kind"], e["idempotency_key"]) for e in ledger["data"]] == [("top_up", "invoice-2")]
    assert (await http.get("/accounts/idem/balance")).json()["balance_micro"] == 12_500_000


async def test_one_account_never_reaches_anothers_credit_or_usage(
    stack: Stack, http: httpx.AsyncClient
) -> None:
    acme_id, acme_key = await _account_and_key(http, "acme")
    globex_id, globex_key = await _account_and_key(http, "globex")
    await http.post("/accounts/globex/credits/topup", json={"amount": 5, "reason": "r"})
    await _publish(stack, globex_id, globex_key, "m-1", DAY_1)
    await _publish(stack, acme_id, acme_key, "m-1", DAY_1)
    await _settled(http, "globex", 1)
    await _settled(http, "acme", 1)
    for path in ("balance", "ledger", "usage?group_by=key"):
        assert (await http.get(f"/accounts/acme/{path}", headers=ACME)).status_code == 200, path
    mine = (await http.get("/accounts/acme/usage?group_by=key", headers=ACME)).json()["data"]
    assert [r["key_id"] for r in mine] == [acme_key]
    ledger = (await http.get("/accounts/acme/ledger", headers=ACME)).text
    assert globex_key not in ledger and globex_id not in ledger
    body = {"amount": "1000", "reason": "free money"}
    for method, path in (
        ("GET", "/accounts/globex/balance"),
        ("GET", "/accounts/globex/ledger"),
        ("GET", "/accounts/globex/usage?group_by=key"),
        ("GET", f"/accounts/{globex_id}/usage"),
        ("GET", "/accounts/no-such-account/balance"),
        ("POST", "/accounts/globex/credits/topup"),
        ("POST", "/accounts/globex/credits/adjust"),
        # Its own account too: credit is the operator's to give.
        ("POST", "/accounts/acme/credits/topup"),
        ("POST", "/accounts/acme/credits/adjust"),
    ):
        reply = await http.request(method, path, json=body, headers=ACME)
        assert reply.status_code == 403, (method, path, reply.text)
    globex = (await http.get("/accounts/globex/balance")).json()
    assert globex["balance_micro"] == 5_000_000 - COST
    assert (await http.get("/accounts/acme/balance")).json()["balance_micro"] == -COST
    assert (await http.get("/accounts/no-such-account/balance")).status_code == 404


async def test_malformed_credit_requests_are_422_naming_the_field(
    http: httpx.AsyncClient,
) -> None:
    await _account_and_key(http, "strict")
    bad_amounts = ["abc", "0.0000001", 1e-7, 0, "-1", True, "NaN", "1e10", [], "1000000000.5"]
    for amount in bad_amounts:
        reply = await http.post(
            "/accounts/strict/credits/topup", json={"amount": amount, "reason": "r"}
        )
        assert set(_fields(reply)) == {"body.amount"}, amount
    zero = await http.post("/accounts/strict/credits/adjust", json={"amount": "-0", "reason": "r"})
    assert "zero" in _fields(zero)["body.amount"]
    precise = _fields(
        await http.post(
            "/accounts/strict/credits/topup", json={"amount": "1.0000001", "reason": "r"}
        )
    )
    assert "6 decimal places" in precise["body.amount"]
    missing = await http.post("/accounts/strict/credits/topup", json={"reason": "  ", "x": 1})
    assert set(_fields(missing)) == {"body.amount", "body.reason", "body.x"}
    bad_key = await http.post(
        "/accounts/strict/credits/topup",
        json={"amount": 1, "reason": "r", "idempotency_key": "has space"},
        headers={"idempotency-key": "k" * 129},
    )
    assert set(_fields(bad_key)) == {"body.idempotency_key", "header.Idempotency-Key"}
    for params, field in (
        ({"limit": 0}, "query.limit"),
        ({"limit": 1001}, "query.limit"),
        ({"before": "x"}, "query.before"),
    ):
        assert set(_fields(await http.get("/accounts/strict/ledger", params=params))) == {field}
    for params, field in (
        ({"group_by": "key,colour"}, "query.group_by"),
        ({"since": "yesterday"}, "query.since"),
        ({"until": "2026-01-01T00:00:00"}, "query.until"),  # no time zone
        ({"since": "2026-01-02", "until": "2026-01-01"}, "query.until"),
    ):
        assert set(_fields(await http.get("/accounts/strict/usage", params=params))) == {field}
    # Exact to the micro-credit, where a float would round.
    exact = await http.post(
        "/accounts/strict/credits/topup", json={"amount": "999999999.999999", "reason": "r"}
    )
    assert exact.json()["entry"]["amount_micro"] == 999_999_999_999_999
    assert exact.json()["entry"]["amount"] == "999999999.999999"
    assert (await http.get("/accounts/strict/ledger")).json()["data"][0]["amount"] == (
        "999999999.999999"
    )


async def test_metering_unreachable_is_503(stack: Stack, http: httpx.AsyncClient) -> None:
    await _account_and_key(http, "orphan")
    down = admin_app(stack.auth, metering_target=f"127.0.0.1:{free_port()}")
    async with (
        serve(down) as url,
        httpx.AsyncClient(base_url=f"{url}/admin/v1", headers=OPERATOR) as client,
    ):
        for method, path in (
            ("GET", "/accounts/orphan/balance"),
            ("GET", "/accounts/orphan/ledger"),
            ("GET", "/accounts/orphan/usage"),
            ("POST", "/accounts/orphan/credits/topup"),
            ("POST", "/accounts/orphan/credits/adjust"),
        ):
            reply = await client.request(method, path, json={"amount": 1, "reason": "r"})
            assert reply.status_code == 503, (method, path, reply.text)
            assert "metering service" in reply.json()["detail"]
        # Auth still answers: the account and key endpoints keep working.
        assert (await client.get("/accounts/orphan/keys")).status_code == 200
        assert (await client.get("/accounts/nobody/balance")).status_code == 404


async def test_openapi_documents_the_credit_endpoints(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.url) as anonymous:
        schema = (await anonymous.get("/openapi.json")).json()
    for path in ("credits/topup", "credits/adjust", "balance", "ledger", "usage"):
        assert f"/admin/v1/accounts/{{account}}/{path}" in schema["paths"], path
    amount = schema["components"]["schemas"]["TopUp"]["properties"]["amount"]
    assert amount["anyOf"] == [{"type": "string"}, {"type": "number"}]
    topup = schema["paths"]["/admin/v1/accounts/{account}/credits/topup"]["post"]
    assert {"201", "200", "403", "404", "409", "422", "503"} <= set(topup["responses"])
    assert any(p["name"] == "Idempotency-Key" for p in topup["parameters"])


# -- the CLI -------------------------------------------------------------------------------


async def test_cli_credits_and_usage(stack: Stack, http: httpx.AsyncClient) -> None:
    cli = Cli(stack.url)
    account_id, key_id = await _account_and_key(http, "cli-co")
    shown = await cli(
        "credits", "topup", "--account", "cli-co", "--amount", "100", "--reason", "first invoice"
    )
    assert "top_up of 100 credits on cli-co" in shown.stdout and "available 100" in shown.stdout
    args = ("credits", "topup", "-a", "cli-co", "--amount", "0.25", "--reason", "r")
    once = await cli.json(*args, "--idempotency-key", "cli-1")
    twice = await cli(*args, "--idempotency-key", "cli-1")
    assert not once["replayed"] and "nothing changed" in twice.stdout
    adjusted = await cli.json(
        "credits", "adjust", "-a", "cli-co", "--amount", "-2.5", "--reason", "fix"
    )
    assert adjusted["entry"]["kind"] == "adjustment"
    balance = await cli.json("credits", "balance", "--account", "cli-co")
    assert (balance["balance"], balance["available_micro"]) == ("97.75", 97_750_000)
    assert "97.75" in (await cli("credits", "balance", "-a", "cli-co")).stdout

    await _publish(stack, account_id, key_id, "m-1", DAY_1)
    await _settled(http, "cli-co", 1)
    table = await cli("credits", "ledger", "--account", "cli-co", "--limit", "2")
    lines = table.stdout.splitlines()
    assert lines[0].split()[:4] == ["ID", "CREATED_AT", "KIND", "AMOUNT"]
    assert "usage" in lines[1] and "-0.000076" in lines[1] and "(more: --before" in lines[-1]
    page = await cli.json("credits", "ledger", "-a", "cli-co", "--limit", "2")
    rest = await cli.json("credits", "ledger", "-a", "cli-co", "--before", str(page["next_before"]))
    assert [e["kind"] for e in page["data"] + rest["data"]] == [
        "usage", "adjustment", "top_up", "top_up",
    ]  # fmt: skip
    by_model = await cli("usage", "--account", "cli-co", "--by", "model")
    header, row = by_model.stdout.splitlines()
    assert header.split()[:3] == ["MODEL", "REQUESTS", "INPUT_TOKENS"]
    assert row.split()[:3] == ["m-1", "1", "11"] and row.split()[-1] == "0.000076"
    report = await cli.json("usage", "-a", "cli-co", "--by", "key,day", "--since", "2026-01-01")
    assert [(r["key_id"], r["day"]) for r in report["data"]] == [(key_id, "2026-01-01")]
    recent = await cli.json("usage", "-a", "cli-co", "--since", "7d")
    assert recent["data"] == [] and recent["since"]  # the event started on DAY_1


async def test_cli_credit_errors(stack: Stack, http: httpx.AsyncClient) -> None:
    await _account_and_key(http, "cli-err")
    cli = Cli(stack.url)
    bad = await cli(
        "credits", "topup", "-a", "cli-err", "--amount", "1.0000001", "--reason", "r", code=1
    )
    assert "HTTP 422" in bad.stderr and "amount: " in bad.stderr
    missing = await cli("credits", "balance", "-a", "nobody", code=1)
    assert "HTTP 404" in missing.stderr
    scoped = Cli(stack.url, token=ACME_TOKEN)
    refused = await scoped(
        "credits", "topup", "-a", "cli-err", "--amount", "1", "--reason", "r", code=1
    )
    assert "HTTP 403" in refused.stderr
    dimension = await cli("usage", "-a", "cli-err", "--by", "colour", code=1)
    assert "group_by" in dimension.stderr
    assert (await cli("credits", "topup", "-a", "cli-err", "--amount", "1", code=2)).exit_code == 2
