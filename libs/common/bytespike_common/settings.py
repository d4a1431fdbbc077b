"""Settings shared by every service's typed settings object.

Each service defines its own `Settings(ServiceSettings)` with an env prefix
(`BYTESPIKE_EDGE_`, `BYTESPIKE_AUTH_`, …), builds it in `main()` and passes it down; nothing
reads the environment at import time. Values every service needs the same (the NATS URL,
the key-hash secret) may also be given once under a shared name (`BYTESPIKE_NATS_URL`).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_KEY_HASH_SECRET = "dev-only-key-hash-secret-change-me"


def shared_field(prefix: str, name: str, default: Any, **kwargs: Any) -> Any:
    """A field readable as `<PREFIX><NAME>` or as the suite-wide `BYTESPIKE_<NAME>`."""
    env = name.upper()
    return Field(
        default,
        validation_alias=AliasChoices(name, f"{prefix}{env}", f"BYTESPIKE_{env}"),
        **kwargs,
    )


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    environment: Literal["development", "production"] = "development"
    log_level: str = "INFO"
    log_json: bool = True
    # Seconds in-flight RPCs get to finish on SIGTERM.
    shutdown_grace: float = 10.0


class SecretSettingsMixin(BaseSettings):
    """For services that hash keys (auth stores hashes, the edge looks them up)."""

    # One suite-wide name: edge and auth must hash with the same secret.
    key_hash_secret: str = Field(
        DEV_KEY_HASH_SECRET,
        validation_alias=AliasChoices("key_hash_secret", "BYTESPIKE_KEY_HASH_SECRET"),
        repr=False,
    )

    @model_validator(mode="after")
    def _refuse_placeholder_secret(self) -> SecretSettingsMixin:
        environment = getattr(self, "environment", "development")
        if environment != "development" and self.key_hash_secret == DEV_KEY_HASH_SECRET:
            raise ValueError(
                "key_hash_secret is the development placeholder; set BYTESPIKE_KEY_HASH_SECRET"
            )
        if len(self.key_hash_secret) < 16:
            raise ValueError("key_hash_secret must be at least 16 characters")
        return self

    @property
    def key_hash_secret_bytes(self) -> bytes:
        return self.key_hash_secret.encode()
