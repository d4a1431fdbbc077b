from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from bytespike_common.settings import SecretSettingsMixin, ServiceSettings, shared_field

PREFIX = "BYTESPIKE_AUTH_"


class Settings(SecretSettingsMixin, ServiceSettings):
    model_config = SettingsConfigDict(env_prefix=PREFIX)

    host: str = "127.0.0.1"
    port: int = 50051
    database_url: str = "sqlite:///.data/auth.db"
    nats_url: str = shared_field(PREFIX, "nats_url", "nats://127.0.0.1:4222")
