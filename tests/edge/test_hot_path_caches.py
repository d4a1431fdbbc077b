"""What the request path now computes once instead of per request still answers the same:
route plans, group access and targets per snapshot, upstream headers and timeouts, and ids."""

from __future__ import annotations

import random
import re
from collections import Counter
from types import SimpleNamespace

import pytest
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message

from bytespike.router.v1 import router_pb2
from bytespike_common.errors import ProviderNotConfigured
from bytespike_common.ids import new_id, request_id
from bytespike_common.routing import RouteIndex
from bytespike_edge.exchange import JsonAnswer
from bytespike_edge.gateway import Gateway
from bytespike_edge.http_io import header, header_values
from bytespike_edge.protocols import anthropic
from bytespike_edge.settings import Settings
from bytespike_edge.upstream.aiohttp_client import AiohttpUpstream
from bytespike_edge.upstream.client import Timeouts
from bytespike_edge.upstream.wire import request_headers


def _table() -> router_pb2.RouteTable:
    return router_pb2.RouteTable(
        providers=[
            router_pb2.Provider(
                id="p", timeouts=router_pb2.Timeouts(connect_ms=250, first_byte_ms=9000)
            ),
            router_pb2.Provider(id="q", credential_env="Q_KEY"),
        ],
        models=[
            router_pb2.Model(
                id="single",
                deployments=[
                    router_pb2.Deployment(id="s-backup", provider_id="p", priority=1),
                    router_pb2.Deployment(id="s-main", provider_id="p", priority=0),
                    router_pb2.Deployment(id="s-gone", provider_id="missing"),
                ],
            ),
            router_pb2.Model(
                id="weighted",
                deployments=[
                    router_pb2.Deployment(id="heavy", provider_id="p", weight=3),
                    router_pb2.Deployment(id="light", provider_id="q", weight=1),
                    router_pb2.Deployment(id="never-first", provider_id="q", weight=0),
                ],
            ),
        ],
        groups=[router_pb2.Group(name="gpt", model_patterns=["w*"])],
    )


def test_a_plan_without_choices_is_fixed_and_a_fresh_list() -> None:
    index = RouteIndex(_table())
    model = index.models["single"]
    first = index.plan(model)
    assert [d.id for d in first] == ["s-main", "s-backup"]
    first.clear()  # a caller's list is its own
    assert [d.id for d in index.plan(model)] == ["s-main", "s-backup"]


def test_weighted_order_is_drawn_per_plan() -> None:
    index = RouteIndex(_table())
    model = index.models["weighted"]
    rng = random.Random(3)
    plans = [[d.id for d in index.plan(model, rng)] for _ in range(4000)]
    firsts = Counter(plan[0] for plan in plans)
    assert set(firsts) == {"heavy", "light"}
    assert 2.5 < firsts["heavy"] / firsts["light"] < 3.5
    assert all(plan[-1] == "never-first" and len(plan) == 3 for plan in plans)


def test_a_model_message_from_elsewhere_is_planned_from_itself() -> None:
    index = RouteIndex(_table())
    own = router_pb2.Model(
        id="single", deployments=[router_pb2.Deployment(id="other", provider_id="q")]
    )
    assert [d.id for d in index.plan(own)] == ["other"]


def _gateway(routes: SimpleNamespace, environ: dict[str, str]) -> Gateway:
    return Gateway(
        Settings(key_hash_secret=b"x" * 32),
        authenticator=None,  # type: ignore[arg-type]
        routes=routes,  # type: ignore[arg-type]
        admitter=None,  # type: ignore[arg-type]
        upstream=None,  # type: ignore[arg-type]
        usage=None,  # type: ignore[arg-type]
        environ=environ,
    )


def test_targets_are_built_once_per_route_table() -> None:
    routes = SimpleNamespace(index=RouteIndex(_table()))
    gateway = _gateway(routes, {"Q_KEY": "secret"})
    model = routes.index.models["weighted"]
    first = {t.deployment.id: t for t in gateway.targets(model)}
    assert first["light"].credential == "secret" and first["heavy"].credential == ""
    assert first["light"].timeouts == Timeouts(connect=5.0, first_byte=120.0, total=None)
    again = {t.deployment.id: t for t in gateway.targets(model)}
    assert all(again[name] is first[name] for name in first)
    single = gateway.targets(routes.index.models["single"])
    assert [t.deployment.id for t in single] == ["s-main", "s-backup"]
    assert single[0].timeouts == Timeouts(connect=0.25, first_byte=9.0, total=None)
    # A new table: new targets, from its own deployments.
    routes.index = RouteIndex(_table())
    fresh = gateway.targets(routes.index.models["weighted"])
    assert all(t is not first[t.deployment.id] for t in fresh)
    assert {id(t.deployment) for t in fresh} == {
        id(d) for d in routes.index.models["weighted"].deployments
    }


def test_a_missing_credential_is_asked_for_again_on_every_request() -> None:
    routes = SimpleNamespace(index=RouteIndex(_table()))
    environ: dict[str, str] = {}
    gateway = _gateway(routes, environ)
    model = router_pb2.Model(
        id="q-only", deployments=[router_pb2.Deployment(id="q-1", provider_id="q")]
    )
    with pytest.raises(ProviderNotConfigured, match="Q_KEY"):
        gateway.targets(model)
    environ["Q_KEY"] = "now-set"
    assert [t.credential for t in gateway.targets(model)] == ["now-set"]


def test_group_access_is_the_same_asked_twice() -> None:
    index = RouteIndex(_table())
    for _ in range(2):
        assert index.allowed("weighted", "gpt")
        assert not index.allowed("single", "gpt")
        assert not index.allowed("weighted", "no-such-group")
        assert not index.allowed("weighted", "gpt", key_allowed=["single"])


def test_upstream_headers_are_a_new_dict_per_request() -> None:
    provider = router_pb2.Provider(
        id="a", protocol=router_pb2.PROTOCOL_ANTHROPIC, headers={"anthropic-version": "1"}
    )
    headers = request_headers(provider, "secret")
    assert headers == {
        "content-type": "application/json",
        "accept-encoding": "identity",
        "anthropic-version": "1",
        "x-api-key": "secret",
    }
    headers["anthropic-beta"] = "x"
    assert "anthropic-beta" not in request_headers(provider, "secret")
    assert "x-api-key" not in request_headers(provider, "")
    # A reloaded table's provider (another message, same id) is read afresh.
    reloaded = router_pb2.Provider(id="a", protocol=router_pb2.PROTOCOL_GEMINI)
    assert request_headers(reloaded, "secret")["x-goog-api-key"] == "secret"


async def test_client_timeouts_follow_each_attempts_limits() -> None:
    upstream = AiohttpUpstream(10)
    try:
        usual = upstream._client_timeout(Timeouts(connect=5, first_byte=120, total=None))
        again = upstream._client_timeout(Timeouts(connect=5, first_byte=120, total=None))
        cut = upstream._client_timeout(Timeouts(connect=0.5, first_byte=0.5, total=30))
    finally:
        await upstream.aclose()
    assert usual is again
    assert (usual.sock_connect, usual.sock_read, usual.total) == (5, 120, None)
    assert (cut.sock_connect, cut.sock_read, cut.total) == (0.5, 0.5, 30)


def test_ids_keep_their_shape_and_do_not_repeat() -> None:
    ids = {request_id() for _ in range(20_000)}
    assert len(ids) == 20_000
    assert all(re.fullmatch(r"req_[0-9a-f]{11,}[0-9a-f]{20}", i) for i in ids)
    assert re.fullmatch(r"hold_[0-9a-f]{31,}", new_id("hold"))


@pytest.mark.parametrize(
    "headers",
    [{"x-request-id": "req_1"}, {"x-request-id": "req_2", "x-bytespike-warning": "dropped: n"}],
)
async def test_a_json_answer_is_what_starlette_would_send(headers: dict[str, str]) -> None:
    """`JsonAnswer` skips starlette's generic header handling, not what goes out."""
    body = b'{"id":"chatcmpl-1","choices":[]}'
    lean = JsonAnswer(body, [(k.encode(), v.encode()) for k, v in headers.items()])
    plain = Response(body, 200, headers, media_type="application/json")
    sent: list[list[Message]] = [[], []]
    for response, out in zip((lean, plain), sent, strict=True):

        async def send(message: Message, out: list[Message] = out) -> None:
            out.append(message)

        await response({"type": "http"}, _no_receive, send)
    assert sent[0] == sent[1]
    assert sent[0][0]["headers"][-2:] == [
        (b"content-length", str(len(body)).encode()),
        (b"content-type", b"application/json"),
    ]


async def _no_receive() -> Message:
    raise AssertionError("an answer reads nothing")


def test_raw_header_lookups_answer_what_starlette_headers_would() -> None:
    raw = [
        (b"authorization", b"Bearer sk-byts-1"),
        (b"anthropic-beta", b"prompt-caching-2024-07-31, made-up-beta"),
        (b"content-length", b"12"),
        (b"anthropic-beta", b"effort-2025-11-24"),
        (b"x-caf\xe9", b"caf\xe9"),
    ]
    request = Request({"type": "http", "headers": raw})
    for name in ("authorization", "anthropic-beta", "content-length", "x-caf\xe9", "absent"):
        assert header(request, name.encode("latin-1")) == request.headers.get(name)
        assert header_values(request, name.encode("latin-1")) == request.headers.getlist(name)
    # Allow-listed betas go upstream, from every header line; unknown ones do not.
    assert anthropic._forward_headers(request) == {
        "anthropic-beta": "prompt-caching-2024-07-31,effort-2025-11-24"
    }
    assert anthropic._forward_headers(Request({"type": "http", "headers": raw[:1]})) == {}
