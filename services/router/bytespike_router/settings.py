from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from bytespike_common.settings import ServiceSettings

PREFIX = "BYTESPIKE_ROUTER_"


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix=PREFIX)

    host: str = "127.0.0.1"
    port: int = 50052
    catalog_path: str = "catalog/catalog.yaml"
    # Reload the catalog when the file changes (a mounted ConfigMap is a changing file too).
    watch_catalog: bool = True
