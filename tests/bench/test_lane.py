"""`python -m bench.lane`: the edge's lane in-process, answering what the upstream said."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from bench.lane import measure


async def test_the_lane_serves_every_request_and_times_them(
    edge_metrics: CollectorRegistry,
) -> None:
    # `measure` refuses to time a lane whose first answer differs from the upstream's.
    result = await measure(requests=50, repeats=2)
    # One usage event per request: the check request and the two timed runs.
    assert result["usage_events"] == 1 + 2 * 50
    assert 0 < result["min_us"] <= result["median_us"]
    labels = {"protocol": "openai", "route": "/v1/chat/completions", "model": "gpt-5-5"}
    assert (
        edge_metrics.get_sample_value("bytespike_requests_total", {**labels, "status": "200"})
        == 101
    )
