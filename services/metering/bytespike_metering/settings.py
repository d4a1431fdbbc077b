from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from bytespike_common.messaging import USAGE_STREAM, USAGE_SUBJECT_PREFIX
from bytespike_common.settings import ServiceSettings, shared_field

PREFIX = "BYTESPIKE_METERING_"


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix=PREFIX)

    host: str = "127.0.0.1"
    port: int = 50053
    # Prometheus /metrics (0 = off).
    metrics_port: int = 9093
    database_url: str = "sqlite:///.data/metering.db"
    nats_url: str = shared_field(PREFIX, "nats_url", "nats://127.0.0.1:4222")
    usage_stream: str = shared_field(PREFIX, "usage_stream", USAGE_STREAM)
    usage_subject_prefix: str = shared_field(PREFIX, "usage_subject_prefix", USAGE_SUBJECT_PREFIX)
    consumer_name: str = "metering"
    # Events fetched per pull; settled in one transaction.
    batch_size: int = 256
    # The router whose WatchRoutes stream carries the rate card (prices, group multipliers).
    router_target: str = "127.0.0.1:50052"
    # A hold no usage event settles within this time is released by the sweeper.
    hold_ttl_seconds: int = Field(3600, gt=0)
    sweep_interval_seconds: float = Field(60.0, gt=0)
    # Admission leases (docs/metering.md): how long an edge admits from one lease, how long
    # its hold lives if the edge never hands it back, and the largest slice of an account's
    # available credit one lease may take (1/share).
    lease_seconds: float = Field(10.0, gt=0)
    lease_hold_ttl_seconds: int = Field(120, gt=0)
    lease_share: int = Field(4, ge=1)
    # Throttling windows: empty = in this process (one replica); a Redis URL = shared by
    # every replica.
    redis_url: str = ""
    redis_prefix: str = "bytespike:metering"
    # Length of the RPM/TPM sliding window.
    window_seconds: int = Field(60, gt=0)
    # Concurrent requests per account across all its keys (0 = unlimited).
    account_concurrency: int = Field(0, ge=0)
    # Micro-credits granted (as a "grant" ledger row) to an account the first time metering
    # sees it. 0 in production: accounts start empty and are topped up by an operator.
    initial_credit: int = Field(0, ge=0)
