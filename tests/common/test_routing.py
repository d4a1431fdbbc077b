from __future__ import annotations

import random
from collections import Counter

from bytespike.router.v1 import router_pb2
from bytespike_common.routing import RouteIndex, order_deployments


def _table() -> router_pb2.RouteTable:
    return router_pb2.RouteTable(
        providers=[router_pb2.Provider(id="p")],
        models=[
            router_pb2.Model(
                id="claude-x",
                aliases=["cx"],
                deployments=[router_pb2.Deployment(id="d", provider_id="p")],
            ),
            router_pb2.Model(id="gpt-y"),
        ],
        groups=[
            router_pb2.Group(name="default", model_patterns=["*"]),
            router_pb2.Group(name="claude-default", model_patterns=["claude-*"]),
        ],
    )


def test_resolve_aliases_and_gemini_prefix() -> None:
    index = RouteIndex(_table())
    assert index.resolve("cx").id == "claude-x"  # type: ignore[union-attr]
    assert index.resolve("models/claude-x").id == "claude-x"  # type: ignore[union-attr]
    assert index.resolve("nope") is None


def test_effective_models_are_group_account_and_key_intersection() -> None:
    index = RouteIndex(_table())
    assert index.allowed("gpt-y", "default")
    assert not index.allowed("gpt-y", "claude-default")
    assert not index.allowed("claude-x", "unknown-group")
    assert not index.allowed("claude-x", "default", account_allowed=["gpt-*"])
    assert not index.allowed("claude-x", "default", key_allowed=["gpt-y"])
    assert index.allowed("claude-x", "claude-default", ["claude-*"], ["claude-x"])


def test_order_is_priority_then_weighted() -> None:
    deployments = [
        router_pb2.Deployment(id="low-a", priority=1, weight=1),
        router_pb2.Deployment(id="high-heavy", priority=0, weight=3),
        router_pb2.Deployment(id="high-light", priority=0, weight=1),
    ]
    rng = random.Random(7)
    firsts = Counter(order_deployments(deployments, rng)[0].id for _ in range(4000))
    assert set(firsts) == {"high-heavy", "high-light"}
    assert 2.5 < firsts["high-heavy"] / firsts["high-light"] < 3.5
    assert all(order_deployments(deployments, rng)[-1].id == "low-a" for _ in range(50))
