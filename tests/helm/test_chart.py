"""The Helm chart renders, lints and validates for every `ci/*.yaml` value set, securely.

Rendering and linting use the Helm SDK embedded in helm-python-sdk (no helm binary, no
cluster); every manifest is checked against the Kubernetes OpenAPI schemas bundled with
kubernetes-validate, then the properties the chart promises are asserted on the objects.
"""

from __future__ import annotations

import base64
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "bytespike"
CI_VALUES = sorted((CHART / "ci").glob("*.yaml"))
RELEASE = "bs"
NAMESPACE = "gateway"
# Oldest version the chart supports (GA gRPC probes, Chart.yaml kubeVersion) and newest known.
KUBE_VERSIONS = ("1.27", kubernetes_validate.latest_version())
# Custom resources kubernetes-validate has no schema for.
CRD_KINDS = {"ServiceMonitor"}
GRPC_SERVICES = ("auth", "router", "metering")
COMPONENTS = ("edge", *GRPC_SERVICES)
SUITE_WIDE_ENV = {"BYTESPIKE_NATS_URL", "BYTESPIKE_KEY_HASH_SECRET"}

Obj = dict[str, Any]


@dataclass(frozen=True)
class Release:
    """One rendered release: the values it came from, its objects and its NOTES."""

    name: str
    values: Obj
    objects: list[Obj]
    notes: str

    def of_kind(self, kind: str) -> list[Obj]:
        return [o for o in self.objects if o["kind"] == kind]

    def named(self, kind: str, name: str) -> Obj:
        (found,) = [o for o in self.of_kind(kind) if o["metadata"]["name"] == name]
        return found

    def deployment(self, component: str) -> Obj:
        return self.named("Deployment", f"{RELEASE}-bytespike-{component}")

    def pod(self, component: str) -> Obj:
        pod: Obj = self.deployment(component)["spec"]["template"]
        return pod

    def container(self, component: str) -> Obj:
        containers: list[Obj] = self.pod(component)["spec"]["containers"]
        (container,) = containers
        return container

    def pod_labels(self, component: str) -> dict[str, str]:
        labels: dict[str, str] = self.pod(component)["metadata"]["labels"]
        return labels


def load_values(path: Path) -> Obj:
    values: Obj = yaml.safe_load(path.read_text()) or {}
    return values


def render(values: Obj | None, name: str = "adhoc") -> Release:
    with helm.Chart.load(CHART) as chart:
        manifests = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    notes, objects = "", list[Obj]()
    for path, text in sorted(manifests.items()):
        if path.endswith("NOTES.txt"):
            notes = text
            continue
        objects.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return Release(name, values or {}, objects, notes)


@pytest.fixture(scope="module", params=CI_VALUES, ids=lambda p: p.stem)
def release(request: pytest.FixtureRequest) -> Release:
    path: Path = request.param
    return render(load_values(path), path.stem)


@pytest.fixture(scope="module")
def production() -> Release:
    return render(load_values(CHART / "ci" / "production.yaml"), "production")


def env_of(container: Obj) -> dict[str, Obj]:
    return {e["name"]: e for e in container.get("env", [])}


def secret_refs(container: Obj) -> set[str]:
    """Names of the Secrets a container reads (env valueFrom and envFrom)."""
    names = {e["valueFrom"]["secretKeyRef"]["name"] for e in container["env"] if "valueFrom" in e}
    return names | {s["secretRef"]["name"] for s in container.get("envFrom", [])}


def test_ci_value_sets_cover_the_documented_cases() -> None:
    assert {p.stem for p in CI_VALUES} >= {"default", "production", "minimal"}


@pytest.mark.parametrize("path", CI_VALUES, ids=lambda p: p.stem)
def test_helm_lint_is_clean(path: Path) -> None:
    report = helm.lint(
        CHART, load_values(path), strict=True, namespace=NAMESPACE, kube_version="v1.30.0"
    )
    assert report["errors"] == []
    # Severity 2 = warning, 3 = error; info (e.g. "icon is recommended") is fine.
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


def test_schema_rejects_unknown_keys() -> None:
    with helm.Chart.load(CHART) as chart, pytest.raises(helm.HelmValuesError, match="replicas"):
        chart.validate_schema({"edge": {"replicas": 3}})


def test_manifests_validate_against_kubernetes_schemas(release: Release) -> None:
    for obj in release.objects:
        for version in KUBE_VERSIONS:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.SchemaNotFoundError:
                assert obj["kind"] in CRD_KINDS, f"no schema for {obj['kind']}"
            except kubernetes_validate.ValidationError as exc:
                where = ".".join(str(p) for p in exc.path)
                pytest.fail(f"{obj['kind']}/{obj['metadata']['name']} @ {where}: {exc.message}")


def test_every_service_runs_its_console_script(release: Release) -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    scripts = pyproject["project"]["scripts"]
    for component in COMPONENTS:
        container = release.container(component)
        assert container["command"] == [f"bytespike-{component}"]
        assert container["command"][0] in scripts
        service = release.named("Service", f"{RELEASE}-bytespike-{component}")
        assert service["spec"]["selector"].items() <= release.pod_labels(component).items()


def test_services_read_their_own_env_prefix(release: Release) -> None:
    for component in COMPONENTS:
        container = release.container(component)
        env = env_of(container)
        prefix = f"BYTESPIKE_{component.upper()}_"
        for name in env:
            if name.startswith("BYTESPIKE_") and name not in SUITE_WIDE_ENV:
                provider_override = component == "router" and name.startswith("BYTESPIKE_PROVIDER_")
                assert name.startswith(prefix) or provider_override, name
        assert env[f"{prefix}HOST"]["value"] == "0.0.0.0"
        assert env[f"{prefix}ENVIRONMENT"]["value"] == release.values.get(
            "environment", "production"
        )
        assert int(env[f"{prefix}PORT"]["value"]) == container["ports"][0]["containerPort"]
        assert "BYTESPIKE_NATS_URL" in env


def test_grpc_services_use_native_grpc_probes(release: Release) -> None:
    for component in GRPC_SERVICES:
        container = release.container(component)
        port = container["ports"][0]["containerPort"]
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert set(container[probe]) & {"grpc", "httpGet", "tcpSocket", "exec"} == {"grpc"}
            assert container[probe]["grpc"]["port"] == port


def test_edge_uses_http_probes(release: Release) -> None:
    container = release.container("edge")
    http = next(p for p in container["ports"] if p["name"] == "http")
    assert http["containerPort"] == 8080
    paths = {"readinessProbe": "/readyz", "livenessProbe": "/healthz", "startupProbe": "/healthz"}
    for probe, path in paths.items():
        assert container[probe]["httpGet"] == {"path": path, "port": "http"}


def test_edge_reaches_the_grpc_services_by_service_name(release: Release) -> None:
    env = env_of(release.container("edge"))
    for component in GRPC_SERVICES:
        service = release.named("Service", f"{RELEASE}-bytespike-{component}")
        target = f"{service['metadata']['name']}:{service['spec']['ports'][0]['port']}"
        assert env[f"BYTESPIKE_EDGE_{component.upper()}_TARGET"]["value"] == target


def test_hpa_targets_the_edge_deployment(release: Release) -> None:
    edge = release.deployment("edge")
    for hpa in release.of_kind("HorizontalPodAutoscaler"):
        assert hpa["apiVersion"] == "autoscaling/v2"
        assert hpa["spec"]["scaleTargetRef"] == {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": edge["metadata"]["name"],
        }
        # A fixed replica count would fight the autoscaler on every upgrade.
        assert "replicas" not in edge["spec"]


def test_production_autoscales_the_edge_with_a_pdb(production: Release) -> None:
    (hpa,) = production.of_kind("HorizontalPodAutoscaler")
    assert hpa["spec"]["minReplicas"] >= 2
    (pdb,) = production.of_kind("PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= production.pod_labels("edge").items()


def secret_strings(release: Release) -> set[str]:
    """Every value the chart put in a Secret, decoded."""
    found = set()
    for secret in release.of_kind("Secret"):
        found |= {base64.b64decode(v).decode() for v in secret.get("data", {}).values()}
        found |= set(secret.get("stringData", {}).values())
    return found


def test_no_secret_value_in_configmaps_env_or_notes(release: Release) -> None:
    exposed = {"NOTES.txt": release.notes}
    for configmap in release.of_kind("ConfigMap"):
        for key, text in configmap.get("data", {}).items():
            exposed[f"ConfigMap/{configmap['metadata']['name']}:{key}"] = text
    for component in COMPONENTS:
        for e in release.container(component)["env"]:
            exposed[f"{component} env {e['name']}"] = str(e.get("value", ""))
    leaks = [where for where, text in exposed.items() for s in secret_strings(release) if s in text]
    assert leaks == []


def test_chart_managed_secrets_are_rendered_and_referenced() -> None:
    release = render(load_values(CHART / "ci" / "default.yaml"), "default")
    secrets = {s["metadata"]["name"] for s in release.of_kind("Secret")}
    assert len(secret_strings(release)) >= 5
    refs = secret_refs(release.container("edge"))
    assert refs <= secrets
    assert f"{RELEASE}-bytespike-provider-keys" in refs


def test_production_uses_only_existing_secrets(production: Release) -> None:
    assert production.of_kind("Secret") == []
    existing = {
        production.values["keyHashSecret"]["existingSecret"],
        production.values["edge"]["admin"]["existingSecret"],
        production.values["providers"]["existingSecret"],
        production.values["database"]["existingSecret"],
        production.values["nats"]["existingSecret"],
    }
    used = set().union(*(secret_refs(production.container(c)) for c in COMPONENTS))
    assert used == existing


def selects(selector: Obj, labels: dict[str, str]) -> bool:
    """Kubernetes label-selector semantics (matchLabels and matchExpressions)."""
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for expr in selector.get("matchExpressions", []):
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        ok = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[op]
        if not ok:
            return False
    return True


def covers_port(rule: Obj, number: int, name: str) -> bool:
    ports = rule.get("ports") or []
    if not ports:  # no ports = every port
        return True
    for p in ports:
        port = p.get("port")
        if port is None or port == name:
            return True
        if isinstance(port, int) and port <= number <= p.get("endPort", port):
            return True
    return False


def is_release_pod_peer(peer: Obj) -> bool:
    labels = peer.get("podSelector", {}).get("matchLabels", {})
    return set(peer) == {"podSelector"} and labels.get("app.kubernetes.io/instance") == RELEASE


def admitted_from_outside(release: Release, component: str, port: int, name: str) -> bool:
    labels = release.pod_labels(component)
    for policy in release.of_kind("NetworkPolicy"):
        if not selects(policy["spec"]["podSelector"], labels):
            continue
        for rule in policy["spec"].get("ingress", []):
            peers = rule.get("from") or []
            outside = not peers or not all(is_release_pod_peer(p) for p in peers)
            if outside and covers_port(rule, port, name):
                return True
    return False


def isolated(release: Release, component: str) -> bool:
    labels = release.pod_labels(component)
    return any(
        selects(p["spec"]["podSelector"], labels) and "Ingress" in p["spec"]["policyTypes"]
        for p in release.of_kind("NetworkPolicy")
    )


def test_network_policy_keeps_admin_and_grpc_inside_the_release(release: Release) -> None:
    if not release.values.get("networkPolicy", {}).get("enabled", True):
        assert release.of_kind("NetworkPolicy") == []
        return
    edge = {p["name"]: p["containerPort"] for p in release.container("edge")["ports"]}
    assert isolated(release, "edge")
    assert admitted_from_outside(release, "edge", edge["http"], "http")
    assert not admitted_from_outside(release, "edge", edge["admin"], "admin")
    for component in GRPC_SERVICES:
        port = release.container(component)["ports"][0]["containerPort"]
        assert isolated(release, component)
        assert not admitted_from_outside(release, component, port, "grpc")


def test_admin_port_is_only_on_a_cluster_ip_service(release: Release) -> None:
    admin_port = next(
        p["containerPort"] for p in release.container("edge")["ports"] if p["name"] == "admin"
    )
    for service in release.of_kind("Service"):
        targets = {p["targetPort"] for p in service["spec"]["ports"]}
        if targets & {"admin", admin_port}:
            assert service["spec"]["type"] == "ClusterIP"
            assert service["metadata"]["name"] == f"{RELEASE}-bytespike-edge-admin"


def test_pods_run_as_non_root_with_a_read_only_root(release: Release) -> None:
    for component in COMPONENTS:
        pod = release.pod(component)["spec"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        for container in pod["containers"]:
            sc = {**pod.get("securityContext", {}), **container.get("securityContext", {})}
            assert sc["runAsNonRoot"] is True
            assert sc["runAsUser"] != 0
            assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
            csc = container["securityContext"]
            assert csc["readOnlyRootFilesystem"] is True
            assert csc["allowPrivilegeEscalation"] is False
            assert csc["capabilities"]["drop"] == ["ALL"]
            assert not csc.get("privileged", False)
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            for path in ("/tmp", "/var/lib/bytespike"):
                assert "emptyDir" in volumes[mounts[path]]
        # Only the router talks to the Kubernetes API.
        assert pod.get("automountServiceAccountToken", True) is (component == "router")


def test_router_mounts_the_catalog_and_may_watch_configmaps(release: Release) -> None:
    router = release.pod("router")["spec"]
    (container,) = router["containers"]
    catalog_path = env_of(container)["BYTESPIKE_ROUTER_CATALOG_PATH"]["value"]
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in router["volumes"]}
    (name,) = [n for n, m in mounts.items() if catalog_path.startswith(m["mountPath"] + "/")]
    assert "subPath" not in mounts[name]  # subPath mounts never see ConfigMap updates
    configmap = release.named("ConfigMap", volumes[name]["configMap"]["name"])
    assert yaml.safe_load(configmap["data"][Path(catalog_path).name])

    account = release.named("ServiceAccount", router["serviceAccountName"])
    (binding,) = release.of_kind("RoleBinding")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": NAMESPACE}
    ]
    role = release.named("Role", binding["roleRef"]["name"])
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch"]}
    ]


def test_service_monitor_scrapes_every_metrics_port(production: Release) -> None:
    (monitor,) = production.of_kind("ServiceMonitor")
    selector = monitor["spec"]["selector"]
    port_names = {e["port"] for e in monitor["spec"]["endpoints"]}
    scraped = [
        s
        for s in production.of_kind("Service")
        if selects(selector, s["metadata"]["labels"])
        and port_names & {p["name"] for p in s["spec"]["ports"]}
    ]
    # The edge's metrics are on the ClusterIP admin Service, never the public one.
    assert sorted(s["metadata"]["name"] for s in scraped) == [
        f"{RELEASE}-bytespike-{name}" for name in ("auth", "edge-admin", "metering", "router")
    ]


def test_service_monitor_is_off_by_default() -> None:
    release = render(load_values(CHART / "ci" / "default.yaml"))
    assert release.of_kind("ServiceMonitor") == []


def test_production_refuses_to_render_without_secrets() -> None:
    with pytest.raises(helm.HelmRenderError, match=r"keyHashSecret\.value"):
        render({})
    with pytest.raises(helm.HelmRenderError, match=r"edge\.admin\.token"):
        render({"keyHashSecret": {"value": "k" * 32}})


def test_sqlite_refuses_more_than_one_replica() -> None:
    with pytest.raises(helm.HelmRenderError, match="SQLite"):
        render({"environment": "development", "auth": {"replicaCount": 2}})


def test_notes_explain_admin_access_and_a_first_call(release: Release) -> None:
    assert f"port-forward svc/{RELEASE}-bytespike-edge-admin" in release.notes
    assert "/v1/chat/completions" in release.notes
    assert "curl" in release.notes


def test_bundled_catalog_is_the_repository_catalog() -> None:
    source = ROOT / "catalog" / "catalog.yaml"
    if not source.exists():
        pytest.skip("catalog/catalog.yaml does not exist yet")
    bundled = CHART / "files" / "catalog.yaml"
    assert bundled.read_bytes() == source.read_bytes(), (
        "copy catalog/catalog.yaml to helm/bytespike/files/catalog.yaml"
    )


def dockerfile_final_stage() -> Iterator[str]:
    lines = (ROOT / "Dockerfile").read_text().splitlines()
    start = max(i for i, line in enumerate(lines) if line.upper().startswith("FROM "))
    yield from (line.strip() for line in lines[start:])


def test_image_user_and_data_dir_match_the_chart() -> None:
    final = list(dockerfile_final_stage())
    values = load_values(CHART / "values.yaml")
    uid = values["podSecurityContext"]["runAsUser"]
    assert f"USER {uid}:{values['podSecurityContext']['runAsGroup']}" in final
    assert "WORKDIR /var/lib/bytespike" in final
