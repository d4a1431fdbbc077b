"""Model discovery in three protocols, through each vendor's own SDK, against the real auth
service and the shipped catalog: exactly the key's effective set, the right error bodies,
pagination, and edge-side caching rules (expiry, bad-key budget)."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import logging
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import anthropic
import grpc
import httpx
import openai
import pytest
from fastapi import FastAPI
from google import genai
from google.genai import errors as genai_errors
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bytespike.auth.v1 import auth_pb2, auth_pb2_grpc
from bytespike_common import keys
from bytespike_common.errors import AuthenticationFailed
from bytespike_common.logs import JsonFormatter
from bytespike_common.routing import matches_any
from bytespike_edge.control.auth import Authenticator, BadKeyGuard, ClientAddressMiddleware
from bytespike_edge.gateway import Gateway
from bytespike_edge.protocols import models
from bytespike_edge.settings import Settings
from tests.auth.harness import ENVIRON, SECRET, auth_service, make_key, serve, shipped_index

INDEX = shipped_index()
ALL_IDS = [m.id for m in INDEX.table.models]
pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
async def auth_channel(
    nats_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[grpc.aio.Channel]:
    database = tmp_path_factory.mktemp("models") / "auth.db"
    async with auth_service(f"sqlite:///{database}", nats_url) as channel:
        yield channel


def build_gateway(channel: grpc.aio.Channel, burst: int = 5) -> Gateway:
    authenticator = Authenticator(
        channel,
        SECRET.encode(),
        cache_size=1000,
        cache_ttl=60,
        negative_ttl=5,
        timeout=2,
        guard=BadKeyGuard(burst=burst, refill_seconds=60, max_clients=100),
    )
    return Gateway(
        Settings(key_hash_secret=SECRET),
        authenticator=authenticator,
        routes=SimpleNamespace(index=INDEX),  # type: ignore[arg-type]
        admitter=None,  # type: ignore[arg-type]
        upstream=None,  # type: ignore[arg-type]
        usage=None,  # type: ignore[arg-type]
        environ=ENVIRON,
    )


def build_app(gateway: Gateway) -> FastAPI:
    app = FastAPI()
    app.add_middleware(ClientAddressMiddleware)
    app.include_router(models.router)
    app.state.gateway = gateway
    return app


@pytest.fixture(scope="module")
async def base_url(auth_channel: grpc.aio.Channel) -> AsyncIterator[str]:
    async with serve(build_app(build_gateway(auth_channel))) as url:
        yield url


@pytest.fixture(scope="module")
async def capped_key(auth_channel: grpc.aio.Channel) -> str:
    """Account cap claude-* and gpt-5-5; key allow-list claude-haiku-4-5, gpt-5-5, gemini-*."""
    created = await make_key(
        auth_channel,
        "capped",
        account_allowed_models=["claude-*", "gpt-5-5"],
        allowed_models=["claude-haiku-4-5", "gpt-5-5", "gemini-*"],
    )
    return created.plaintext


CAPPED = ["claude-haiku-4-5", "gpt-5-5"]


async def test_openai_shape_lists_exactly_the_effective_set(
    base_url: str, capped_key: str, auth_channel: grpc.aio.Channel
) -> None:
    async with openai.AsyncOpenAI(base_url=f"{base_url}/v1", api_key=capped_key) as client:
        listed = [m async for m in client.models.list()]
        assert [m.id for m in listed] == CAPPED
        assert all(m.object == "model" and m.owned_by for m in listed)
        availability = {m.id: m.model_extra["available"] for m in listed}  # type: ignore[index]
        assert availability == {"claude-haiku-4-5": False, "gpt-5-5": True}
        one = await client.models.retrieve("gpt-5-5")
        assert one.id == "gpt-5-5" and one.created > 0
        with pytest.raises(openai.PermissionDeniedError) as denied:
            await client.models.retrieve("claude-opus-4-8")
        assert denied.value.body["type"] == "permission_error"  # type: ignore[index]
        with pytest.raises(openai.NotFoundError) as missing:
            await client.models.retrieve("no-such-model")
        assert missing.value.code == "model_not_found"
    everything = await make_key(auth_channel, "open")
    async with openai.AsyncOpenAI(base_url=f"{base_url}/v1", api_key=everything.plaintext) as c:
        assert [m.id async for m in c.models.list()] == ALL_IDS


async def test_groups_select_their_families(base_url: str, auth_channel: grpc.aio.Channel) -> None:
    for group, prefix in (("claude-default", "claude-"), ("gemini-default", "gemini-")):
        key = await make_key(auth_channel, f"acct-{group}", group=group)
        async with httpx.AsyncClient(base_url=base_url) as http:
            reply = await http.get(
                "/v1/models", headers={"authorization": f"Bearer {key.plaintext}"}
            )
        ids = [m["id"] for m in reply.json()["data"]]
        assert ids == [m for m in ALL_IDS if m.startswith(prefix)] and ids


async def test_anthropic_shape_pages_newest_first(
    base_url: str, auth_channel: grpc.aio.Channel
) -> None:
    key = await make_key(auth_channel, "claude-fans", group="claude-default")
    async with anthropic.AsyncAnthropic(
        base_url=base_url, api_key=key.plaintext, max_retries=0
    ) as client:
        first = await client.models.list(limit=2)
        assert first.has_more and first.first_id == first.data[0].id
        assert first.last_id == first.data[-1].id and len(first.data) == 2
        every = [m.id async for m in await client.models.list(limit=2)]
        assert sorted(every) == sorted(m for m in ALL_IDS if m.startswith("claude-"))
        info = await client.models.retrieve("claude-haiku-4-5")
        assert info.type == "model" and info.display_name == "Claude Haiku 4.5"
        assert info.created_at.tzinfo is not None
        with pytest.raises(anthropic.PermissionDeniedError) as denied:
            await client.models.retrieve("gpt-5-5")
        assert denied.value.body["error"]["type"] == "permission_error"  # type: ignore[index]
        with pytest.raises(anthropic.NotFoundError) as missing:
            await client.models.retrieve("no-such-model")
        assert missing.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    async with httpx.AsyncClient(base_url=base_url) as http:
        headers = {"x-api-key": key.plaintext}
        before = await http.get(
            "/v1/models", params={"before_id": every[-1], "limit": 1}, headers=headers
        )
        assert [m["id"] for m in before.json()["data"]] == [every[-2]]
        assert before.json()["has_more"] is True
        assert before.headers["request-id"].startswith("req_")
        for params in ({"limit": 0}, {"limit": "x"}, {"after_id": "nope"}):
            bad = await http.get("/v1/models", params=params, headers=headers)
            assert bad.status_code == 400
            assert bad.json()["error"]["type"] == "invalid_request_error"


async def test_the_shape_follows_the_headers(base_url: str, capped_key: str) -> None:
    async with httpx.AsyncClient(base_url=base_url) as http:
        bearer = {"authorization": f"Bearer {capped_key}"}
        as_openai = (await http.get("/v1/models", headers=bearer)).json()
        assert as_openai["object"] == "list"
        versioned = {**bearer, "anthropic-version": "2023-06-01"}
        as_anthropic = (await http.get("/v1/models", headers=versioned)).json()
        assert as_anthropic["data"][0]["type"] == "model" and "has_more" in as_anthropic
        refused = await http.get("/v1/models", headers={"x-api-key": "sk-byts-" + "x" * 43})
        assert refused.status_code == 401
        assert refused.json()["error"]["type"] == "authentication_error"
        refused = await http.get("/v1/models", headers={"authorization": "Bearer nope"})
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_api_key"


@pytest.mark.parametrize("version", [None, "v1beta"])
async def test_gemini_shape_through_google_genai(
    base_url: str, capped_key: str, version: str | None
) -> None:
    """google-genai 3.x calls /v1/models by default; v1beta is the documented path."""
    # An httpx client of our own keeps google-genai off its aiohttp path.
    async with httpx.AsyncClient() as http:
        options = genai.types.HttpOptions(
            base_url=base_url, api_version=version, httpx_async_client=http
        )
        await _gemini_checks(genai.Client(api_key=capped_key, http_options=options))


async def _gemini_checks(client: genai.Client) -> None:
    listed = [m async for m in await client.aio.models.list(config={"page_size": 1})]
    assert [m.name for m in listed] == [f"models/{m}" for m in CAPPED]
    assert all("generateContent" in (m.supported_actions or []) for m in listed)
    haiku = next(m for m in listed if m.name == "models/claude-haiku-4-5")
    assert haiku.input_token_limit == 200000 and haiku.output_token_limit == 64000
    assert "Unavailable" in (haiku.description or "")
    got = await client.aio.models.get(model="gpt-5-5")
    assert got.display_name == "GPT-5.5"
    with pytest.raises(genai_errors.ClientError) as denied:
        await client.aio.models.get(model="gemini-2-5-flash")  # in the key's list, not the cap
    assert denied.value.code == 403 and denied.value.status == "PERMISSION_DENIED"
    with pytest.raises(genai_errors.ClientError) as missing:
        await client.aio.models.get(model="no-such-model")
    assert missing.value.code == 404 and missing.value.status == "NOT_FOUND"


async def test_gemini_query_key_pages_and_errors(base_url: str, capped_key: str) -> None:
    async with httpx.AsyncClient(base_url=base_url) as http:
        page = (await http.get("/v1beta/models", params={"key": capped_key, "pageSize": 1})).json()
        assert len(page["models"]) == 1 and page["nextPageToken"]
        rest = await http.get(
            "/v1beta/models", params={"key": capped_key, "pageToken": page["nextPageToken"]}
        )
        assert [m["baseModelId"] for m in rest.json()["models"]] == CAPPED[1:]
        assert "nextPageToken" not in rest.json()
        huge = await http.get("/v1beta/models", params={"key": capped_key, "pageSize": 5000})
        assert len(huge.json()["models"]) == 2
        for params in ({"pageToken": "garbage"}, {"pageSize": "-1"}):
            bad = await http.get("/v1beta/models", params={"key": capped_key, **params})
            assert bad.status_code == 400 and bad.json()["error"]["status"] == "INVALID_ARGUMENT"
        anonymous = await http.get("/v1beta/models")
        assert anonymous.status_code == 401
        assert anonymous.json()["error"]["status"] == "UNAUTHENTICATED"
        model = await http.get(
            "/v1beta/models/models/gpt-5-5", headers={"x-goog-api-key": capped_key}
        )
        assert model.json()["name"] == "models/gpt-5-5" and model.json()["available"] is True


async def test_a_rotated_out_key_stops_at_its_revoke_at_without_any_push(
    auth_channel: grpc.aio.Channel,
) -> None:
    """No NATS subscription here: the cached principal's own revoke_at ends it on time."""
    gateway = build_gateway(auth_channel)
    created = await make_key(auth_channel, "rotating")
    await gateway.authenticate(created.plaintext)  # cached now
    admin = auth_pb2_grpc.AuthAdminServiceStub(auth_channel)
    await admin.RotateKey(
        auth_pb2.RotateKeyRequest(account="rotating", key_id=created.key.id, grace_seconds=1)
    )
    # What the rotation's push does; the next lookup brings the principal with revoke_at.
    gateway.authenticator.forget(keys.hash_key(SECRET.encode(), created.plaintext))
    principal = await gateway.authenticate(created.plaintext)
    assert principal.HasField("revoke_at")
    deadline = principal.revoke_at.ToDatetime(dt.UTC)
    await asyncio.sleep(max(0.0, (deadline - dt.datetime.now(dt.UTC)).total_seconds()) + 0.05)
    with pytest.raises(AuthenticationFailed):
        await gateway.authenticate(created.plaintext)


async def test_bad_keys_are_throttled_per_client_only(auth_channel: grpc.aio.Channel) -> None:
    app = build_app(build_gateway(auth_channel, burst=3))
    good = (await make_key(auth_channel, "victim")).plaintext

    def client(address: str) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=app, client=(address, 1234))
        return httpx.AsyncClient(transport=transport, base_url="http://edge")

    async def status(http: httpx.AsyncClient, key: str) -> int:
        reply = await http.get("/v1/models", headers={"authorization": f"Bearer {key}"})
        return reply.status_code

    async with client("10.0.0.1") as attacker, client("10.0.0.2") as bystander:
        assert await status(attacker, good) == 200  # cached as good before the attack
        guesses = [f"sk-byts-{i:043d}" for i in range(5)]
        assert [await status(attacker, g) for g in guesses] == [401, 401, 401, 429, 429]
        limited = await attacker.get("/v1/models", headers={"authorization": "Bearer junk"})
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
        assert limited.json()["error"]["type"] == "rate_limit_exceeded"
        # The attacker's own good key still works; another client is not affected at all.
        assert await status(attacker, good) == 200
        assert await status(bystander, guesses[0]) == 401
        assert await status(bystander, good) == 200


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    group=st.sampled_from(["default", "claude-default", "gemini-default", "missing-group"]),
    cap=st.lists(st.sampled_from(["claude-*", "gpt-*", "gemini-2-5-flash", "*", "mock-echo"])),
    allow=st.lists(st.sampled_from(["claude-haiku-4-5", "gpt-5-*", "gemini-*", "kimi-k2-6"])),
)
def test_visible_is_group_and_cap_and_allow_list(
    group: str, cap: list[str], allow: list[str]
) -> None:
    gateway: Any = SimpleNamespace(
        index=INDEX,
        provider_available=lambda provider: True,
        allowed=lambda p, m: INDEX.allowed(
            m, p.group, p.account_allowed_models, p.key_allowed_models
        ),
    )
    principal = auth_pb2.Principal(
        group=group, account_allowed_models=cap, key_allowed_models=allow
    )
    patterns = list(INDEX.groups[group].model_patterns) if group in INDEX.groups else []
    expected = [
        m
        for m in ALL_IDS
        if matches_any(patterns, m)
        and (not cap or matches_any(cap, m))
        and (not allow or matches_any(allow, m))
    ]
    assert [item.model.id for item in models.visible(gateway, principal)] == expected


async def test_keys_never_reach_the_log_output(
    base_url: str, capped_key: str, auth_channel: grpc.aio.Channel
) -> None:
    """Everything this process logs at DEBUG during good and failed authentications, key
    creation, and a careless log line, goes through the service formatter: no key survives."""
    output = io.StringIO()
    handler = logging.StreamHandler(output)
    handler.setFormatter(JsonFormatter("edge"))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    bad = keys.generate_key()
    try:
        created = await make_key(auth_channel, "logged")
        async with httpx.AsyncClient(base_url=base_url) as http:
            for key in (capped_key, bad, created.plaintext):
                await http.get("/v1/models", headers={"authorization": f"Bearer {key}"})
                await http.get("/v1/models", headers={"x-api-key": key})
                await http.get("/v1beta/models", params={"key": key})
                await http.get("/v1/models/claude-opus-4-8", headers={"x-goog-api-key": key})
        logging.getLogger("careless").warning("the caller sent %s", created.plaintext)
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    text = output.getvalue()
    for key in (capped_key, bad, created.plaintext):
        assert key not in text and key[12:] not in text
    assert f"the caller sent {created.plaintext[:12]}…" in text
