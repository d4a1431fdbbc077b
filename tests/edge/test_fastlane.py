"""The fast lane answers exactly as the FastAPI routes it bypasses would.

Each request goes once through the public app (`EdgeApp`, whose lane takes the generation
routes) and once through FastAPI alone (`FastAPI.__call__` on the same app: routing,
dependencies, exception handlers, the client-address and metrics middlewares); status,
error body, headers, the request metric and the client address seen by authentication
must match. What the lane serves successfully is covered end to end by tests/integration.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from types import SimpleNamespace
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from starlette.types import Receive, Scope, Send

from bytespike.auth.v1 import auth_pb2
from bytespike_common.errors import AuthenticationFailed
from bytespike_edge.app import create_app
from bytespike_edge.control.auth import client_address
from bytespike_edge.fastlane import EdgeApp, match
from bytespike_edge.gateway import Gateway
from bytespike_edge.settings import Settings
from tests.auth.harness import ENVIRON, SECRET, shipped_index

GOOD, BOOM = "good-key", "boom-key"
LIMIT = 4096
pytestmark = pytest.mark.timeout(30)


class FakeAuthenticator:
    """A good key, a key whose lookup hits a bug, and every other key refused."""

    def __init__(self) -> None:
        self.addresses: list[str | None] = []

    async def authenticate(self, key: str | None) -> auth_pb2.Principal:
        self.addresses.append(client_address.get())
        if key == BOOM:
            raise RuntimeError("a bug in authentication")
        if key != GOOD:
            raise AuthenticationFailed("Invalid API key.", code="invalid_api_key")
        return auth_pb2.Principal(account_id="acct", key_id="key", group="default")


@pytest.fixture(autouse=True)
def registry(edge_metrics: CollectorRegistry) -> CollectorRegistry:
    """Every test here counts its requests in a registry of its own (tests/conftest.py)."""
    return edge_metrics


@pytest.fixture
def app() -> EdgeApp:
    settings = Settings(key_hash_secret=SECRET, max_body_bytes=LIMIT)
    edge = create_app(settings)
    assert isinstance(edge, EdgeApp)
    edge.state.gateway = Gateway(
        settings,
        authenticator=FakeAuthenticator(),  # type: ignore[arg-type]
        routes=SimpleNamespace(index=shipped_index(ENVIRON)),  # type: ignore[arg-type]
        admitter=None,  # type: ignore[arg-type]
        upstream=None,  # type: ignore[arg-type]
        # Read at every metrics collection (gauges), which these tests trigger.
        usage=SimpleNamespace(pending=0, published=0),  # type: ignore[arg-type]
        environ=ENVIRON,
    )
    return edge


def _fastapi_only(app: EdgeApp) -> Callable[[Scope, Receive, Send], Any]:
    async def serve(scope: Scope, receive: Receive, send: Send) -> None:
        await FastAPI.__call__(app, scope, receive, send)

    return serve


@pytest.fixture
async def clients(app: EdgeApp) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    lane = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://edge")
    # Starlette re-raises what it answered as a 500 (for the server to log): not a failure.
    fastapi_only = httpx.ASGITransport(app=_fastapi_only(app), raise_app_exceptions=False)
    plain = httpx.AsyncClient(transport=fastapi_only, base_url="http://edge")
    async with lane, plain:
        yield lane, plain


def _requests_total(registry: CollectorRegistry, protocol: str, route: str, status: int) -> float:
    labels = {"protocol": protocol, "route": route, "model": "", "status": str(status)}
    return registry.get_sample_value("bytespike_requests_total", labels) or 0.0


def _normalised(response: httpx.Response) -> tuple[int, Any, list[str]]:
    """Status, body and header names, with this response's request id made generic."""
    request_id = response.headers.get("x-request-id") or response.headers.get("request-id")
    text = response.text.replace(request_id, "<request-id>") if request_id else response.text
    names = sorted(
        name for name in response.headers if name not in {"content-length", "date", "server"}
    )
    return response.status_code, orjson.loads(text), names


OPENAI_BODY = {"model": "gpt-5-5", "messages": [{"role": "user", "content": "hi"}]}
ANTHROPIC_BODY = {**OPENAI_BODY, "model": "claude-haiku-4-5", "max_tokens": 5}
GEMINI_BODY = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
BEARER = {"authorization": f"Bearer {GOOD}"}

# (path, headers, body, expected status, protocol label, route template)
CASES: list[tuple[str, dict[str, str], bytes, int, str, str]] = [
    ("/v1/chat/completions", BEARER, b"{", 400, "openai", "/v1/chat/completions"),
    ("/v1/chat/completions", BEARER, b"[1]", 400, "openai", "/v1/chat/completions"),
    ("/v1/chat/completions", BEARER, b"", 400, "openai", "/v1/chat/completions"),
    (
        "/v1/chat/completions",
        BEARER,
        b"x" * (LIMIT + 1),
        413,
        "openai",
        "/v1/chat/completions",
    ),
    ("/v1/chat/completions", {}, orjson.dumps(OPENAI_BODY), 401, "openai", "/v1/chat/completions"),
    (
        "/v1/chat/completions",
        {"authorization": "Bearer wrong"},
        orjson.dumps(OPENAI_BODY),
        401,
        "openai",
        "/v1/chat/completions",
    ),
    (
        "/v1/chat/completions",
        BEARER,
        orjson.dumps({**OPENAI_BODY, "model": "no-such-model"}),
        404,
        "openai",
        "/v1/chat/completions",
    ),
    (
        "/v1/chat/completions",
        BEARER,
        orjson.dumps({"model": "gpt-5-5"}),
        400,
        "openai",
        "/v1/chat/completions",
    ),
    (
        "/v1/chat/completions",
        {"authorization": f"Bearer {BOOM}"},
        orjson.dumps(OPENAI_BODY),
        500,
        "openai",
        "/v1/chat/completions",
    ),
    ("/v1/messages", {"x-api-key": GOOD}, b"{", 400, "anthropic", "/v1/messages"),
    (
        "/v1/messages?beta=true",
        {"x-api-key": "wrong"},
        orjson.dumps(ANTHROPIC_BODY),
        401,
        "anthropic",
        "/v1/messages",
    ),
    (
        "/v1/messages",
        {"x-api-key": GOOD},
        orjson.dumps({**ANTHROPIC_BODY, "model": "no-such-model"}),
        404,
        "anthropic",
        "/v1/messages",
    ),
    (
        "/v1/messages",
        {"x-api-key": BOOM},
        orjson.dumps(ANTHROPIC_BODY),
        500,
        "anthropic",
        "/v1/messages",
    ),
    (
        "/v1/messages/count_tokens",
        {"x-api-key": GOOD},
        orjson.dumps({"messages": []}),
        400,
        "anthropic",
        "/v1/messages/count_tokens",
    ),
    (
        "/v1beta/models/no-such-model:generateContent",
        {"x-goog-api-key": GOOD},
        orjson.dumps(GEMINI_BODY),
        404,
        "gemini",
        "/v1beta/models/{target:path}",
    ),
    (
        "/v1beta/models/gemini-x:noSuchMethod",
        {"x-goog-api-key": GOOD},
        orjson.dumps(GEMINI_BODY),
        404,
        "gemini",
        "/v1beta/models/{target:path}",
    ),
    (
        "/v1/models/gemini-x:streamGenerateContent?key=wrong",
        {},
        orjson.dumps(GEMINI_BODY),
        401,
        "gemini",
        "/v1/models/{target:path}",
    ),
    (
        "/v1beta/models/gemini-x:generateContent",
        {"x-goog-api-key": GOOD},
        b"{",
        400,
        "gemini",
        "/v1beta/models/{target:path}",
    ),
    (
        "/v1beta/models/gemini-x:generateContent",
        {"x-goog-api-key": BOOM},
        orjson.dumps(GEMINI_BODY),
        500,
        "gemini",
        "/v1beta/models/{target:path}",
    ),
]


@pytest.mark.parametrize(("path", "headers", "body", "status", "protocol", "route"), CASES)
async def test_errors_match_the_fastapi_path(
    registry: CollectorRegistry,
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient],
    path: str,
    headers: dict[str, str],
    body: bytes,
    status: int,
    protocol: str,
    route: str,
) -> None:
    answers = []
    for client in clients:
        before = _requests_total(registry, protocol, route, status)
        response = await client.post(path, headers=headers, content=body)
        assert response.status_code == status, response.text
        # Counted once, under the route template and protocol FastAPI's routes get.
        assert _requests_total(registry, protocol, route, status) - before == 1
        answers.append(_normalised(response))
    lane, plain = answers
    assert lane == plain


async def test_authentication_sees_the_client_address(
    app: EdgeApp, clients: tuple[httpx.AsyncClient, httpx.AsyncClient]
) -> None:
    authenticator = app.state.gateway.authenticator
    for client in clients:
        await client.post("/v1/chat/completions", headers=BEARER, content=b"{}")
    # httpx's ASGI transport calls from 127.0.0.1; outside a request no address is set.
    assert authenticator.addresses == ["127.0.0.1", "127.0.0.1"]
    assert client_address.get() is None


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/chat/completions"),  # 405 from FastAPI's route
        ("POST", "/v1/chat/completions/"),  # FastAPI's trailing-slash redirect
        ("POST", "/v2/messages"),  # protocol-shaped 404
        ("GET", "/v1beta/models/no-such-model"),  # model lookup, not generation
    ],
)
async def test_what_the_lane_does_not_take_is_fastapis(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient],
    method: str,
    path: str,
) -> None:
    lane, plain = [
        await client.request(method, path, headers=BEARER, content=b"{}") for client in clients
    ]
    assert lane.status_code == plain.status_code != 200
    assert lane.headers.get("location") == plain.headers.get("location")


def test_match_names_the_route_and_its_target() -> None:
    def route_of(path: str) -> tuple[str, dict[str, str]] | None:
        matched = match(path)
        return (matched[0].template, matched[1]) if matched else None

    assert route_of("/v1/chat/completions") == ("/v1/chat/completions", {})
    assert route_of("/v1/messages") == ("/v1/messages", {})
    assert route_of("/v1/messages/count_tokens") == ("/v1/messages/count_tokens", {})
    assert route_of("/v1beta/models/gemini-x:generateContent") == (
        "/v1beta/models/{target:path}",
        {"target": "gemini-x:generateContent"},
    )
    assert route_of("/v1/models/models/g:countTokens") == (
        "/v1/models/{target:path}",
        {"target": "models/g:countTokens"},
    )
    assert route_of("/v1/chat/completions/") is None
    assert route_of("/v1/models") is None
    assert route_of("/healthz") is None
