from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from bytespike_common.settings import SecretSettingsMixin, ServiceSettings, shared_field

PREFIX = "BYTESPIKE_AUTH_"


class Settings(SecretSettingsMixin, ServiceSettings):
    model_config = SettingsConfigDict(env_prefix=PREFIX)

    host: str = "127.0.0.1"
    port: int = 50051
    # Prometheus /metrics (0 = off).
    metrics_port: int = 9091
    database_url: str = "sqlite:///.data/auth.db"
    nats_url: str = shared_field(PREFIX, "nats_url", "nats://127.0.0.1:4222")
    # Apply Alembic migrations at start-up. Turn off when a job runs
    # `bytespike-auth migrate` before the replicas start (several replicas, PostgreSQL).
    migrate_on_start: bool = True
    # Seconds between sweeps that apply scheduled revocations (rotation grace periods).
    revocation_sweep_interval: float = 1.0
