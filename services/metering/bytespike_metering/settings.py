from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from bytespike_common.messaging import USAGE_STREAM, USAGE_SUBJECT_PREFIX
from bytespike_common.settings import ServiceSettings, shared_field

PREFIX = "BYTESPIKE_METERING_"


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix=PREFIX)

    host: str = "127.0.0.1"
    port: int = 50053
    database_url: str = "sqlite:///.data/metering.db"
    nats_url: str = shared_field(PREFIX, "nats_url", "nats://127.0.0.1:4222")
    usage_stream: str = shared_field(PREFIX, "usage_stream", USAGE_STREAM)
    usage_subject_prefix: str = shared_field(PREFIX, "usage_subject_prefix", USAGE_SUBJECT_PREFIX)
    consumer_name: str = "metering"
    # Events fetched per pull; settled in one transaction.
    batch_size: int = 256
    # A hold no usage event settles within this time is released by the sweeper.
    hold_ttl_seconds: int = 3600
