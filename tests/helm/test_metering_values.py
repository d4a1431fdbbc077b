"""Metering's chart wiring: the router for rate cards, Redis for several replicas."""

from __future__ import annotations

import helm_python as helm
import pytest

from tests.helm.test_chart import CHART, env_of, load_values, render


def test_metering_reads_rate_cards_from_the_router() -> None:
    release = render(load_values(CHART / "ci" / "default.yaml"))
    env = env_of(release.container("metering"))
    assert env["BYTESPIKE_METERING_ROUTER_TARGET"]["value"].endswith(":50052")
    assert "bytespike-router" in env["BYTESPIKE_METERING_ROUTER_TARGET"]["value"]
    assert "BYTESPIKE_METERING_REDIS_URL" not in env


def test_several_metering_replicas_need_redis() -> None:
    values = load_values(CHART / "ci" / "production.yaml")
    values["metering"] = {**values.get("metering", {}), "replicaCount": 2}
    with pytest.raises(helm.HelmRenderError, match="redisUrl"):
        render(values)
    values["metering"]["redisUrl"] = "redis://redis:6379/0"
    env = env_of(render(values).container("metering"))
    assert env["BYTESPIKE_METERING_REDIS_URL"]["value"] == "redis://redis:6379/0"
