from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from bytespike_common.settings import ServiceSettings

PREFIX = "BYTESPIKE_ROUTER_"


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix=PREFIX)

    host: str = "127.0.0.1"
    port: int = 50052
    # Prometheus /metrics (0 = off).
    metrics_port: int = 9092
    catalog_path: str = "catalog/catalog.yaml"
    # Reload the catalog when the file changes (a mounted ConfigMap is a changing file too).
    watch_catalog: bool = True
    # In a cluster: "namespace/name" of the catalog ConfigMap to watch through the
    # Kubernetes API (immediate, unlike the kubelet's file sync). Empty = file only.
    catalog_configmap: str = ""
    catalog_configmap_key: str = "catalog.yaml"
    # Kubernetes API URL; empty = in-cluster service account (or kubeconfig).
    kube_api_url: str = ""
