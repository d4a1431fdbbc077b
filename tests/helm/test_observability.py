"""The chart's observability: dashboards as ConfigMaps, metrics ports, scraping, tracing env.

Whether every metric a dashboard queries is really exported is proven against the running
services in tests/observability/test_dashboards.py; here, the chart's side of it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest

from tests.helm.test_chart import (
    CHART,
    COMPONENTS,
    GRPC_SERVICES,
    RELEASE,
    Obj,
    Release,
    admitted_from_outside,
    env_of,
    load_values,
    production,
    release,
    render,
)

__all__ = ["production", "release"]  # fixtures shared with test_chart
DASHBOARDS = sorted((CHART / "dashboards").glob("*.json"))
SIDECAR_LABEL = ("grafana_dashboard", "1")
DEV = {"environment": "development"}


def dashboard_configmaps(release: Release) -> list[Obj]:
    return [c for c in release.of_kind("ConfigMap") if "-dashboard-" in c["metadata"]["name"]]


def test_the_documented_dashboards_exist() -> None:
    names = {p.stem for p in DASHBOARDS}
    assert names == {"traffic", "latency", "ttft", "tokens-credits", "upstream-errors", "circuits"}


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_dashboard_json_is_a_grafana_dashboard(path: Path) -> None:
    board: dict[str, Any] = json.loads(path.read_text())
    assert board["uid"] == f"bytespike-{path.stem.removesuffix('-credits')}"
    assert board["title"].startswith("ByteSpike / ")
    assert "bytespike" in board["tags"]
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    panels = [p for p in board["panels"] if p["type"] != "row"]
    assert panels
    assert len({p["id"] for p in board["panels"]}) == len(board["panels"])
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"], panel["title"]
        for query in panel["targets"]:
            assert "bytespike_" in query["expr"], (panel["title"], query["expr"])


def test_every_dashboard_ships_once_labelled_for_the_sidecar(release: Release) -> None:
    configmaps = dashboard_configmaps(release)
    files = {}
    for configmap in configmaps:
        assert configmap["metadata"]["labels"][SIDECAR_LABEL[0]] == SIDECAR_LABEL[1]
        ((key, text),) = configmap["data"].items()
        files[key] = text
    assert sorted(files) == [p.name for p in DASHBOARDS]
    for path in DASHBOARDS:
        assert json.loads(files[path.name]) == json.loads(path.read_text())


def test_dashboards_can_be_moved_relabelled_or_turned_off() -> None:
    moved = render(
        {
            **DEV,
            "dashboards": {
                "namespace": "monitoring",
                "label": "grafana_dashboard_bytespike",
                "labelValue": "yes",
                "annotations": {"grafana_folder": "ByteSpike"},
            },
        }
    )
    configmaps = dashboard_configmaps(moved)
    assert len(configmaps) == len(DASHBOARDS)
    for configmap in configmaps:
        meta = configmap["metadata"]
        assert meta["namespace"] == "monitoring"
        assert meta["labels"]["grafana_dashboard_bytespike"] == "yes"
        assert meta["annotations"] == {"grafana_folder": "ByteSpike"}
    assert dashboard_configmaps(render({**DEV, "dashboards": {"enabled": False}})) == []


def test_every_service_serves_metrics_on_a_named_port(release: Release) -> None:
    for component in COMPONENTS:
        container = release.container(component)
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        env = env_of(container)
        assert int(env[f"BYTESPIKE_{component.upper()}_METRICS_PORT"]["value"]) == ports["metrics"]
        service_name = f"{RELEASE}-bytespike-{'edge-admin' if component == 'edge' else component}"
        service = release.named("Service", service_name)
        assert {"name": "metrics", "targetPort": "metrics"}.items() <= next(
            p for p in service["spec"]["ports"] if p["name"] == "metrics"
        ).items()
    public = release.named("Service", f"{RELEASE}-bytespike-edge")
    assert [p["name"] for p in public["spec"]["ports"]] == ["http"]


def test_prometheus_may_scrape_metrics_ports_and_nothing_else(production: Release) -> None:
    for component in COMPONENTS:
        ports = {p["name"]: p["containerPort"] for p in production.container(component)["ports"]}
        # networkPolicy.metricsFrom (the monitoring namespace) reaches the metrics port only.
        assert admitted_from_outside(production, component, ports["metrics"], "metrics")
        main = "http" if component == "edge" else "grpc"
        if component in GRPC_SERVICES:
            assert not admitted_from_outside(production, component, ports[main], main)


def test_tracing_is_off_unless_an_endpoint_is_set() -> None:
    values = load_values(CHART / "ci" / "default.yaml")
    quiet = render(values)
    for component in COMPONENTS:
        assert not [n for n in env_of(quiet.container(component)) if n.startswith("OTEL_")]
    traced = render({**values, "tracing": {"otlpEndpoint": "http://otel-collector:4317"}})
    for component in COMPONENTS:
        env = env_of(traced.container(component))
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"]["value"] == "http://otel-collector:4317"
        assert env["OTEL_TRACES_SAMPLER"]["value"] == "parentbased_traceidratio"
        assert "k8s.namespace.name=gateway" in env["OTEL_RESOURCE_ATTRIBUTES"]["value"]


def test_schema_checks_observability_values() -> None:
    with helm.Chart.load(CHART) as chart:
        with pytest.raises(helm.HelmValuesError, match="otlpEndpoint"):
            chart.validate_schema({"tracing": {"otlpEndpoint": "otel:4317"}})
        with pytest.raises(helm.HelmValuesError, match="samplerArg"):
            chart.validate_schema({"tracing": {"samplerArg": "2"}})
        with pytest.raises(helm.HelmValuesError, match="metricsPort"):
            chart.validate_schema({"auth": {"replicaCount": 1, "port": 50051, "metricsPort": 0}})
