"""Prometheus metrics from the running suite: what a request adds, and labels stay bounded.

Values are read as deltas from the process registry (other tests share it); names and
label values are checked on a real scrape of the metrics server.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from tests.observability.conftest import MODEL, Suite

CHAT = {"protocol": "openai", "route": "/v1/chat/completions", "model": MODEL}
ROUTES = {"/v1/chat/completions", "/v1/models", "unmatched"}


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


class Delta:
    """Samples before and after a block of requests."""

    def __init__(self, *samples: tuple[str, dict[str, str]]) -> None:
        self._samples = samples
        self._before = [value(name, **labels) for name, labels in samples]

    def __call__(self) -> list[float]:
        return [
            value(name, **labels) - before
            for (name, labels), before in zip(self._samples, self._before, strict=True)
        ]


async def _eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


async def test_a_completion_and_a_stream_are_counted(suite: Suite) -> None:
    tokens = {"model": MODEL, "provider": "fakeai"}
    delta = Delta(
        ("bytespike_requests_total", {**CHAT, "status": "200"}),
        (
            "bytespike_request_duration_seconds_count",
            {"protocol": "openai", "model": MODEL, "stream": "true"},
        ),
        (
            "bytespike_request_duration_seconds_count",
            {"protocol": "openai", "model": MODEL, "stream": "false"},
        ),
        ("bytespike_gateway_overhead_seconds_count", {"protocol": "openai", "stream": "false"}),
        ("bytespike_upstream_duration_seconds_count", {"provider": "fakeai", "stream": "true"}),
        ("bytespike_time_to_first_token_seconds_count", {"protocol": "openai", "model": MODEL}),
        ("bytespike_tokens_total", {**tokens, "type": "input"}),
        ("bytespike_tokens_total", {**tokens, "type": "cache_read"}),
        ("bytespike_tokens_total", {**tokens, "type": "output"}),
        ("bytespike_tokens_total", {**tokens, "type": "reasoning"}),
        ("bytespike_usage_published_total", {}),
    )
    overhead_before = value(
        "bytespike_gateway_overhead_seconds_sum", protocol="openai", stream="false"
    )
    duration_before = value(
        "bytespike_request_duration_seconds_sum", protocol="openai", model=MODEL, stream="false"
    )
    assert (await suite.chat()).status_code == 200
    assert (await suite.chat(stream=True)).status_code == 200
    await _eventually(lambda: delta()[-1] >= 2)

    # 17 prompt tokens of which 5 cached (input excludes cache), 9 output incl. 3 reasoning.
    assert delta()[:-1] == [2, 1, 1, 1, 1, 1, 2 * 12, 2 * 5, 2 * 9, 2 * 3]
    # Admitted from an admission lease: metering's Lease RPC is counted like any other.
    lease_calls = value(
        "bytespike_grpc_server_handled_total",
        grpc_service="bytespike.metering.v1.MeteringService",
        grpc_method="Lease",
        grpc_code="OK",
    )
    assert lease_calls >= 1
    overhead = value("bytespike_gateway_overhead_seconds_sum", protocol="openai", stream="false")
    duration = value(
        "bytespike_request_duration_seconds_sum", protocol="openai", model=MODEL, stream="false"
    )
    assert 0 < overhead - overhead_before < duration - duration_before
    assert value("bytespike_circuit_state", deployment=f"{MODEL}/fakeai/0") == 0


def _all_settled() -> bool:
    """Every usage event the edge published has been settled (both run in this process)."""
    published = value("bytespike_usage_published_total")
    return value("bytespike_settlement_lag_seconds_count") >= published


async def test_settlement_counts_credits(suite: Suite) -> None:
    # Earlier tests' events may still be settling: their charges must not land in the delta.
    await _eventually(_all_settled)
    delta = Delta(
        ("bytespike_credits_charged_total", {"model": MODEL}),
        ("bytespike_settlement_lag_seconds_count", {}),
    )
    assert (await suite.chat()).status_code == 200
    await _eventually(lambda: delta()[1] >= 1)
    charged, settled = delta()
    # Per 1M tokens: input 1, output 2, cache_read 0.5 credits -> 32.5 micro-credits (rounded).
    assert 32 <= charged <= 33 and settled == 1


async def test_failures_are_counted_by_cause_and_reason(suite: Suite) -> None:
    limited = await suite.create_key("one-per-minute", rpm=1)
    delta = Delta(
        (
            "bytespike_upstream_errors_total",
            {
                "provider": "fakeai",
                "deployment": f"{MODEL}/fakeai/0",
                "cause": "http_status",
                "status": "500",
            },
        ),
        ("bytespike_admission_denials_total", {"reason": "rate_limited"}),
        (
            "bytespike_requests_total",
            {"protocol": "openai", "route": "/v1/chat/completions", "model": "", "status": "404"},
        ),
        (
            "bytespike_requests_total",
            {"protocol": "openai", "route": "/v1/chat/completions", "model": "", "status": "401"},
        ),
        (
            "bytespike_requests_total",
            {"protocol": "openai", "route": "unmatched", "model": "", "status": "404"},
        ),
    )
    async with httpx.AsyncClient(base_url=suite.vendor_url) as vendor:
        await vendor.post(
            "/_control/script", json=[{"status": 500, "json": {"error": {"message": "boom"}}}]
        )
        failed = await suite.chat()
        assert failed.status_code == 500, failed.text
        async with httpx.AsyncClient(base_url=suite.edge_url) as edge:
            await edge.get("/v1/../../etc/passwd-like/raw-path-42")
    assert (await suite.chat(limited)).status_code == 200
    assert (await suite.chat(limited)).status_code == 429
    assert (await suite.chat(model="made-up-model-name-4711")).status_code == 404
    assert (await suite.chat("sk-byts-" + "x" * 43)).status_code == 401
    assert delta() == [1, 1, 1, 1, 1]


async def test_label_values_are_bounded(suite: Suite) -> None:
    await suite.chat(model="made-up-model-name-4711")
    async with httpx.AsyncClient(base_url=suite.edge_url) as edge:
        await edge.get("/v1/../../etc/passwd-like/raw-path-42")
    families = list(text_string_to_metric_families(await suite.scrape()))
    ours = [f for f in families if f.name.startswith("bytespike_")]
    assert ours
    for family in ours:
        for sample in family.samples:
            labels = sample.labels
            assert "made-up-model-name-4711" not in labels.values()
            assert not any("sk-byts" in v or "raw-path" in v for v in labels.values())
            assert not {"key_id", "account_id", "account", "key", "path"} & labels.keys()
            if "route" in labels:
                assert labels["route"] in ROUTES, labels
            # Edge request metrics (other families in this process's registry come from
            # other services' in-process tests, with their own catalogs).
            if labels.get("model") and "protocol" in labels:
                assert labels["model"] == MODEL, labels
