"""Every metric a Grafana dashboard queries is exported, with samples, by the running suite.

The PromQL of every panel and variable in helm/bytespike/dashboards/*.json is searched for
`bytespike_…` names; histogram `_bucket/_sum/_count` and counter `_total` names count as
the family they belong to. Traffic that exercises every family (a completion, a stream, an
upstream failure, a denied admission, settlement) is driven first, then /metrics is scraped.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from bytespike_common import telemetry
from bytespike_edge import observability
from tests.observability.conftest import MODEL, Suite

DASHBOARDS = Path(__file__).resolve().parents[2] / "helm" / "bytespike" / "dashboards"
METRIC_NAME = re.compile(r"\bbytespike_[a-z0-9_]+\b")


def _queries(node: Any) -> Iterator[str]:
    """Every PromQL string in a dashboard: panel targets and query variables."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in {"expr", "query", "definition"} and isinstance(value, str):
                yield value
            else:
                yield from _queries(value)
    elif isinstance(node, list):
        for item in node:
            yield from _queries(item)


def queried_metrics() -> dict[str, set[str]]:
    """Metric name -> the dashboards that query it."""
    found: dict[str, set[str]] = {}
    for path in sorted(DASHBOARDS.glob("*.json")):
        for query in _queries(json.loads(path.read_text())):
            for name in METRIC_NAME.findall(query):
                found.setdefault(name, set()).add(path.name)
    return found


def sample_names(exposition: str, *, with_samples: bool) -> set[str]:
    """Names a PromQL query can use, from a /metrics text (families with samples only)."""
    names: set[str] = set()
    for family in text_string_to_metric_families(exposition):
        if with_samples and not family.samples:
            continue
        names |= {s.name for s in family.samples}
        if family.type == "counter":
            names.add(f"{family.name}_total")
        elif family.type == "histogram":
            names |= {f"{family.name}_{suffix}" for suffix in ("bucket", "sum", "count")}
        else:
            names.add(family.name)
    return names


def test_dashboards_query_only_metrics_the_telemetry_module_defines() -> None:
    defined = sample_names(generate_latest(REGISTRY).decode(), with_samples=False)
    queried = queried_metrics()
    assert {"bytespike_gateway_overhead_seconds_bucket", "bytespike_circuit_state"} <= set(queried)
    assert {name: boards for name, boards in queried.items() if name not in defined} == {}
    assert telemetry.PREFIX == "bytespike"
    # The edge's scrape-time gauges are registered by importing its observability module.
    assert observability.UNMEASURED_PATHS


async def _drive_every_family(suite: Suite) -> None:
    assert (await suite.chat()).status_code == 200
    assert (await suite.chat(stream=True)).status_code == 200
    async with httpx.AsyncClient(base_url=suite.vendor_url) as vendor:
        await vendor.post("/_control/script", json=[{"status": 503, "json": {"error": {}}}])
    assert (await suite.chat()).status_code == 503
    limited = await suite.create_key("dashboards-one-per-minute", rpm=1)
    assert (await suite.chat(limited)).status_code == 200
    assert (await suite.chat(limited)).status_code == 429
    deadline = asyncio.get_running_loop().time() + 20
    while not REGISTRY.get_sample_value("bytespike_credits_charged_total", {"model": MODEL}):
        assert asyncio.get_running_loop().time() < deadline, "nothing was settled"
        await asyncio.sleep(0.05)


async def test_every_metric_a_dashboard_queries_has_samples(suite: Suite) -> None:
    await _drive_every_family(suite)
    exported = sample_names(await suite.scrape(), with_samples=True)
    missing = {name: boards for name, boards in queried_metrics().items() if name not in exported}
    assert missing == {}
