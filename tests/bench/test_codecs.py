"""The translation benchmark runs, and passthrough relaying re-encodes no JSON."""

from __future__ import annotations

from bench.codecs import P, pair_costs, passthrough_serialisations


def test_passthrough_streams_are_never_reencoded() -> None:
    assert passthrough_serialisations() == 0


def test_every_pair_is_measured() -> None:
    for client in P:
        for upstream in P:
            costs = pair_costs(client, upstream, seconds=0.0)
            assert set(costs) == {"request_us", "response_us", "stream_us"}
            assert all(value > 0 for value in costs.values())
