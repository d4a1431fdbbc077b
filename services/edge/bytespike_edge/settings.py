from __future__ import annotations

from typing import Literal

from pydantic_settings import SettingsConfigDict

from bytespike_common.messaging import USAGE_STREAM, USAGE_SUBJECT_PREFIX
from bytespike_common.settings import SecretSettingsMixin, ServiceSettings, shared_field

PREFIX = "BYTESPIKE_EDGE_"


class Settings(SecretSettingsMixin, ServiceSettings):
    model_config = SettingsConfigDict(env_prefix=PREFIX)

    host: str = "127.0.0.1"
    port: int = 8080
    auth_target: str = "127.0.0.1:50051"
    router_target: str = "127.0.0.1:50052"
    metering_target: str = "127.0.0.1:50053"
    nats_url: str = shared_field(PREFIX, "nats_url", "nats://127.0.0.1:4222")
    usage_stream: str = shared_field(PREFIX, "usage_stream", USAGE_STREAM)
    usage_subject_prefix: str = shared_field(PREFIX, "usage_subject_prefix", USAGE_SUBJECT_PREFIX)

    # Anthropic's own limit for Messages bodies (reference §2.7).
    max_body_bytes: int = 32 * 1024 * 1024
    # Principals cached per edge; revocations are pushed, the TTL bounds a missed push.
    principal_cache_size: int = 100_000
    principal_cache_ttl: float = 60.0
    # Unknown keys are remembered briefly so a key-guessing client cannot hammer auth.
    negative_cache_ttl: float = 5.0
    auth_timeout: float = 2.0
    metering_timeout: float = 2.0
    # What to do when metering cannot be reached: refuse (503) or serve unmetered.
    metering_fail_mode: Literal["closed", "open"] = "closed"
    # Upstream connection pool per edge process.
    upstream_max_connections: int = 1000
    # Failover: deployments tried per request, and the time budget for all attempts
    # before the first byte reaches the client.
    max_attempts: int = 3
    failover_budget: float = 60.0
    # Passive circuit breaker per deployment (see health.py).
    breaker_window: float = 30.0
    breaker_min_requests: int = 5
    breaker_failure_ratio: float = 0.5
    breaker_cooldown: float = 5.0
    breaker_max_cooldown: float = 300.0
    # Seconds of upstream silence after which a keepalive frame is sent to the client.
    stream_keepalive: float = 15.0
    # Usage events waiting for a JetStream ack; beyond it requests are refused (503)
    # rather than served unbilled.
    usage_queue_size: int = 100_000
