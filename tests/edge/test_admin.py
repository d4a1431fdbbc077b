"""The admin REST API over a real auth service: tokens and scoping, accounts, keys,
policies, rotation, and the 401/403/404/409/422 contract."""

from __future__ import annotations

import datetime as dt
import hmac
from collections.abc import AsyncIterator
from typing import Any

import grpc
import httpx
import pytest
from pydantic import ValidationError

from bytespike_common import keys
from bytespike_edge.admin.security import AdminTokens
from bytespike_edge.control.auth import BadKeyGuard
from bytespike_edge.settings import Settings
from tests.auth.harness import (
    ACME_TOKEN,
    OPERATOR_TOKEN,
    SECRET,
    admin_app,
    auth_service,
    serve,
)

pytestmark = pytest.mark.timeout(60)
OPERATOR = {"authorization": f"Bearer {OPERATOR_TOKEN}"}
ACME = {"authorization": f"Bearer {ACME_TOKEN}"}


@pytest.fixture
async def auth_channel(sqlite_url: str, nats_url: str) -> AsyncIterator[grpc.aio.Channel]:
    async with auth_service(sqlite_url, nats_url) as channel:
        yield channel


@pytest.fixture
async def http(auth_channel: grpc.aio.Channel) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        serve(admin_app(auth_channel)) as url,
        httpx.AsyncClient(base_url=f"{url}/admin/v1", headers=OPERATOR) as client,
    ):
        yield client


async def _account(http: httpx.AsyncClient, name: str, **fields: Any) -> dict[str, Any]:
    reply = await http.post("/accounts", json={"name": name, **fields})
    assert reply.status_code == 201, reply.text
    result: dict[str, Any] = reply.json()
    return result


async def _key(http: httpx.AsyncClient, account: str, **fields: Any) -> dict[str, Any]:
    reply = await http.post(f"/accounts/{account}/keys", json=fields)
    assert reply.status_code == 201, reply.text
    result: dict[str, Any] = reply.json()
    return result


def _fields(reply: httpx.Response) -> dict[str, str]:
    assert reply.status_code == 422, reply.text
    return {".".join(str(p) for p in e["loc"][1:]): e["msg"] for e in reply.json()["detail"]}


async def test_refuses_without_the_token(http: httpx.AsyncClient) -> None:
    for headers in ({"authorization": ""}, {"authorization": "Bearer wrong-token-000000000"}):
        reply = await http.get("/accounts", headers=headers)
        assert reply.status_code == 401
        assert reply.headers["www-authenticate"] == "Bearer"
    basic = await http.post("/accounts", json={"name": "x"}, headers={"authorization": "Basic x"})
    assert basic.status_code == 401
    root = str(http.base_url).removesuffix("/admin/v1/")
    async with httpx.AsyncClient(base_url=root) as anonymous:
        assert (await anonymous.get("/healthz")).status_code == 200
        schema = (await anonymous.get("/openapi.json")).json()
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert "/admin/v1/accounts/{account}/keys/{key_id}/rotate" in schema["paths"]
    group = schema["components"]["schemas"]["KeyCreate"]["properties"]["group"]
    assert "default group" in group["description"]


async def test_a_key_is_shown_once_and_listed_by_prefix_only(http: httpx.AsyncClient) -> None:
    await _account(http, "acme", default_group="claude-default")
    created = await _key(
        http, "acme", name="ci", limits={"rpm": 60}, allowed_models=["claude-haiku-4-5"]
    )
    plaintext = created["plaintext"]
    assert keys.is_well_formed(plaintext) and created["prefix"] == plaintext[:12]
    assert created["group"] == "claude-default" and created["limits"]["rpm"] == 60
    shown = await http.get(f"/accounts/acme/keys/{created['id']}")
    listed = await http.get("/accounts/acme/keys")
    for reply in (shown, listed):
        assert reply.status_code == 200 and plaintext not in reply.text
        assert "plaintext" not in reply.text
    assert [k["id"] for k in listed.json()["data"]] == [created["id"]]
    models = await http.get(f"/accounts/acme/keys/{created['id']}/models")
    assert models.json() == [
        {
            "id": "claude-haiku-4-5",
            "display_name": "Claude Haiku 4.5",
            "owned_by": "anthropic",
            "available": False,
        }
    ]


async def test_malformed_requests_are_422_naming_each_field(http: httpx.AsyncClient) -> None:
    naive = dt.datetime.now().replace(microsecond=0).isoformat()
    past = (dt.datetime.now(dt.UTC) - dt.timedelta(days=1)).isoformat()
    assert set(_fields(await http.post("/accounts", json={"name": "bad name"}))) == {"name"}
    assert set(_fields(await http.post("/accounts", json={"name": "a", "owner": "x"}))) == {"owner"}
    await _account(http, "acme")
    bad_key = await http.post(
        "/accounts/acme/keys",
        json={"limits": {"rpm": -1, "tpm": "lots"}, "expires_at": naive, "name": "x\ny"},
    )
    assert set(_fields(bad_key)) == {"limits.rpm", "limits.tpm", "expires_at", "name"}
    assert (
        "future"
        in _fields(await http.post("/accounts/acme/keys", json={"expires_at": past}))["expires_at"]
    )
    catalog = _fields(
        await http.post(
            "/accounts/acme/keys",
            json={"group": "vip", "allowed_models": ["gpt-5-5", "gtp-5-5", "claude-*", "nope"]},
        )
    )
    assert set(catalog) == {"group", "allowed_models.1", "allowed_models.3"}
    assert "claude-default" in catalog["group"]  # the error lists the known groups
    policy = await http.put("/accounts/acme/policy", json={"default_group": "gold"})
    assert set(_fields(policy)) == {"default_group"}
    rotate = await http.post("/accounts/acme/keys/key_x/rotate", json={"grace_seconds": -5})
    assert set(_fields(rotate)) == {"grace_seconds"}
    listing = await http.get("/accounts", params={"limit": 0})
    assert listing.status_code == 422


async def test_duplicates_are_409_and_unknowns_404(http: httpx.AsyncClient) -> None:
    await _account(http, "acme")
    await _account(http, "globex")
    assert (await http.post("/accounts", json={"name": "acme"})).status_code == 409
    assert (await http.patch("/accounts/acme", json={"name": "globex"})).status_code == 409
    await _key(http, "acme", name="ci")
    assert (await http.post("/accounts/acme/keys", json={"name": "ci"})).status_code == 409
    for path in ("/accounts/nobody", "/accounts/nobody/keys", "/accounts/acme/keys/key_nope"):
        reply = await http.get(path)
        assert reply.status_code == 404, path
        assert isinstance(reply.json()["detail"], str)


async def test_rotation_revocation_and_their_conflicts(http: httpx.AsyncClient) -> None:
    await _account(http, "acme")
    old = await _key(http, "acme", name="ci", limits={"tpm": 1000})
    rotated = (
        await http.post(f"/accounts/acme/keys/{old['id']}/rotate", json={"grace_seconds": 3600})
    ).json()
    assert rotated["name"] == "ci" and rotated["limits"]["tpm"] == 1000
    assert rotated["plaintext"] != old["plaintext"] and rotated["rotated_from"] == old["id"]
    previous = rotated["previous"]
    assert previous["status"] == "active" and previous["replaced_by"] == rotated["id"]
    assert dt.datetime.fromisoformat(previous["revoke_at"]) > dt.datetime.now(dt.UTC)
    again = await http.post(f"/accounts/acme/keys/{old['id']}/rotate")
    assert again.status_code == 409
    revoked = (await http.post(f"/accounts/acme/keys/{old['id']}/revoke")).json()
    assert revoked["status"] == "revoked" and revoked["revoked_at"]
    assert (await http.post(f"/accounts/acme/keys/{old['id']}/revoke")).status_code == 200
    now = (await http.post(f"/accounts/acme/keys/{rotated['id']}/rotate")).json()
    assert now["previous"]["status"] == "revoked"
    statuses = {
        k["id"]: k["status"] for k in (await http.get("/accounts/acme/keys")).json()["data"]
    }
    assert statuses == {old["id"]: "revoked", rotated["id"]: "revoked", now["id"]: "active"}
    active = (await http.get("/accounts/acme/keys", params={"status": "active"})).json()
    assert [k["id"] for k in active["data"]] == [now["id"]]


async def test_accounts_disable_enable_and_policy(http: httpx.AsyncClient) -> None:
    created = await _account(http, "acme")
    assert created["status"] == "active" and created["allowed_models"] == []
    policy = await http.put(
        f"/accounts/{created['id']}/policy",
        json={"default_group": "gemini-default", "allowed_models": ["gemini-*"]},
    )
    assert policy.json() == {"default_group": "gemini-default", "allowed_models": ["gemini-*"]}
    assert (await _key(http, "acme"))["group"] == "gemini-default"
    assert (await http.post("/accounts/acme/disable")).json()["status"] == "disabled"
    listed = (await http.get("/accounts", params={"status": "disabled"})).json()
    assert [a["name"] for a in listed["data"]] == ["acme"]
    assert (await http.post("/accounts/acme/enable")).json()["status"] == "active"
    cleared = await http.patch("/accounts/acme", json={"allowed_models": []})
    assert cleared.json()["allowed_models"] == []
    for name in ("b", "c"):
        await _account(http, name)
    page = (await http.get("/accounts", params={"limit": 2})).json()
    assert page["has_more"] and page["next_after"] == page["data"][-1]["id"]
    rest = (await http.get("/accounts", params={"after": page["next_after"]})).json()
    assert [a["name"] for a in rest["data"]] == ["c"] and not rest["has_more"]


async def test_one_account_never_reaches_anothers_keys(http: httpx.AsyncClient) -> None:
    await _account(http, "acme")
    await _account(http, "globex")
    theirs = await _key(http, "globex", name="secret")
    ours = await _key(http, "acme", name="ours")
    # Through acme's path, globex's key does not exist, even for the operator.
    for method, path in (
        ("GET", f"/accounts/acme/keys/{theirs['id']}"),
        ("POST", f"/accounts/acme/keys/{theirs['id']}/revoke"),
        ("POST", f"/accounts/acme/keys/{theirs['id']}/rotate"),
        ("GET", f"/accounts/acme/keys/{theirs['id']}/models"),
    ):
        assert (await http.request(method, path)).status_code == 404, path
    # acme's own token: its keys only, whatever path or id it tries.
    listed = await http.get("/accounts/acme/keys", headers=ACME)
    assert [k["id"] for k in listed.json()["data"]] == [ours["id"]]
    assert theirs["prefix"] not in listed.text
    for method, path in (
        ("GET", "/accounts"),
        ("POST", "/accounts"),
        ("GET", "/accounts/globex"),
        ("GET", "/accounts/globex/keys"),
        ("GET", "/accounts/no-such-account/keys"),
        ("POST", f"/accounts/globex/keys/{theirs['id']}/revoke"),
        ("POST", "/accounts/acme/disable"),
        ("PUT", "/accounts/acme/policy"),
        ("PATCH", "/accounts/acme"),
    ):
        reply = await http.request(method, path, json={"name": "x"}, headers=ACME)
        assert reply.status_code == 403, (method, path)
    refused_group = await http.post(
        "/accounts/acme/keys", json={"group": "claude-default"}, headers=ACME
    )
    assert refused_group.status_code == 403
    mine = await http.post("/accounts/acme/keys", json={"name": "self-made"}, headers=ACME)
    assert mine.status_code == 201
    assert (await http.get("/accounts/acme/policy", headers=ACME)).status_code == 200
    survivor = await http.get(f"/accounts/globex/keys/{theirs['id']}")
    assert survivor.json()["status"] == "active"


async def test_catalog_view(http: httpx.AsyncClient) -> None:
    groups = {g["name"]: g for g in (await http.get("/groups", headers=ACME)).json()}
    assert set(groups) >= {"default", "claude-default", "gemini-default"}
    assert groups["claude-default"]["models"] == [
        "claude-opus-4-8",
        "claude-sonnet-4-6",
        "claude-haiku-4-5",
    ]
    assert groups["default"]["price_multiplier"] == 1.0
    available = {m["id"]: m["available"] for m in (await http.get("/models")).json()}
    assert available["gpt-5-5"] and available["mock-echo"] and not available["claude-opus-4-8"]


async def test_guessing_admin_tokens_is_throttled_per_client(
    auth_channel: grpc.aio.Channel,
) -> None:
    app = admin_app(auth_channel, bad_key_burst=2)

    def client(address: str, token: str) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=app, client=(address, 4321))
        headers = {"authorization": f"Bearer {token}"}
        return httpx.AsyncClient(transport=transport, base_url="http://admin", headers=headers)

    async with client("10.1.1.1", "guess-000000000000") as guesser:
        codes = [(await guesser.get("/admin/v1/groups")).status_code for _ in range(4)]
        assert codes == [401, 401, 429, 429]
        limited = await guesser.get("/admin/v1/groups")
        assert int(limited.headers["retry-after"]) >= 1
    async with client("10.1.1.2", OPERATOR_TOKEN) as operator:
        assert (await operator.get("/admin/v1/groups")).status_code == 200


def test_every_token_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def recording(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    # The admin module calls hmac.compare_digest through the module: patch it there.
    monkeypatch.setattr(hmac, "compare_digest", recording)
    tokens = AdminTokens(
        OPERATOR_TOKEN,
        {"acme": ACME_TOKEN, "globex": "globex-token-0123456789"},
        BadKeyGuard(burst=100, refill_seconds=1, max_clients=10),
    )
    assert tokens.identify(OPERATOR_TOKEN, "a").is_operator
    assert tokens.identify(ACME_TOKEN, "a").account == "acme"
    with pytest.raises(Exception, match="admin bearer token"):
        tokens.identify("nope", "a")
    # Three tokens configured, three comparisons per attempt, match or not: no early exit.
    assert len(compared) == 9
    assert all(isinstance(a, bytes) and isinstance(b, bytes) for a, b in compared)


def test_settings_refuse_a_production_edge_without_an_admin_token() -> None:
    def production(**fields: Any) -> Settings:
        return Settings(key_hash_secret="k" * 32, environment="production", **fields)

    with pytest.raises(ValidationError, match="admin_token is required"):
        production()
    with pytest.raises(ValidationError, match="at least 16"):
        production(admin_token="short")
    with pytest.raises(ValidationError, match="distinct"):
        production(admin_token="t" * 20, admin_account_tokens={"acme": "t" * 20})
    assert production(admin_token="t" * 20).admin_bind_host == "127.0.0.1"
    assert Settings(key_hash_secret=SECRET).admin_token == ""  # development may leave it open
