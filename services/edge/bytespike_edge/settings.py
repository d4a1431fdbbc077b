from __future__ import annotations

from typing import Literal, Self

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from bytespike_common.messaging import USAGE_STREAM, USAGE_SUBJECT_PREFIX
from bytespike_common.settings import SecretSettingsMixin, ServiceSettings, shared_field

PREFIX = "BYTESPIKE_EDGE_"
MIN_ADMIN_TOKEN = 16


class Settings(SecretSettingsMixin, ServiceSettings):
    model_config = SettingsConfigDict(env_prefix=PREFIX)

    host: str = "127.0.0.1"
    port: int = 8080
    # Prometheus /metrics (a separate port, like the admin API; 0 = off).
    metrics_port: int = 9090
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
    # Admission leases (docs/metering.md): a lease asked for covers this many requests like
    # the one waiting for it; 0 = no leases, one Admit call per request.
    lease_requests: int = Field(200, ge=0)
    # What to do when metering cannot be reached: refuse (503) or serve unmetered.
    metering_fail_mode: Literal["closed", "open"] = "closed"
    # Upstream connection pool per edge process.
    upstream_max_connections: int = 1000
    # The upstream HTTP client: the edge's own HTTP/1.1 pool (`upstream/http1.py`, the
    # cheapest per request, measured in bench/), raw aiohttp, or httpx's API over aiohttp's
    # transport. Origins behind HTTP(S)_PROXY always go through aiohttp.
    upstream_client: Literal["http1", "aiohttp", "httpx"] = "http1"
    # Media a vendor cannot take by URL is downloaded and inlined (see media.py).
    media_max_bytes: int = 20 * 1024 * 1024
    media_fetch_timeout: float = 10.0
    # Never in production: lets media URLs resolve to loopback/private addresses (tests).
    media_allow_private: bool = False
    # Failover: deployments tried per request, and the time budget for all attempts
    # before the first byte reaches the client.
    max_attempts: int = 3
    failover_budget: float = 60.0
    # Passive circuit breaker per deployment (see health.py).
    breaker_window: float = Field(30.0, gt=0)  # seconds; counted in tenths (health.py)
    breaker_min_requests: int = 5
    breaker_failure_ratio: float = 0.5
    breaker_cooldown: float = 5.0
    breaker_max_cooldown: float = 300.0
    # Seconds of upstream silence after which a keepalive frame is sent to the client.
    stream_keepalive: float = 15.0
    # Usage events waiting for a JetStream ack; beyond it requests are refused (503)
    # rather than served unbilled.
    usage_queue_size: int = 100_000

    # Admin REST API (accounts, keys, policies): its own port, never the public one. Host
    # empty = the public `host`.
    admin_host: str = ""
    admin_port: int = 8081
    # Operator bearer token: every account. Required outside development; in development
    # an empty token leaves the admin API open (it binds where `host` binds: keep it local).
    admin_token: str = Field("", repr=False)
    # Account-scoped admin tokens, JSON {"<account name or id>": "<token>"}: each manages
    # only that account's keys.
    admin_account_tokens: dict[str, str] = Field(default_factory=dict, repr=False)
    # Deadline for the admin API's calls to auth (disabling a big account publishes a lot).
    admin_rpc_timeout: float = 10.0
    # Failed authentications (bad API keys, bad admin tokens) each client address may make
    # in a burst, and the seconds after which one more is allowed. Beyond it the client gets
    # 429 for keys not already known good; other clients are unaffected.
    bad_key_burst: int = 20
    bad_key_refill_seconds: float = 3.0
    # Client addresses tracked at once (least recently seen dropped first).
    bad_key_clients: int = 100_000
    # Proxies whose X-Forwarded-For is trusted to name the client (uvicorn's
    # forwarded_allow_ips): the address the bad-key limit counts by.
    forwarded_allow_ips: str = "127.0.0.1"

    @model_validator(mode="after")
    def _admin_tokens_are_real_outside_development(self) -> Self:
        tokens = [self.admin_token, *self.admin_account_tokens.values()]
        if self.environment != "development" and not self.admin_token:
            raise ValueError(
                "admin_token is required outside development: set BYTESPIKE_EDGE_ADMIN_TOKEN"
            )
        if any(token and len(token) < MIN_ADMIN_TOKEN for token in tokens):
            raise ValueError(f"admin tokens must be at least {MIN_ADMIN_TOKEN} characters")
        if not all(self.admin_account_tokens.values()) or len(set(tokens)) != len(tokens):
            raise ValueError("admin tokens must be non-empty and distinct from each other")
        return self

    @property
    def admin_bind_host(self) -> str:
        return self.admin_host or self.host
